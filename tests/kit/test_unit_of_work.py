"""The event registry and the unit of work: an event's type and producer come from
its payload's declaration in the proto; a unit of work's change, events and
AIP-155 answers commit together or not at all, and a batch looks its answers up
with its own reads (real SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import MetaData, func, select

from expense.events.v1 import events_pb2
from services.kit.db.engine import Database
from services.kit.db.idempotency import NewAnswer, RequestKey, idempotency_table
from services.kit.db.sql import one_round_trip
from services.kit.db.unit_of_work import UnitOfWork, UnitsOfWork
from services.kit.events.outbox import Outbox
from services.kit.events.registry import event_type_named, event_type_of, event_types
from services.kit.events.tables import add_event_tables
from tests.kit.conftest import database_with

metadata = MetaData()
outbox_table, _ = add_event_tables(metadata)
answers_table = idempotency_table(metadata)
SERVICES = {"auth", "user", "ledger", "reporting", "billing", "templating", "ds", "notification"}


def test_every_event_type_is_declared_once_with_a_known_producer() -> None:
    names = [event_type.name for event_type in event_types()]
    assert len(names) == len(set(names)) >= 6
    assert {event_type.producer for event_type in event_types()} <= SERVICES
    created = event_type_of(events_pb2.ExpenseCreated)
    assert (created.name, created.producer) == ("expense.created", "ledger")
    assert event_type_named("user.registered").payload is events_pb2.UserRegistered


def test_a_message_not_declared_an_event_has_no_type() -> None:
    with pytest.raises(TypeError, match="not declared"):
        event_type_of(events_pb2.ExpenseSnapshot)


@pytest.fixture
async def units(database_url: str) -> AsyncIterator[UnitsOfWork]:
    async with database_with(database_url, metadata, "uow") as db:
        yield UnitsOfWork(db, Outbox(outbox_table, "t", "ledger"), answers_table)


async def _outbox_rows(db: Database) -> int:
    async with db.transaction() as session:
        return (await session.execute(select(func.count()).select_from(outbox_table))).scalar_one()


def _created(expense_id: str) -> events_pb2.ExpenseCreated:
    return events_pb2.ExpenseCreated(expense=events_pb2.ExpenseSnapshot(expense_id=expense_id))


async def test_events_commit_with_the_change_or_not_at_all(units: UnitsOfWork) -> None:
    async with units.begin() as unit:
        await unit.publish("u1", _created("e1"))
    with pytest.raises(RuntimeError, match="rolled back"):
        async with units.begin() as unit:
            await unit.publish("u1", _created("e2"))
            raise RuntimeError("rolled back")
    assert await _outbox_rows(units.db) == 1
    assert len(units.outbox.handed) == 1  # handed to the relay on commit only


async def test_a_service_publishes_only_its_own_event_types(units: UnitsOfWork) -> None:
    with pytest.raises(ValueError, match="auth's to publish"):
        async with units.begin() as unit:
            await unit.publish("u1", events_pb2.UserRegistered(user_id="u1"))
    assert await _outbox_rows(units.db) == 0


async def test_once_answers_a_retry_with_the_first_answer(units: UnitsOfWork) -> None:
    calls: list[str] = []

    async def work(unit: UnitOfWork) -> events_pb2.ExpenseSnapshot:
        calls.append("ran")
        await unit.publish("u1", _created(f"e{len(calls)}"))
        return events_pb2.ExpenseSnapshot(expense_id=f"e{len(calls)}")

    key = RequestKey("u1", "Create", "r1")
    first = await units.once(key, "fp", events_pb2.ExpenseSnapshot, work)
    again = await units.once(key, "fp", events_pb2.ExpenseSnapshot, work)
    assert first == again and calls == ["ran"]
    assert await _outbox_rows(units.db) == 1
    await units.once(None, "", events_pb2.ExpenseSnapshot, work)
    assert calls == ["ran", "ran"]


async def test_a_batch_finds_its_answers_with_its_own_reads(units: UnitsOfWork) -> None:
    first, second = RequestKey("u1", "Create", "r1"), RequestKey("u1", "Create", "r2")
    # Queued and sent with the batch's other inserts, as a group commit does.
    async with units.begin() as unit, one_round_trip(unit.session):
        await unit.store_answers([NewAnswer(first, "fp1", events_pb2.ExpenseSnapshot(expense_id="e1"))])
        await unit.publish("u1", _created("e1"))
    own_read = (select(func.count()).select_from(outbox_table), {})
    async with units.begin() as unit:
        stored, [own_rows] = await unit.stored_answers_with([first, second], [own_read])
        assert await unit.stored_answers([second]) == {}
    assert list(stored) == [first]
    assert stored[first].replay("fp1", events_pb2.ExpenseSnapshot).expense_id == "e1"
    assert own_rows[0][0] == 1


async def test_answers_are_stored_only_if_the_unit_commits(units: UnitsOfWork) -> None:
    key = RequestKey("u1", "Create", "r1")
    with pytest.raises(RuntimeError, match="rolled back"):
        async with units.begin() as unit:
            await unit.store_answers([NewAnswer(key, "fp", events_pb2.ExpenseSnapshot(expense_id="e1"))])
            raise RuntimeError("rolled back")
    async with units.begin() as unit:
        assert await unit.stored_answers([key]) == {}


async def test_a_service_without_request_ids_has_no_answers(units: UnitsOfWork) -> None:
    without = UnitsOfWork(units.db, units.outbox)
    with pytest.raises(RuntimeError, match="keeps no request ids"):
        async with without.begin() as unit:
            await unit.stored_answers([RequestKey("u1", "Create", "r1")])
