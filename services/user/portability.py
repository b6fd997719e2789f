"""GET /v1/users/me:export (data portability): everything the mesh holds about the caller
as one JSON document, streamed as it is gathered.

Each service's part is read through its own public API on the caller's behalf (the
caller's token forwarded, [mesh.peers] user), so each service's own rules decide what
belongs to the caller and nothing new can read another user's data; the account comes
from auth's IdentityService with the user service's token, as profiles do. Lists are read
page by page at the peers' largest page size and written out page by page: a user with
100,000 expenses costs the peers 200 list calls and this service one page of memory.

The document's last key is `export_status`: {"complete": true} once every part was
written. A peer failing midway closes what is open, writes {"complete": false,
"failed_part": ..., "error": {...}} and ends the stream with an error status, so a
download cut short is never a document that looks whole."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from expense.billing.v1 import billing_pb2, billing_pb2_grpc
from expense.ds.v1 import ds_pb2, ds_pb2_grpc
from expense.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from expense.notification.v1 import notification_pb2, notification_pb2_grpc
from expense.reporting.v1 import reporting_pb2, reporting_pb2_grpc
from services.kit.config.settings import MeshSettings
from services.kit.domain.errors import DomainError, Internal, Unavailable
from services.kit.domain.timestamps import rfc3339, utcnow
from services.kit.grpc.breakers import is_peer_failure
from services.kit.grpc.clients import LazyChannel
from services.kit.identity.tokens import Identity
from services.user.accounts import AccountDirectory

log = logging.getLogger(__name__)

FORMAT = "expense-mesh.user-export/2"
# The peers' largest pages ([ledger] and the others' max_page_size): fewest round trips.
LEDGER_PAGE = 500
PAGE = 200
# billing's history_max_periods: a budget's latest periods, all billing answers.
BUDGET_PERIODS = 120
# Monthly summaries asked for at once.
MONTHS_IN_FLIGHT = 4
# Time zones run from UTC-12 to UTC+14: the user's month may have begun a day before UTC's.
ZONE_SPREAD = timedelta(days=1)

Metadata = tuple[tuple[str, str], ...]
# One list call: (request page token) -> response with next_page_token.
PageCall = Callable[[str], Awaitable[Any]]


def to_json(message: Message) -> str:
    """A message as the REST API answers it (proto field names, defaults included)."""
    return json.dumps(to_dict(message), ensure_ascii=False, separators=(",", ":"))


def to_dict(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


@dataclass(frozen=True)
class Peers:
    """Channels to the services holding the user's data."""

    ledger: LazyChannel
    billing: LazyChannel
    notification: LazyChannel
    ds: LazyChannel
    reporting: LazyChannel

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
            channel("reporting", "expense.reporting.v1.ReportingService"),
        )

    async def close(self) -> None:
        for channel in (self.ledger, self.billing, self.notification, self.ds, self.reporting):
            await channel.close()


@dataclass
class _Progress:
    """Where the document stands, to close it properly if a part fails."""

    part: str = "account"
    in_list: bool = False
    # What later parts need from earlier ones: budget ids, bills (id, first due date),
    # the oldest expense's date.
    budget_ids: list[str] = field(default_factory=list)
    bills: list[tuple[str, str]] = field(default_factory=list)
    oldest_expense: str = ""

    def saw_expense(self, expense: ledger_pb2.Expense) -> None:
        if expense.spent_on and (not self.oldest_expense or expense.spent_on < self.oldest_expense):
            self.oldest_expense = expense.spent_on

    def failure(self, error: Exception) -> tuple[str, DomainError]:
        """The document's closing text after a failure and the error that ends the stream."""
        if isinstance(error, grpc.aio.AioRpcError):
            code, message = error.code().name, error.details() or ""
        else:
            code, message = "INTERNAL", "internal error"
        status = {"complete": False, "failed_part": self.part, "error": {"code": code, "message": message}}
        closing = ("]" if self.in_list else "") + f',"export_status":{json.dumps(status)}}}'
        text = f"the export stopped at {self.part} ({code}); the document says so at its end"
        raised: DomainError = (
            Unavailable(f"{text}: retry", "EXPORT_INCOMPLETE")
            if is_peer_failure(error)
            else Internal(text, "EXPORT_INCOMPLETE")
        )
        return closing, raised


class DataExport:
    """The document's parts in a fixed order, each written as soon as it is read."""

    def __init__(self, peers: Peers, accounts: AccountDirectory, timeout_seconds: float) -> None:
        self.peers = peers
        self.accounts = accounts
        self.timeout_seconds = timeout_seconds

    async def chunks(self, identity: Identity, profile: Message) -> AsyncIterator[str]:
        """The JSON document in pieces, its last key export_status (see the module)."""
        progress = _Progress()
        account = await self.accounts.account(identity.user_id)
        yield (
            f'{{"format":{json.dumps(FORMAT)},"exported_at":"{rfc3339(utcnow())}",'
            f'"user_id":{json.dumps(identity.user_id)},'
            f'"account":{to_json(account) if account is not None else "null"},'
            f'"profile":{to_json(profile)}'
        )
        reads = _Reads(self.peers, (("authorization", f"Bearer {identity.token}"),), self.timeout_seconds)
        try:
            for name, entries in reads.lists(progress):
                async for chunk in _list_part(name, entries, progress):
                    yield chunk
            progress.part = "notification_preferences"
            yield f',"notification_preferences":{to_json(await reads.preferences())}'
        except Exception as error:
            # Mapped here, not by the interceptor: the document must say it first.
            if isinstance(error, grpc.aio.AioRpcError):
                log.warning("export stopped", extra={"part": progress.part, "error": repr(error)})
            else:
                log.exception("export stopped by a bug", extra={"part": progress.part})
            closing, raised = progress.failure(error)
            yield closing
            raise raised from error
        yield ',"export_status":{"complete":true}}'


class _Reads:
    """The caller's data, read from each peer on its behalf: each list as batches of
    entries (JSON text), in document order. Generators: each runs only when its part is
    written, so a later one sees what earlier ones noted in the progress."""

    def __init__(self, peers: Peers, metadata: Metadata, timeout_seconds: float) -> None:
        self.call = {"metadata": metadata, "timeout": timeout_seconds}
        self.ledger = ledger_pb2_grpc.LedgerServiceStub(peers.ledger.get())
        self.billing = billing_pb2_grpc.BillingServiceStub(peers.billing.get())
        self.notify = notification_pb2_grpc.NotificationServiceStub(peers.notification.get())
        self.ds = ds_pb2_grpc.DsServiceStub(peers.ds.get())
        self.reports = reporting_pb2_grpc.ReportingServiceStub(peers.reporting.get())

    def lists(self, noted: _Progress) -> list[tuple[str, AsyncIterator[list[str]]]]:
        return [
            ("categories", _paged(self._categories, "categories")),
            ("expenses", _paged(self._expenses, "expenses", noted.saw_expense)),
            ("budgets", _paged(self._budgets, "budgets", lambda b: noted.budget_ids.append(b.budget_id))),
            ("budget_history", self._budget_history(noted)),
            ("bills", _paged(self._bills, "bills", lambda b: noted.bills.append((b.bill_id, b.first_due)))),
            ("bill_occurrences", self._bill_occurrences(noted)),
            ("alerts", _paged(self._alerts, "alerts")),
            ("notifications", _paged(self._notifications, "notifications")),
            ("contact_points", _paged(self._contact_points, "contact_points")),
            ("sms_reviews", _paged(self._sms_reviews, "reviews")),
            ("monthly_reports", self._monthly_reports(noted)),
        ]

    async def preferences(self) -> Message:
        request = notification_pb2.GetPreferencesRequest()
        return await self.notify.GetPreferences(request, **self.call)

    def _categories(self, _: str) -> Awaitable[Any]:
        return self.ledger.ListCategories(ledger_pb2.ListCategoriesRequest(), **self.call)

    def _contact_points(self, _: str) -> Awaitable[Any]:
        return self.notify.ListContactPoints(notification_pb2.ListContactPointsRequest(), **self.call)

    def _expenses(self, token: str) -> Awaitable[Any]:
        # No total_size: nothing here shows it, and counting is most of a large list's cost.
        request = ledger_pb2.ListExpensesRequest(
            page_size=LEDGER_PAGE, page_token=token, skip_total_size=True
        )
        return self.ledger.ListExpenses(request, **self.call)

    def _budgets(self, token: str) -> Awaitable[Any]:
        return self.billing.ListBudgets(
            billing_pb2.ListBudgetsRequest(page_size=PAGE, page_token=token), **self.call
        )

    def _bills(self, token: str) -> Awaitable[Any]:
        return self.billing.ListBills(
            billing_pb2.ListBillsRequest(page_size=PAGE, page_token=token), **self.call
        )

    def _alerts(self, token: str) -> Awaitable[Any]:
        return self.billing.ListAlerts(
            billing_pb2.ListAlertsRequest(page_size=PAGE, page_token=token), **self.call
        )

    def _notifications(self, token: str) -> Awaitable[Any]:
        request = notification_pb2.ListNotificationsRequest(page_size=PAGE, page_token=token)
        return self.notify.ListNotifications(request, **self.call)

    def _sms_reviews(self, token: str) -> Awaitable[Any]:
        return self.ds.ListSmsReviews(
            ds_pb2.ListSmsReviewsRequest(page_size=PAGE, page_token=token), **self.call
        )

    async def _budget_history(self, progress: _Progress) -> AsyncIterator[list[str]]:
        """Each budget's latest BUDGET_PERIODS past periods, newest first (one call a budget;
        the current period is the budget's own status)."""
        for budget_id in progress.budget_ids:
            request = billing_pb2.ListBudgetHistoryRequest(budget_id=budget_id, page_size=BUDGET_PERIODS)
            history = await self.billing.ListBudgetHistory(request, **self.call)
            yield [_entry({"budget_id": budget_id, **to_dict(history)})]

    async def _bill_occurrences(self, progress: _Progress) -> AsyncIterator[list[str]]:
        """Each bill's occurrences from its first due date to billing's default horizon
        (90 days ahead), read window after window: billing answers a bounded number a call."""
        for bill_id, first_due in progress.bills:
            found: list[dict[str, Any]] = []
            start = first_due
            while True:
                request = billing_pb2.ListBillOccurrencesRequest(bill_id=bill_id, **{"from": start})
                window = (await self.billing.ListBillOccurrences(request, **self.call)).occurrences
                if not window:
                    break
                found.extend(to_dict(occurrence) for occurrence in window)
                start = (date.fromisoformat(window[-1].due_date) + timedelta(days=1)).isoformat()
            yield [_entry({"bill_id": bill_id, "occurrences": found})]

    async def _monthly_reports(self, progress: _Progress) -> AsyncIterator[list[str]]:
        """The summary of each month with spending (what the monthly report mails), from
        the oldest expense's month to the current one, oldest first."""
        if not progress.oldest_expense:
            return
        months = _months(date.fromisoformat(progress.oldest_expense), utcnow().date() + ZONE_SPREAD)
        # A few at a time: a user of ten years asks for 120, each a few ms of reporting's work.
        for start in range(0, len(months), MONTHS_IN_FLIGHT):
            requests = [
                reporting_pb2.GetSummaryRequest(period="month", date=month.isoformat())
                for month in months[start : start + MONTHS_IN_FLIGHT]
            ]
            summaries = await asyncio.gather(*(self.reports.GetSummary(r, **self.call) for r in requests))
            yield [to_json(summary) for summary in summaries if summary.currencies]


async def _list_part(name: str, entries: AsyncIterator[list[str]], progress: _Progress) -> AsyncIterator[str]:
    """`,"name":[...]`, written batch by batch as the entries come."""
    progress.part, progress.in_list = name, True
    yield f',"{name}":['
    first = True
    async for batch in entries:
        if batch:
            yield ("" if first else ",") + ",".join(batch)
            first = False
    yield "]"
    progress.in_list = False


async def _paged(
    call: PageCall, items: str, seen: Callable[[Any], None] | None = None
) -> AsyncIterator[list[str]]:
    """Every page of a list as its entries, following next_page_token (a list without
    one: one page); `seen` notes each item for later parts."""
    token = ""
    while True:
        page = await call(token)
        found = getattr(page, items)
        if seen is not None:
            for item in found:
                seen(item)
        yield [to_json(item) for item in found]
        token = getattr(page, "next_page_token", "")
        if not token:
            return


def _months(first: date, last: date) -> list[date]:
    """The first day of each month from first's to last's."""
    months, month = [], first.replace(day=1)
    while month <= last:
        months.append(month)
        month = (month + timedelta(days=32)).replace(day=1)
    return months


def _entry(value: dict[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
