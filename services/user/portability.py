"""GET /v1/users/me:export (data portability): everything the mesh holds about the caller
as one JSON document, streamed as it is gathered.

Each service's part is read through its own public API on the caller's behalf (the
caller's token forwarded, [mesh.peers] user), so each service's own rules decide what
belongs to the caller and nothing new can read another user's data; the account comes
from auth's IdentityService with the user service's token, as profiles do. Lists are read
page by page at the peers' largest page size and written out page by page: a user with
100,000 expenses costs the peers 200 list calls and this service one page of memory."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from expense.billing.v1 import billing_pb2, billing_pb2_grpc
from expense.ds.v1 import ds_pb2, ds_pb2_grpc
from expense.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from expense.notification.v1 import notification_pb2, notification_pb2_grpc
from services.kit.config.settings import MeshSettings
from services.kit.domain.timestamps import rfc3339, utcnow
from services.kit.grpc.clients import LazyChannel
from services.kit.identity.tokens import Identity
from services.user.accounts import AccountDirectory

FORMAT = "expense-mesh.user-export/1"
# The peers' largest pages ([ledger] and the others' max_page_size): fewest round trips.
LEDGER_PAGE = 500
PAGE = 200

# One list call: (request page token) -> response with next_page_token.
PageCall = Callable[[str], Awaitable[Any]]


def to_json(message: Message) -> str:
    """A message as the REST API answers it (proto field names, defaults included)."""
    return json.dumps(
        json_format.MessageToDict(
            message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        ),
        ensure_ascii=False,
        separators=(",", ":"),
    )


@dataclass(frozen=True)
class Peers:
    """Channels to the services holding the user's data."""

    ledger: LazyChannel
    billing: LazyChannel
    notification: LazyChannel
    ds: LazyChannel

    @classmethod
    def of(cls, settings: MeshSettings, timeout_seconds: float) -> Peers:
        def channel(peer: str, service: str) -> LazyChannel:
            address = settings.service_address(peer)
            return LazyChannel(address, [service], timeout_seconds, resilience=settings.resilience, peer=peer)

        return cls(
            channel("ledger", "expense.ledger.v1.LedgerService"),
            channel("billing", "expense.billing.v1.BillingService"),
            channel("notification", "expense.notification.v1.NotificationService"),
            channel("ds", "expense.ds.v1.DsService"),
        )

    async def close(self) -> None:
        for channel in (self.ledger, self.billing, self.notification, self.ds):
            await channel.close()


class DataExport:
    """The document's parts in a fixed order, each written as soon as it is read."""

    def __init__(self, peers: Peers, accounts: AccountDirectory, timeout_seconds: float) -> None:
        self.peers = peers
        self.accounts = accounts
        self.timeout_seconds = timeout_seconds

    async def chunks(self, identity: Identity, profile: Message) -> AsyncIterator[str]:
        """The JSON document in pieces (valid only once the last one is written)."""
        account = await self.accounts.account(identity.user_id)
        yield (
            f'{{"format":{json.dumps(FORMAT)},"exported_at":"{rfc3339(utcnow())}",'
            f'"user_id":{json.dumps(identity.user_id)},'
            f'"account":{to_json(account) if account is not None else "null"},'
            f'"profile":{to_json(profile)}'
        )
        metadata = (("authorization", f"Bearer {identity.token}"),)
        for name, items, pages in self._lists(metadata):
            yield f',"{name}":['
            first = True
            async for page in _pages(pages):
                entries = [to_json(item) for item in getattr(page, items)]
                if entries:
                    yield ("" if first else ",") + ",".join(entries)
                    first = False
            yield "]"
        notify = notification_pb2_grpc.NotificationServiceStub(self.peers.notification.get())
        preferences = await notify.GetPreferences(
            notification_pb2.GetPreferencesRequest(), metadata=metadata, timeout=self.timeout_seconds
        )
        yield f',"notification_preferences":{to_json(preferences)}}}'

    def _lists(self, metadata: tuple[tuple[str, str], ...]) -> list[tuple[str, str, PageCall]]:
        """(document key, repeated field of the response, one page's call) per list."""
        ledger = ledger_pb2_grpc.LedgerServiceStub(self.peers.ledger.get())
        billing = billing_pb2_grpc.BillingServiceStub(self.peers.billing.get())
        notify = notification_pb2_grpc.NotificationServiceStub(self.peers.notification.get())
        ds = ds_pb2_grpc.DsServiceStub(self.peers.ds.get())
        call = {"metadata": metadata, "timeout": self.timeout_seconds}

        async def categories(_: str) -> Any:
            return await ledger.ListCategories(ledger_pb2.ListCategoriesRequest(), **call)

        async def contact_points(_: str) -> Any:
            return await notify.ListContactPoints(notification_pb2.ListContactPointsRequest(), **call)

        return [
            ("categories", "categories", categories),
            (
                "expenses",
                "expenses",
                lambda token: ledger.ListExpenses(
                    ledger_pb2.ListExpensesRequest(page_size=LEDGER_PAGE, page_token=token), **call
                ),
            ),
            (
                "budgets",
                "budgets",
                lambda token: billing.ListBudgets(
                    billing_pb2.ListBudgetsRequest(page_size=PAGE, page_token=token), **call
                ),
            ),
            (
                "bills",
                "bills",
                lambda token: billing.ListBills(
                    billing_pb2.ListBillsRequest(page_size=PAGE, page_token=token), **call
                ),
            ),
            (
                "alerts",
                "alerts",
                lambda token: billing.ListAlerts(
                    billing_pb2.ListAlertsRequest(page_size=PAGE, page_token=token), **call
                ),
            ),
            (
                "notifications",
                "notifications",
                lambda token: notify.ListNotifications(
                    notification_pb2.ListNotificationsRequest(page_size=PAGE, page_token=token), **call
                ),
            ),
            ("contact_points", "contact_points", contact_points),
            (
                "sms_reviews",
                "reviews",
                lambda token: ds.ListSmsReviews(
                    ds_pb2.ListSmsReviewsRequest(page_size=PAGE, page_token=token), **call
                ),
            ),
        ]


async def _pages(call: PageCall) -> AsyncIterator[Any]:
    """Every page of a list, following next_page_token (a list without one: one page)."""
    token = ""
    while True:
        page = await call(token)
        yield page
        token = getattr(page, "next_page_token", "")
        if not token:
            return
