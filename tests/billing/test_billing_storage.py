"""Billing's guarantees that live in the database, on a migrated SQLite file and a
fresh PostgreSQL database: a dedupe key admits one alert however many writers race
for it, and the scheduler's lease admits one holder until it expires."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import event, func, select

from services.billing import storage
from services.billing.domain import Alert, AlertDraft, Bill, Budget, Settlement
from services.billing.recurrence import parse_recurrence
from services.billing.rules import AlertSink, RuleChecks
from services.billing.scheduler import Scheduler
from services.billing.settings import BillingMeshSettings
from services.billing.storage import Calendar
from services.billing.usecases import Bills, Calendars
from services.kit.db import migrations
from services.kit.db.engine import Database
from services.kit.db.erasure import ErasedUsers
from services.kit.db.unit_of_work import UnitsOfWork
from services.kit.domain.ids import new_id
from services.kit.domain.timestamps import utcnow
from services.kit.events.outbox import Outbox
from services.ledger.replica import CategoryInfo


@pytest.fixture
async def database(database_url: str, tmp_path: Path) -> AsyncIterator[Database]:
    settings = BillingMeshSettings(database_url=database_url, data_dir=tmp_path)
    # Alembic's env runs its own event loop, so it gets a thread of its own.
    await asyncio.to_thread(migrations.upgrade, "billing", settings)
    db = Database.for_service(settings, "billing")
    yield db
    await db.dispose()


def _alert(dedupe_key: str) -> Alert:
    return Alert(new_id(), "u1", "budget_threshold", "warning", "t", {"a": "1"}, dedupe_key, utcnow())


async def test_racing_writers_store_one_alert_per_dedupe_key(database: Database) -> None:
    async def write() -> bool:
        async with database.transaction() as session:
            stored = await storage.insert_alerts(session, [_alert("budget_threshold:b:2026-01-01:0:80")])
            return bool(stored)

    outcomes = await asyncio.gather(*(write() for _ in range(20)), return_exceptions=True)
    assert [outcome for outcome in outcomes if outcome is True] == [True], outcomes
    assert all(outcome in (True, False) for outcome in outcomes), outcomes
    async with database.transaction() as session:
        assert (await session.execute(select(func.count()).select_from(storage.alerts))).scalar_one() == 1


async def _take(database: Database, holder: str, seconds_from_now: float) -> bool:
    at = utcnow() + timedelta(seconds=seconds_from_now)
    async with database.transaction() as session:
        return await storage.take_lease(session, "billing.scheduler", holder, at, at + timedelta(seconds=60))


async def test_one_scheduler_holds_the_lease_until_it_expires(database: Database) -> None:
    assert await _take(database, "a", 0)
    assert not await _take(database, "b", 0)
    assert await _take(database, "a", 0)  # the holder renews
    assert await _take(database, "b", 61)  # expired: another replica takes over
    assert not await _take(database, "a", 61)


def _bill_due_today(user_id: str) -> Bill:
    now = utcnow()
    return Bill(
        new_id(), user_id, "Power Co", 150000, "INR", "", "FREQ=MONTHLY", now.date(), 3, False, 1, now, now
    )


def _scheduler(database: Database) -> Scheduler:
    settings = BillingMeshSettings()
    config = settings.billing
    erased = ErasedUsers(storage.erased_users)
    units = UnitsOfWork(database, Outbox(storage.outbox_table, "test", "billing"), storage.idempotency_keys)
    return Scheduler(
        units, config, Calendars(settings.user.defaults), RuleChecks(config, AlertSink(config)), erased
    )


async def test_a_scheduler_round_alerts_no_user_erased_meanwhile(database: Database) -> None:
    """The round reminds a live user of a bill due today, and raises nothing for a user
    whose erasure is recorded (an erasure racing the round waits for its transaction),
    nor for one who muted the rule, all three in one page."""
    scheduler = _scheduler(database)
    bills = [_bill_due_today(user_id) for user_id in ("live-user", "erased-user", "muted-user")]
    async with database.transaction() as session:
        for bill in bills:
            await storage.save_bill(session, bill, bill.payee.lower(), new=True)
        await session.execute(
            storage.erased_users.insert().values(erased_user_id="erased-user", erased_at=utcnow())
        )
        await storage.set_muted_rules(session, "muted-user", ["bill_due"])
    assert await scheduler.round() >= 1
    async with database.transaction() as session:
        owners = set((await session.execute(select(storage.alerts.c.user_id))).scalars())
    assert owners == {"live-user"}


async def test_an_alert_not_to_announce_is_stored_but_not_published(database: Database) -> None:
    """A spend passing two thresholds at once: both alerts kept (neither fires again in the
    period), one alert.raised for the user."""
    config = BillingMeshSettings().billing
    units = UnitsOfWork(database, Outbox(storage.outbox_table, "test", "billing"), storage.idempotency_keys)
    drafts = [
        AlertDraft("budget_threshold", f"{t}%", {"threshold": str(t)}, f"key-{t}", announce=t == 80)
        for t in (50, 80)
    ]
    async with units.begin() as unit:
        raised = await AlertSink(config).raise_all(unit, "two-thresholds", drafts)
    assert sorted(alert.dedupe_key for alert in raised) == ["key-50", "key-80"]
    async with database.transaction() as session:
        subjects = list((await session.execute(select(storage.outbox_table.c.subject))).scalars())
    assert len(subjects) == 1 and subjects[0].endswith("alert.raised")


async def _seed_users(database: Database, user_ids: list[str]) -> None:
    """Each user with a calendar, a category, a bill due today and a budget on the category."""
    now = utcnow()
    async with database.transaction() as session:
        for user_id in user_ids:
            await storage.save_calendar(session, user_id, Calendar("Asia/Kolkata", "monday"), 1)
            await storage.save_categories(session, user_id, [CategoryInfo(f"{user_id}-food", "Food")])
            bill = _bill_due_today(user_id)
            await storage.save_bill(session, bill, bill.payee.lower(), new=True)
            start = now.date() - timedelta(days=40)
            budget = Budget(
                new_id(), user_id, f"{user_id}-food", "month", "INR", True, (80,), start,
                ((start, 100000),), 0, 1, now, now,
            )  # fmt: skip
            await storage.save_budget(session, budget, new=True)


async def _statements_of_a_round(database: Database, scheduler: Scheduler) -> int:
    """Of a round after the one that raised the alerts (a raise's outbox rows go by COPY
    from 3 on, uncounted here)."""
    await scheduler.round()
    executed = 0

    def count(*_: object) -> None:
        nonlocal executed
        executed += 1

    event.listen(database.engine.sync_engine, "before_cursor_execute", count)
    try:
        await scheduler.round()
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", count)
    return executed


async def test_a_scheduler_round_reads_a_page_in_statements_as_many_for_50_users_as_for_2(
    database: Database,
) -> None:
    """Erasures, calendars, settlements, category trees, rollups and mutes are read once
    per page of bills or budgets, not once per bill, budget or user."""
    scheduler = _scheduler(database)
    await _seed_users(database, ["user-a", "user-b"])
    few = await _statements_of_a_round(database, scheduler)
    await _seed_users(database, [f"user-{number}" for number in range(48)])
    many = await _statements_of_a_round(database, scheduler)
    assert few == many, (few, many)
    async with database.transaction() as session:
        owners = set((await session.execute(select(storage.alerts.c.user_id))).scalars())
    assert len(owners) == 50


async def test_next_due_is_the_oldest_occurrence_the_occurrences_call_overdue(database: Database) -> None:
    """Every monthly occurrence since January 2025 settled but March 2025's: next_due is
    that one (long before any lookback window), in get and list alike, and it is the
    first occurrence ListBillOccurrences calls overdue. Skipping it moves next_due to
    the first occurrence after the settled run."""
    config = BillingMeshSettings()
    units = UnitsOfWork(database, Outbox(storage.outbox_table, "test", "billing"), storage.idempotency_keys)
    unused: Any = cast(Any, None)  # reads and skip use neither categories nor ledger
    bills = Bills(database, units, config.billing, Calendars(config.user.defaults), unused, unused)
    now = utcnow()
    first_due, gap = date(2025, 1, 10), date(2025, 3, 10)
    bill = Bill(new_id(), "due-user", "Rent", 2500000, "INR", "", "FREQ=MONTHLY;BYMONTHDAY=10", first_due, 3,
                False, 1, now, now)  # fmt: skip
    today = now.date()
    recurrence = parse_recurrence(bill.recurrence, first_due)
    paid = [due for due in recurrence.occurrences(first_due, today) if due != gap]
    async with database.transaction() as session:
        await storage.save_bill(session, bill, "rent", new=True)
        for due_on in paid:
            await storage.settle(session, bill.bill_id, Settlement(due_on, "paid", new_id(), 2500000), now)
    assert (await bills.get("due-user", bill.bill_id)).next_due == gap.isoformat()
    assert [b.next_due for b in (await bills.list("due-user", 10, "")).bills] == [gap.isoformat()]
    listed = await bills.occurrences("due-user", bill.bill_id, first_due, today)
    overdue = [o.due_date for o in listed.occurrences if o.status == "overdue"]
    assert overdue[0] == gap.isoformat()
    await bills.skip("due-user", bill.bill_id, gap)
    after = recurrence.next_on_or_after(max(paid) + timedelta(days=1))
    assert (await bills.get("due-user", bill.bill_id)).next_due == str(after)
