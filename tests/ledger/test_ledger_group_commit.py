"""Grouped CreateExpense on real SQLite and PostgreSQL, through the servicer and the
use cases in process (so that the calls of one wave reach the batcher together):
request ids repeated or reused within a batch, missing categories in the middle of
one, a batch failing on a concurrent duplicate key, a commit lost in flight. Every
expense must keep exactly one audit entry and one expense.created event."""

from __future__ import annotations

import asyncio
import collections
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from expense.events.v1 import events_pb2
from expense.ledger.v1 import ledger_pb2
from services.kit.config.settings import MeshSettings, ResilienceSettings
from services.kit.db import migrations, unit_of_work
from services.kit.db.engine import Database
from services.kit.db.idempotency import RequestKey, StoredAnswer
from services.kit.db.unit_of_work import UnitsOfWork
from services.kit.domain.errors import InvalidArgument, NotFound
from services.kit.domain.ids import new_id
from services.kit.events.outbox import Outbox
from services.kit.identity.tokens import Identity, reset_identity, set_identity
from services.ledger import storage
from services.ledger.api import LedgerServicer
from services.ledger.domain import PageTokens, load_default_categories
from services.ledger.settings import LedgerSettings
from services.ledger.usecases import Ledger, PendingCreate
from services.user.client import PreferencesClient

Outcome = ledger_pb2.Expense | BaseException


class RecordingLedger(Ledger):
    """The real use cases, remembering the batches they wrote and the creates they wrote alone."""

    def __init__(self, db: Database) -> None:
        settings = LedgerSettings()
        units = UnitsOfWork(db, Outbox(storage.outbox, "t", "ledger"), storage.idempotency_keys)
        defaults = load_default_categories(settings.default_categories_file)
        super().__init__(units, settings, defaults, PageTokens(secrets.token_bytes(32)))
        self.batches: list[list[PendingCreate]] = []
        self.alone: list[PendingCreate] = []

    async def _create_batch(
        self, creates: list[PendingCreate], next_may_start: Callable[[], None]
    ) -> list[ledger_pb2.Expense | Exception]:
        self.batches.append(list(creates))
        return await super()._create_batch(creates, next_may_start)

    async def _create_alone(self, create: PendingCreate) -> ledger_pb2.Expense:
        self.alone.append(create)
        return await super()._create_alone(create)


class ResponseHeaders:
    """The servicer context as CreateExpense uses it: its ETag and consistency headers."""

    def __init__(self) -> None:
        self.sent: tuple[tuple[str, str], ...] = ()

    async def send_initial_metadata(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self.sent = tuple(metadata)


class World:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.ledger = RecordingLedger(db)
        # Preferences are never asked: every request carries currency and spent_on.
        preferences = PreferencesClient("127.0.0.1:9", 1.0, ResilienceSettings())
        self.servicer = LedgerServicer(self.ledger, preferences)

    async def user(self) -> tuple[str, str]:
        """A new user with the default categories, and the id of one of them."""
        user_id = new_id()
        await self.ledger.ensure_categories(user_id)
        async with self.db.transaction() as session:
            return user_id, (await storage.user_categories(session, user_id))[0].category_id

    async def create(self, user_id: str, **fields: Any) -> ledger_pb2.Expense:
        fields.setdefault("amount", "10.00")
        fields.setdefault("currency", "INR")
        fields.setdefault("spent_on", "2026-03-01")
        marker = set_identity(Identity(user_id, "session", "token", 0))
        try:
            request = ledger_pb2.CreateExpenseRequest(**fields)
            return await self.servicer.CreateExpense(request, ResponseHeaders())  # type: ignore[arg-type]
        finally:
            reset_identity(marker)

    async def wave(self, calls: list[tuple[str, dict[str, Any]]]) -> list[Outcome]:
        """All calls at once: they reach the batcher in the same turn of the loop."""
        return list(
            await asyncio.gather(
                *(self.create(user, **fields) for user, fields in calls), return_exceptions=True
            )
        )

    async def stored(
        self, user_ids: set[str]
    ) -> tuple[set[str], collections.Counter[str], collections.Counter[str]]:
        """The users' expense ids, and per expense id its audit entries and expense.created events."""
        async with self.db.transaction() as session:
            expenses = (
                await session.execute(
                    select(storage.expenses.c.id).where(storage.expenses.c.user_id.in_(user_ids))
                )
            ).scalars()
            entries = (
                await session.execute(
                    select(storage.ledger_entries.c.expense_id).where(
                        storage.ledger_entries.c.user_id.in_(user_ids)
                    )
                )
            ).scalars()
            bodies = (await session.execute(select(storage.outbox.c.body))).scalars()
            expense_ids, entry_ids = set(expenses), collections.Counter(entries)
            events = collections.Counter(created_ids(bodies, user_ids))
        return expense_ids, entry_ids, events

    async def stored_request_ids(self, user_id: str) -> set[str]:
        table = storage.idempotency_keys
        async with self.db.transaction() as session:
            query = select(table.c.request_id).where(
                table.c.user_id == user_id, table.c.method == "CreateExpense"
            )
            return set((await session.execute(query)).scalars())


def created_ids(bodies: Any, user_ids: set[str]) -> Iterator[str]:
    for body in bodies:
        envelope = events_pb2.EventEnvelope.FromString(body)
        if envelope.type == "expense.created" and envelope.user_id in user_ids:
            created = events_pb2.ExpenseCreated()
            assert envelope.payload.Unpack(created)
            yield created.expense.expense_id


@pytest.fixture
async def world(database_url: str, tmp_path: Path) -> AsyncIterator[World]:
    settings = MeshSettings(database_url=database_url, data_dir=tmp_path)
    await asyncio.to_thread(migrations.upgrade, "ledger", settings)
    db = Database(database_url, schema="ledger", pool_size=4)
    yield World(db)
    await db.dispose()


def is_not_found_category(outcome: Outcome, category_id: str) -> bool:
    return isinstance(outcome, NotFound) and (outcome.resource_type, outcome.resource_name) == (
        "category",
        category_id,
    )


def is_reused_request_id(outcome: Outcome) -> bool:
    return isinstance(outcome, InvalidArgument) and [v.field for v in outcome.violations] == ["request_id"]


async def assert_one_entry_and_event_each(world: World, user_ids: set[str], expected: set[str]) -> None:
    expense_ids, entries, events = await world.stored(user_ids)
    assert expense_ids == expected
    assert entries == collections.Counter(expected)
    assert events == collections.Counter(expected)


async def test_a_wave_of_creates_answers_each_as_if_alone(world: World) -> None:
    alice, alice_category = await world.user()
    bob, bob_category = await world.user()
    earlier = await world.create(alice, request_id="earlier", amount="5.00")
    missing = new_id()
    calls: list[tuple[str, dict[str, Any]]] = [
        (alice, {"request_id": "first", "amount": "1.00", "category_id": alice_category}),
        (alice, {"request_id": "twice", "amount": "2.00", "merchant": "Twice"}),
        (alice, {"amount": "3.00"}),
        (alice, {"request_id": "bobs-category", "category_id": bob_category}),
        (alice, {"request_id": "twice", "amount": "2.00", "merchant": "Twice"}),
        (alice, {"request_id": "reused", "amount": "4.00"}),
        (alice, {"request_id": "reused", "amount": "4.01"}),
        (alice, {"request_id": "earlier", "amount": "5.00"}),
        (alice, {"request_id": "earlier", "amount": "5.50"}),
        (alice, {"category_id": missing}),
        (alice, {"request_id": "twice", "amount": "2.00", "merchant": "Twice"}),
        (bob, {"request_id": "twice", "amount": "2.00", "merchant": "Twice"}),
        (bob, {"request_id": "alices-category", "category_id": alice_category}),
        (alice, {"request_id": "missing-then-fixed", "category_id": missing}),
        (alice, {"request_id": "missing-then-fixed", "category_id": alice_category}),
        *[(alice, {"request_id": f"bulk-{i}", "amount": f"{i + 1}.00", "tags": ["bulk"]}) for i in range(20)],
    ]
    outcomes = await world.wave(calls)

    created = [o for o in outcomes if isinstance(o, ledger_pb2.Expense)]
    assert outcomes[0].category_id == alice_category and outcomes[0].amount == "1.00"
    assert outcomes[1].merchant == "Twice" and outcomes[4] == outcomes[1] and outcomes[10] == outcomes[1]
    assert outcomes[2].amount == "3.00"
    assert is_not_found_category(outcomes[3], bob_category)
    assert outcomes[5].amount == "4.00" and is_reused_request_id(outcomes[6])
    assert outcomes[7] == earlier and is_reused_request_id(outcomes[8])
    assert is_not_found_category(outcomes[9], missing)
    assert outcomes[11].merchant == "Twice" and outcomes[11].expense_id != outcomes[1].expense_id
    assert is_not_found_category(outcomes[12], alice_category)
    assert is_not_found_category(outcomes[13], missing) and outcomes[14].category_id == alice_category
    assert [o.amount for o in outcomes[15:]] == [f"{i + 1}.00" for i in range(20)]

    # Grouped for real: batches of several creates, never two of one request id.
    assert max(len(batch) for batch in world.ledger.batches) > 1
    for batch in world.ledger.batches:
        keys = [create.key for create in batch if create.key is not None]
        assert len(keys) == len(set(keys))
    assert world.ledger.alone == []

    expense_ids = {o.expense_id for o in created} | {earlier.expense_id}
    assert len(expense_ids) == len(created) - 2  # alice's "twice" answered thrice with one expense
    await assert_one_entry_and_event_each(world, {alice, bob}, expense_ids)
    assert await world.stored_request_ids(alice) == {
        "earlier",
        "first",
        "twice",
        "reused",
        "missing-then-fixed",
        *(f"bulk-{i}" for i in range(20)),
    }
    assert await world.stored_request_ids(bob) == {"twice"}


async def test_a_batch_losing_a_key_race_is_written_item_by_item(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, category = await world.user()
    raced = await world.create(alice, request_id="raced", amount="7.00")
    real_answers = unit_of_work.answers_in
    lookups = 0

    def too_early(rows: Any) -> dict[RequestKey, StoredAnswer]:
        # As if the batch had looked before the other writer of "raced" committed.
        nonlocal lookups
        lookups += 1
        return {} if lookups == 1 else real_answers(rows)

    monkeypatch.setattr(unit_of_work, "answers_in", too_early)
    outcomes = await world.wave(
        [
            (alice, {"request_id": "one", "amount": "1.00", "category_id": category}),
            (alice, {"request_id": "raced", "amount": "7.00"}),
            (alice, {"amount": "2.00"}),
            (alice, {"request_id": "two", "category_id": new_id()}),
            (alice, {"request_id": "three", "amount": "3.00"}),
        ]
    )
    assert [len(batch) for batch in world.ledger.batches] == [1, 5]  # "raced" first, then the wave
    assert len(world.ledger.alone) == 5
    assert outcomes[1] == raced
    assert [outcomes[i].amount for i in (0, 2, 4)] == ["1.00", "2.00", "3.00"]
    assert isinstance(outcomes[3], NotFound)
    expected = {raced.expense_id} | {outcomes[i].expense_id for i in (0, 2, 4)}
    await assert_one_entry_and_event_each(world, {alice}, expected)
    assert await world.stored_request_ids(alice) == {"raced", "one", "three"}


async def test_a_commit_lost_in_flight_is_not_retried(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    alice, _ = await world.user()
    real_transaction = world.db.transaction
    lost = DBAPIError("COMMIT", None, OSError("server closed the connection"), connection_invalidated=True)

    @asynccontextmanager
    async def losing_commit() -> AsyncIterator[AsyncSession]:
        async with real_transaction() as session:
            yield session
            raise lost  # rolls the real transaction back: the commit's outcome unknown to the caller

    monkeypatch.setattr(world.db, "transaction", losing_commit)
    outcomes = await world.wave([(alice, {"request_id": f"r{i}"}) for i in range(4)] + [(alice, {})])
    monkeypatch.undo()
    assert all(outcome is lost for outcome in outcomes)
    # Retrying item by item could have stored each expense twice had the commit succeeded.
    assert world.ledger.alone == []
    await assert_one_entry_and_event_each(world, {alice}, set())
