"""Clients of a running mesh (real auth, user and ledger services) for the ledger
tests: users signed up through the real auth service, gRPC stubs straight to the
ledger, and a JetStream reader of the events the ledger published."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import grpc
import nats
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from expense.auth.v1 import auth_pb2, auth_pb2_grpc
from expense.events.v1 import events_pb2
from expense.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from expense.user.v1 import user_pb2, user_pb2_grpc
from services.kit.events.bus import stream_name, subject_for
from services.kit.grpc.status import field_violations
from tests.mesh import Mesh
from tests.service_identity import operator_bearer

PASSWORD = "violet-harbor-tune-42"
CALL_TIMEOUT = 30.0
EVENT_TIMEOUT = 30.0


@dataclass(frozen=True)
class User:
    user_id: str
    access_token: str

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.access_token}"),)

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.access_token}"}


class LedgerClient:
    """gRPC clients of one mesh; channels live in the test's event loop."""

    def __init__(self, mesh: Mesh) -> None:
        self.mesh = mesh
        self.channels = {
            name: grpc.aio.insecure_channel(mesh.address(name)) for name in ("auth", "user", "ledger")
        }
        self.auth = auth_pb2_grpc.AuthServiceStub(self.channels["auth"])
        self.users = user_pb2_grpc.UserServiceStub(self.channels["user"])
        self.ledger = ledger_pb2_grpc.LedgerServiceStub(self.channels["ledger"])
        self.internal = ledger_pb2_grpc.LedgerInternalServiceStub(self.channels["ledger"])

    @property
    def service(self) -> tuple[tuple[str, str], ...]:
        """What reporting's calls to LedgerInternalService carry: its service token
        (an operator's here, signed with the mesh's keys: the same checks apply)."""
        return operator_bearer(self.mesh.data_dir)

    async def close(self) -> None:
        for channel in self.channels.values():
            await channel.close()

    async def sign_up(self) -> User:
        email = f"ledger.{secrets.token_hex(6)}@example.org"
        request = auth_pb2.SignUpRequest(email=email, password=PASSWORD, display_name="Ledger Tester")
        tokens = await self.auth.SignUp(request, timeout=CALL_TIMEOUT)
        return User(tokens.user.user_id, tokens.access_token)

    async def set_preferences(self, user: User, currency: str, time_zone: str) -> None:
        profile = user_pb2.Profile(default_currency=currency, time_zone=time_zone)
        request = user_pb2.UpdateProfileRequest(profile=profile, update_mask="default_currency,time_zone")
        await self.users.UpdateProfile(request, metadata=user.metadata, timeout=CALL_TIMEOUT)

    async def create(self, user: User, **fields: object) -> ledger_pb2.Expense:
        fields.setdefault("amount", "100.00")
        fields.setdefault("currency", "INR")
        fields.setdefault("spent_on", "2026-01-15")
        request = ledger_pb2.CreateExpenseRequest(**fields)  # type: ignore[arg-type]
        return await self.ledger.CreateExpense(request, metadata=user.metadata, timeout=CALL_TIMEOUT)

    async def get(self, user: User, expense_id: str) -> ledger_pb2.Expense:
        request = ledger_pb2.GetExpenseRequest(expense_id=expense_id)
        return await self.ledger.GetExpense(request, metadata=user.metadata, timeout=CALL_TIMEOUT)

    async def update(
        self, user: User, expense_id: str, mask: str, etag: str = "", **fields: object
    ) -> ledger_pb2.Expense:
        request = ledger_pb2.UpdateExpenseRequest(
            expense_id=expense_id,
            expense=ledger_pb2.Expense(**fields),  # type: ignore[arg-type]
            update_mask=mask,
            etag=etag,
        )
        return await self.ledger.UpdateExpense(request, metadata=user.metadata, timeout=CALL_TIMEOUT)

    async def delete(self, user: User, expense_id: str, etag: str = "") -> None:
        request = ledger_pb2.DeleteExpenseRequest(expense_id=expense_id, etag=etag)
        await self.ledger.DeleteExpense(request, metadata=user.metadata, timeout=CALL_TIMEOUT)

    async def list(self, user: User, **fields: object) -> ledger_pb2.ListExpensesResponse:
        request = ledger_pb2.ListExpensesRequest(**fields)  # type: ignore[arg-type]
        return await self.ledger.ListExpenses(request, metadata=user.metadata, timeout=CALL_TIMEOUT)

    async def list_all(self, user: User, **fields: object) -> list[ledger_pb2.Expense]:
        found: list[ledger_pb2.Expense] = []
        token = ""
        while True:
            page = await self.list(user, page_size=500, page_token=token, **fields)
            found.extend(page.expenses)
            token = page.next_page_token
            if not token:
                return found

    async def history(self, user: User, expense_id: str) -> list[ledger_pb2.HistoryEntry]:
        request = ledger_pb2.GetExpenseHistoryRequest(expense_id=expense_id)
        answer = await self.ledger.GetExpenseHistory(request, metadata=user.metadata, timeout=CALL_TIMEOUT)
        return list(answer.entries)

    async def categories(self, user: User) -> dict[str, ledger_pb2.Category]:
        answer = await self.ledger.ListCategories(
            ledger_pb2.ListCategoriesRequest(), metadata=user.metadata, timeout=CALL_TIMEOUT
        )
        return {category.name: category for category in answer.categories}

    async def create_category(
        self, user: User, name: str, parent_id: str = "", **fields: object
    ) -> ledger_pb2.Category:
        request = ledger_pb2.CreateCategoryRequest(name=name, parent_id=parent_id, **fields)  # type: ignore[arg-type]
        return await self.ledger.CreateCategory(request, metadata=user.metadata, timeout=CALL_TIMEOUT)

    async def import_rows(
        self, user: User, rows: list[ledger_pb2.ImportRow]
    ) -> ledger_pb2.ImportExpensesResponse:
        request = ledger_pb2.ImportExpensesRequest(rows=rows)
        return await self.ledger.ImportExpenses(request, metadata=user.metadata, timeout=CALL_TIMEOUT)


@asynccontextmanager
async def ledger_client(mesh: Mesh) -> AsyncIterator[LedgerClient]:
    client = LedgerClient(mesh)
    try:
        yield client
    finally:
        await client.close()


async def rpc_error(call: Awaitable[object]) -> grpc.aio.AioRpcError:
    """The error a call must fail with (the test fails if it succeeds)."""
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error
    raise AssertionError("the call succeeded but was expected to fail")


async def invalid_fields(call: Awaitable[object]) -> dict[str, str]:
    error = await rpc_error(call)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (error.code(), error.details())
    return field_violations(error)


def import_row(request_id: str = "", **fields: object) -> ledger_pb2.ImportRow:
    fields.setdefault("amount", "10.00")
    fields.setdefault("currency", "INR")
    fields.setdefault("spent_on", "2026-02-01")
    return ledger_pb2.ImportRow(request_id=request_id or secrets.token_hex(8), **fields)  # type: ignore[arg-type]


class EventReader:
    """A durable pull consumer of its own on the mesh's real event stream."""

    def __init__(self, nats_url: str, prefix: str, pattern: str = "expense.>") -> None:
        self.nats_url = nats_url
        self.prefix = prefix
        self.pattern = pattern
        self.durable = f"ledger_test_{secrets.token_hex(4)}"
        self.nc: nats.NATS | None = None
        self.seen: list[events_pb2.EventEnvelope] = []

    async def open(self) -> None:
        nc = await nats.connect(self.nats_url, connect_timeout=2, max_reconnect_attempts=0)
        try:
            await nc.jetstream().add_consumer(
                stream_name(self.prefix),
                ConsumerConfig(
                    durable_name=self.durable,
                    ack_policy=AckPolicy.EXPLICIT,
                    deliver_policy=DeliverPolicy.ALL,
                    filter_subject=subject_for(self.prefix, self.pattern),
                ),
            )
        except Exception:
            await nc.close()
            raise
        self.nc = nc

    async def close(self) -> None:
        if self.nc is not None:
            await self.nc.jetstream().delete_consumer(stream_name(self.prefix), self.durable)
            await self.nc.close()

    async def read(
        self, user_id: str, until: Callable[[list[events_pb2.EventEnvelope]], bool]
    ) -> list[events_pb2.EventEnvelope]:
        """Every event of user_id delivered so far; keeps reading until `until` holds
        (or the timeout), then a little longer so that extra events would show up."""
        assert self.nc is not None
        subscription = await self.nc.jetstream().pull_subscribe_bind(
            durable=self.durable, stream=stream_name(self.prefix)
        )
        deadline = time.monotonic() + EVENT_TIMEOUT
        settle_until: float | None = None
        try:
            while time.monotonic() < (settle_until or deadline):
                try:
                    messages = await subscription.fetch(200, timeout=0.5)
                except (NatsTimeoutError, TimeoutError):
                    messages = []
                for message in messages:
                    self.seen.append(events_pb2.EventEnvelope.FromString(message.data))
                    await message.ack()
                mine = [envelope for envelope in self.seen if envelope.user_id == user_id]
                if settle_until is None and until(mine):
                    settle_until = time.monotonic() + 1.5
        finally:
            await subscription.unsubscribe()
        return [envelope for envelope in self.seen if envelope.user_id == user_id]


def unpack(envelope: events_pb2.EventEnvelope) -> object:
    kinds = {
        "expense.created": events_pb2.ExpenseCreated,
        "expense.updated": events_pb2.ExpenseUpdated,
        "expense.deleted": events_pb2.ExpenseDeleted,
        "category.changed": events_pb2.CategoryChanged,
    }
    message = kinds[envelope.type]()
    assert envelope.payload.Unpack(message)
    return message


async def gather_outcomes(calls: list[Awaitable[object]]) -> list[object]:
    """Runs calls concurrently; each result is the answer or the raised RPC error."""
    return list(await asyncio.gather(*calls, return_exceptions=True))
