"""The monthly report source with an injected clock, on SQLite and PostgreSQL: due on
the first of the month in each user's time zone (catching up a few days after downtime),
once per (user, month) across rounds and replicas, with last month's figures as exact
decimal strings, top categories and the change against the month before."""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import select

from expense.events.v1 import events_pb2
from services.kit.db.unit_of_work import UnitsOfWork
from services.kit.domain.ids import new_id
from services.kit.events.outbox import Outbox
from services.reporting import storage
from services.reporting.monthly import MonthlyReports, may_be_due_somewhere, month_to_report
from services.reporting.preferences import StoredPreferences
from services.reporting.usecases import Reports
from services.user.client import Preferences
from tests.reporting.harness import FixedClock, Reporting, profile_event
from tests.reporting.reference import Category, Expense, LedgerModel

# 18:31 UTC is 00:01 the next day in Kolkata (UTC+5:30), 10:31 the same day in Los Angeles.
KOLKATA_MIDNIGHT = datetime(2026, 11, 30, 18, 31, tzinfo=UTC)


def _scheduler(reporting: Reporting, clock: FixedClock) -> MonthlyReports:
    settings = reporting.settings
    outbox = Outbox(storage.outbox_table, settings.event_prefix, "reporting")
    return MonthlyReports(
        UnitsOfWork(reporting.db, outbox),
        Reports(reporting.db, settings.reporting),
        StoredPreferences(reporting.db, settings.user.defaults),
        settings.reporting.monthly,
        clock,
    )


async def _user(reporting: Reporting, time_zone: str, spending: list[tuple[str, int, str, date]]) -> str:
    """A user in time_zone with expenses (category name, minor units, currency, day)."""
    model = LedgerModel(new_id())
    await reporting.apply(profile_event(model.user_id, Preferences("INR", time_zone, "monday", "hi-IN")))
    names: dict[str, str] = {}
    for name, _, _, _ in spending:
        if name not in names:
            names[name] = new_id()
            await reporting.apply(model.add_category(Category(names[name], name)))
    for name, minor, currency, day in spending:
        await reporting.apply(model.create(Expense(new_id(), minor, currency, day, names[name], "shop")))
    return model.user_id


async def _published(reporting: Reporting, user_id: str) -> list[events_pb2.MonthlyReportReady]:
    async with reporting.db.transaction() as session:
        bodies = (await session.execute(select(storage.outbox_table.c.body))).scalars().all()
    found = []
    for body in bodies:
        envelope = events_pb2.EventEnvelope.FromString(body)
        if envelope.type == "report.monthly_ready" and envelope.user_id == user_id:
            assert envelope.producer == "reporting"
            payload = events_pb2.MonthlyReportReady()
            assert envelope.payload.Unpack(payload)
            found.append(payload)
    return found


def test_due_only_in_the_first_days_of_a_month() -> None:
    assert month_to_report(date(2026, 12, 1), 3).start == date(2026, 11, 1)  # type: ignore[union-attr]
    assert month_to_report(date(2026, 1, 3), 3).start == date(2025, 12, 1)  # type: ignore[union-attr]
    assert month_to_report(date(2026, 12, 4), 3) is None
    assert month_to_report(date(2026, 11, 30), 3) is None
    # Somewhere it is already the 1st on the 30th (UTC), and still the 3rd on the 4th.
    assert may_be_due_somewhere(date(2026, 11, 30), 3)
    assert may_be_due_somewhere(date(2026, 12, 4), 3)
    assert not may_be_due_somewhere(date(2026, 12, 15), 3)


async def test_published_once_on_the_first_in_the_users_time_zone(reporting: Reporting) -> None:
    kolkata = await _user(
        reporting,
        "Asia/Kolkata",
        [
            ("Food", 100000, "INR", date(2026, 10, 3)),
            ("Rent", 500000, "INR", date(2026, 10, 1)),
            ("Food", 120050, "INR", date(2026, 11, 2)),
            ("Rent", 500000, "INR", date(2026, 11, 1)),
            ("Travel", 30000, "INR", date(2026, 11, 20)),
            ("Books", 1000, "INR", date(2026, 11, 21)),
            ("Food", 2000, "USD", date(2026, 11, 22)),
        ],
    )
    los_angeles = await _user(reporting, "America/Los_Angeles", [("Food", 5000, "INR", date(2026, 11, 5))])
    clock = FixedClock(datetime(2026, 11, 30, 18, 29, tzinfo=UTC))  # 23:59 in Kolkata
    scheduler = _scheduler(reporting, clock)
    assert await scheduler.round() == 0

    clock.now = KOLKATA_MIDNIGHT
    assert await scheduler.round() == 1
    [report] = await _published(reporting, kolkata)
    assert (report.month, report.time_zone, report.locale) == ("2026-11", "Asia/Kolkata", "hi-IN")
    inr, usd = report.currencies
    assert (inr.currency, inr.total, inr.previous_total, inr.change_percent) == (
        "INR",
        "6510.50",
        "6000.00",
        "8.51",
    )
    assert [(c.name, c.amount) for c in inr.top_categories] == [
        ("Rent", "5000.00"),
        ("Food", "1200.50"),
        ("Travel", "300.00"),
    ]
    assert (usd.currency, usd.total, usd.previous_total, usd.change_percent) == ("USD", "20.00", "0.00", "")
    assert await _published(reporting, los_angeles) == []

    # Another round, and another replica's, publish nothing more.
    assert await scheduler.round() == 0
    assert await _scheduler(reporting, clock).round() == 0
    # 00:05 on the 1st in Los Angeles.
    clock.now = datetime(2026, 12, 1, 8, 5, tzinfo=UTC)
    assert await scheduler.round() == 1
    assert len(await _published(reporting, los_angeles)) == 1
    assert len(await _published(reporting, kolkata)) == 1


async def test_a_round_after_downtime_catches_up_within_the_window(reporting: Reporting) -> None:
    user_id = await _user(reporting, "UTC", [("Food", 1500, "INR", date(2027, 1, 10))])
    scheduler = _scheduler(reporting, FixedClock(datetime(2027, 2, 3, 12, tzinfo=UTC)))
    assert await scheduler.round() == 1
    [report] = await _published(reporting, user_id)
    assert report.month == "2027-01"
    assert report.currencies[0].change_percent == ""  # nothing the month before

    late = await _user(reporting, "UTC", [("Food", 1500, "INR", date(2027, 3, 10))])
    assert await _scheduler(reporting, FixedClock(datetime(2027, 4, 4, 12, tzinfo=UTC))).round() == 0
    assert await _published(reporting, late) == []


async def test_the_lease_keeps_a_second_replica_out(reporting: Reporting) -> None:
    clock = FixedClock(KOLKATA_MIDNIGHT)
    first, second = _scheduler(reporting, clock), _scheduler(reporting, clock)
    second.holder = "another-host:1"
    assert await first.take_lease()
    assert not await second.take_lease()
    assert await first.take_lease()  # renewed by its holder


async def test_the_user_month_key_is_unique(reporting: Reporting) -> None:
    month = "2026-11"
    user_id = new_id()
    async with reporting.db.transaction() as session:
        assert await storage.claim_monthly_report(session, user_id, month, KOLKATA_MIDNIGHT)
        assert not await storage.claim_monthly_report(session, user_id, month, KOLKATA_MIDNIGHT)
