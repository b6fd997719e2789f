"""Expense events applied a fetched batch at a time: the walk over the copies in
plain Python, then through the real consumer (inbox included) on both
databases. Several changes of one expense in a batch end at its last state,
redeliveries inside and across batches change nothing, a poison event falls
back to one transaction per event while the rest apply, the users' cached
reports are invalidated once each after the commit, and after random histories
in random batches the rollups equal a recomputation from the final expenses."""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import replace
from datetime import date
from typing import Any

import pytest
from google.protobuf.json_format import MessageToDict
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from expense.events.v1 import events_pb2
from services.kit.db.engine import Database
from services.kit.domain.ids import new_id
from services.kit.domain.periods import period_containing
from services.kit.events.subscription import Event
from services.ledger.replica import ExpenseChange, ExpenseLine, StoredExpense
from services.reporting import storage
from services.reporting.api import currency_summary
from services.reporting.domain import apply_changes, rollup_deltas
from services.reporting.events import EventHandlers
from services.reporting.settings import ReportingSettings
from services.reporting.usecases import Reports, Viewer
from tests.kit.fake_messages import FakeMessage, as_messages, batch_of
from tests.reporting import reference
from tests.reporting.harness import Reporting, as_events
from tests.reporting.histories import TREE, history, history_settings
from tests.reporting.reference import Category, Expense, LedgerModel, Viewpoint, rollup_starts

# (table, grain, period_start, category_id, currency, merchant) -> (sum_minor, count)
Rollups = dict[tuple[str, str, date, str, str, str], tuple[int, int]]
KEY = ("user", "e1")


# ------------------------------------------------------------ the walk, in plain Python


def _line(version: int, **changes: object) -> ExpenseLine:
    fields: dict[str, object] = {
        "expense_id": "e1",
        "amount_minor": 1000,
        "currency": "INR",
        "spent_on": date(2024, 1, 31),
        "category_id": "food",
        "merchant": "Acme",
        "version": version,
    }
    return ExpenseLine(**(fields | changes))  # type: ignore[arg-type]


def _created(line: ExpenseLine) -> ExpenseChange:
    return ExpenseChange(*KEY, line, None, line.version)


def _updated(before: ExpenseLine, after: ExpenseLine) -> ExpenseChange:
    return ExpenseChange(*KEY, after, before, after.version)


def _deleted(before: ExpenseLine) -> ExpenseChange:
    return ExpenseChange(*KEY, None, before, before.version + 1)


def test_a_creation_and_its_update_in_one_batch_count_the_final_state_only() -> None:
    first, second = _line(1), _line(2, amount_minor=700, spent_on=date(2024, 2, 1))
    outcome = apply_changes({}, [_created(first), _updated(first, second)])
    assert outcome.copies == {KEY: StoredExpense(second)}
    assert outcome.deltas == {"user": rollup_deltas([(None, second)])}
    assert outcome.out_of_step == []


def test_create_update_delete_in_one_batch_leave_a_tombstone_and_no_deltas() -> None:
    first, second = _line(1), _line(2, merchant="Zed")
    outcome = apply_changes({}, [_created(first), _updated(first, second), _deleted(second)])
    assert outcome.copies == {KEY: StoredExpense(replace(second, version=3), deleted=True)}
    assert all(not changes for changes in outcome.deltas["user"].values())


def test_late_and_repeated_changes_in_a_batch_change_nothing() -> None:
    first, second = _line(1), _line(2, amount_minor=5)
    stored = {KEY: StoredExpense(second)}
    outcome = apply_changes(stored, [_created(first), _updated(first, second), _updated(first, second)])
    assert (outcome.copies, outcome.deltas) == ({}, {})


def test_a_copy_out_of_step_is_replaced_exactly_and_reported() -> None:
    missed = _line(1, amount_minor=999)  # the copy missed an event the ledger sent
    after = _line(3, amount_minor=20)
    outcome = apply_changes({KEY: StoredExpense(missed)}, [_updated(_line(2), after)])
    assert outcome.deltas == {"user": rollup_deltas([(missed, after)])}
    assert outcome.out_of_step == [KEY]


# ------------------------------------------------------------ through the consumer


def recomputed(model: LedgerModel) -> Rollups:
    """The rollups from scratch, straight from the final expenses."""
    sums: dict[tuple[str, str, date, str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    for expense in model.expenses.values():
        merchant = expense.merchant.strip()[:200]
        for grain, start in rollup_starts(expense.spent_on):
            keys = [("category_totals", grain, start, expense.category_id, expense.currency, "")]
            if merchant:
                keys.append(
                    ("merchant_totals", grain, start, expense.category_id, expense.currency, merchant)
                )
            for key in keys:
                sums[key][0] += expense.amount_minor
                sums[key][1] += 1
    return {key: (total, count) for key, (total, count) in sums.items()}


async def stored_rollups(db: Database, user_id: str) -> Rollups:
    """The user's rollup rows, with deleted categories followed to where their
    expenses went (the ledger moves them without an event per expense)."""
    found: dict[tuple[str, str, date, str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    async with db.transaction() as session:
        tree = await storage.category_tree(session, user_id)
        for table in (storage.category_totals, storage.merchant_totals):
            for row in (await session.execute(select(table).where(table.c.user_id == user_id))).all():
                category_id = tree.resolve(row.category_id)
                key = (
                    table.name,
                    row.grain,
                    row.period_start,
                    category_id,
                    row.currency,
                    row._mapping.get("merchant", ""),
                )
                found[key][0] += int(row.sum_minor)
                found[key][1] += int(row.count)
    return {key: (total, count) for key, (total, count) in found.items()}


async def live_copies(db: Database, user_id: str) -> dict[str, tuple[int, str, date, str]]:
    async with db.transaction() as session:
        lines = await storage.expense_lines(session, user_id, date(1900, 1, 1), date(2999, 12, 31))
    return {
        line.expense_id: (line.amount_minor, line.currency, line.spent_on, line.merchant) for line in lines
    }


def model_copies(model: LedgerModel) -> dict[str, tuple[int, str, date, str]]:
    # Not the category nor the version: the ledger moves a deleted category's
    # expenses without necessarily an event per expense.
    return {
        e.expense_id: (e.amount_minor, e.currency, e.spent_on, e.merchant) for e in model.expenses.values()
    }


def renamed(envelope: events_pb2.EventEnvelope) -> events_pb2.EventEnvelope:
    """The same event under a new id, as published again after JetStream's duplicate window."""
    again = events_pb2.EventEnvelope()
    again.CopyFrom(envelope)
    again.event_id = new_id()
    return again


async def _user_with_food(reporting: Reporting) -> tuple[LedgerModel, str]:
    model = LedgerModel(new_id())
    food = Category(new_id(), "Food")
    await reporting.apply(model.add_category(food))
    return model, food.category_id


async def test_several_changes_of_one_expense_in_one_batch(reporting: Reporting) -> None:
    model, food = await _user_with_food(reporting)
    gone = Expense(new_id(), 1000, "INR", date(2024, 3, 5), food, "Acme")
    kept = Expense(new_id(), 2500, "INR", date(2024, 3, 6), food, "Bazaar")
    batch = [
        model.create(gone),
        model.create(kept),
        model.update(gone.expense_id, amount_minor=1500),
        model.update(kept.expense_id, spent_on=date(2024, 4, 1), merchant="Zed"),
        model.delete(gone.expense_id),
    ]
    await reporting.apply_batch(*batch)
    assert await stored_rollups(reporting.db, model.user_id) == recomputed(model)
    async with reporting.db.transaction() as session:
        copies = await storage.load_expenses(session, {(model.user_id, gone.expense_id)})
    tombstone = copies[(model.user_id, gone.expense_id)]
    assert tombstone.deleted and tombstone.line.version == 3 and tombstone.line.amount_minor == 1500

    # A late copy of the creation cannot bring the deleted expense back.
    await reporting.apply_batch(renamed(batch[0]))
    assert await stored_rollups(reporting.db, model.user_id) == recomputed(model)
    assert await live_copies(reporting.db, model.user_id) == model_copies(model)
    await assert_month_summaries(reporting.db, model, [date(2024, 3, 1), date(2024, 4, 1)])


async def assert_month_summaries(db: Database, model: LedgerModel, days: list[date]) -> None:
    reports = Reports(db, ReportingSettings())
    view = Viewpoint(date(2024, 6, 1), "monday", "INR")
    viewer = Viewer(model.user_id, view.today, view.first_day_of_week, view.default_currency)
    for day in days:
        got = await reports.summary(viewer, period_containing("month", day, "monday"))
        expected = reference.summary(model, "month", day, view)
        assert [MessageToDict(currency_summary(block)) for block in got] == [
            MessageToDict(block) for block in expected.currencies
        ]


async def test_redeliveries_inside_and_across_batches_change_nothing(reporting: Reporting) -> None:
    model, food = await _user_with_food(reporting)
    first = Expense(new_id(), 1000, "JPY", date(2024, 3, 5), food, "Acme")
    second = Expense(new_id(), 2000, "JPY", date(2024, 3, 31), food, "")
    create_first, create_second = model.create(first), model.create(second)
    update_first = model.update(first.expense_id, amount_minor=10, spent_on=date(2024, 4, 1))
    consumer = reporting.expense_consumer()

    inside = batch_of(create_first, create_second, create_first, update_first, create_second)
    await consumer.handle_batch(as_messages(inside))
    across = batch_of(update_first, create_first, renamed(create_first), create_second, renamed(update_first))
    await consumer.handle_batch(as_messages(across))
    await reporting.handlers.settled()

    assert [m.outcome for m in inside + across] == ["ack"] * 10
    assert await stored_rollups(reporting.db, model.user_id) == recomputed(model)
    assert await live_copies(reporting.db, model.user_id) == model_copies(model)


async def test_a_poison_event_falls_back_and_the_rest_of_its_batch_applies(reporting: Reporting) -> None:
    model, food = await _user_with_food(reporting)
    first = Expense(new_id(), 1000, "INR", date(2024, 3, 5), food, "Acme")
    second = Expense(new_id(), 2000, "INR", date(2024, 3, 6), food, "Bazaar")
    third = Expense(new_id(), 3000, "INR", date(2024, 3, 7), food, "Cafe")
    events = [model.create(first), model.create(second)]
    unchanged_first = model.expenses[first.expense_id]
    poison = model.update(first.expense_id, amount_minor=1)
    events += [poison, model.create(third), model.delete(second.expense_id)]
    healed = False

    async def poisoned(session: AsyncSession, events: Sequence[Event[Any]]) -> None:
        if not healed and any(event.event_id == poison.event_id for event in events):
            raise RuntimeError("a transient failure")
        await reporting.handlers.on_expense_events(session, events)

    consumer = reporting.expense_consumer(poisoned)
    messages = batch_of(*events)
    await consumer.handle_batch(as_messages(messages))
    assert [m.outcome for m in messages] == ["ack", "ack", "nak", "ack", "ack"]
    without_poison = LedgerModel(model.user_id, {**model.expenses, first.expense_id: unchanged_first})
    assert await stored_rollups(reporting.db, model.user_id) == recomputed(without_poison)

    healed = True
    redelivered = FakeMessage.of(poison, num_delivered=2)
    await consumer.handle_batch(as_messages([redelivered]))
    await reporting.handlers.settled()
    assert redelivered.outcome == "ack"
    assert await stored_rollups(reporting.db, model.user_id) == recomputed(model)


async def test_cached_reports_are_invalidated_once_per_user_after_the_commit(reporting: Reporting) -> None:
    invalidated: list[str] = []

    async def record(user_ids: Collection[str]) -> None:
        invalidated.extend(user_ids)

    handlers = EventHandlers(record, lambda _user_id: None)
    one, two = LedgerModel(new_id()), LedgerModel(new_id())
    spent = Expense(new_id(), 100, "INR", date(2024, 3, 5), "", "Acme")
    events = [
        one.create(spent),
        two.create(replace(spent, expense_id=new_id())),
        one.create(replace(spent, expense_id=new_id())),
        one.update(spent.expense_id, amount_minor=5),
    ]
    async with reporting.db.transaction() as session:
        await handlers.on_expense_events(session, as_events(events))
        await handlers.settled()
        assert invalidated == []  # a report read now must not be cached under a new version
    await handlers.settled()
    assert sorted(invalidated) == sorted([one.user_id, two.user_id])

    with pytest.raises(RuntimeError):
        async with reporting.db.transaction() as session:
            await handlers.on_expense_events(
                session, as_events([one.update(spent.expense_id, amount_minor=6)])
            )
            raise RuntimeError("rolled back")
    await handlers.settled()
    assert len(invalidated) == 2


@history_settings(25)
@given(data=st.data())
async def test_rollups_equal_a_recomputation_after_random_batches(
    reporting: Reporting, data: st.DataObject
) -> None:
    model = LedgerModel(new_id())
    await reporting.apply(*[model.add_category(copy.copy(category)) for category in TREE])
    events = history(data, model, data.draw(st.integers(1, 30), "steps"))
    # Category events have a consumer of their own; rollups keep the ids expenses were booked with.
    await reporting.apply(*[e for e in events if not e.type.startswith("expense.")])
    consumer = reporting.expense_consumer()
    pending = [e for e in events if e.type.startswith("expense.")]
    sent: list[events_pb2.EventEnvelope] = []
    while pending:
        size = data.draw(st.integers(1, 10), "batch_size")
        batch, pending = pending[:size], pending[size:]
        sent += batch
        # Redeliveries: the same events again (the inbox drops them) and copies
        # under new ids (the versions make them change nothing).
        again = data.draw(st.lists(st.sampled_from(sent), max_size=3), "redelivered")
        late = [renamed(e) for e in data.draw(st.lists(st.sampled_from(sent), max_size=2), "republished")]
        await consumer.handle_batch(as_messages(batch_of(*batch, *again, *late)))
    await reporting.handlers.settled()
    assert await stored_rollups(reporting.db, model.user_id) == recomputed(model)
    assert await live_copies(reporting.db, model.user_id) == model_copies(model)
