"""The weekly insight digest on a migrated SQLite file and a fresh PostgreSQL database:
ds's copies filled by the ledger's events through ds's own handlers, then rounds of the
digest. One event per user and week, whatever the rounds or racing replicas; a new week
sends a new one; the event carries the insights' numbers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from expense.events.v1 import events_pb2
from services.ds import storage
from services.ds.digest import WeeklyDigest
from services.ds.events import EventHandlers
from services.ds.settings import DigestSettings, DsMeshSettings
from services.ds.storage import Calendar
from services.ds.usecases import InsightComputer
from services.kit.db import migrations
from services.kit.db.engine import Database
from services.kit.db.unit_of_work import UnitsOfWork
from services.kit.domain.ids import new_id
from services.kit.events.outbox import Outbox
from services.kit.events.subscription import Event

NOW = datetime(2026, 12, 9, 10, 0, tzinfo=UTC)  # a Wednesday
CALENDAR = Calendar("UTC", "monday", "en")


@pytest.fixture
async def database(database_url: str, tmp_path: Path) -> AsyncIterator[Database]:
    settings = DsMeshSettings(database_url=database_url, data_dir=tmp_path)
    # Alembic's env runs its own event loop, so it gets a thread of its own.
    await asyncio.to_thread(migrations.upgrade, "ds", settings)
    db = Database.for_service(settings, "ds")
    yield db
    await db.dispose()


def created(user_id: str, day: date, amount_minor: int) -> Event:
    snapshot = events_pb2.ExpenseSnapshot(
        expense_id=new_id(),
        amount_minor=amount_minor,
        currency="INR",
        spent_on=day.isoformat(),
        category_id="cat-food",
        merchant="Chai Point",
        source="manual",
        version=1,
    )
    return Event(new_id(), "expense.created", user_id, "ledger", events_pb2.ExpenseCreated(expense=snapshot))


async def published(db: Database) -> list[events_pb2.EventEnvelope]:
    async with db.transaction() as session:
        rows = (await session.execute(select(storage.outbox_table))).all()
    envelopes = [events_pb2.EventEnvelope.FromString(row.body) for row in rows]
    return [e for e in envelopes if e.type == "insight.digest"]


async def test_one_digest_per_user_and_week(database: Database) -> None:
    handlers = EventHandlers(CALENDAR)
    events = [created("u-active", NOW.date() - timedelta(days=d), 25_000) for d in range(60)]
    events.append(created("u-idle", NOW.date() - timedelta(days=40), 10_000))
    async with database.transaction() as session:
        await handlers.on_expense_events(session, events)
    units = UnitsOfWork(database, Outbox(storage.outbox_table, "t", "ds"))
    computer = InsightComputer(database, DsMeshSettings().ds, CALENDAR)
    digest = WeeklyDigest(database, units, computer, DigestSettings(), CALENDAR)

    # Two replicas' rounds at once, then another round: one digest, for the active user only.
    assert sum(await asyncio.gather(digest.round(NOW), digest.round(NOW))) == 1
    assert await digest.round(NOW + timedelta(hours=1)) == 0
    (envelope,) = await published(database)
    assert envelope.user_id == "u-active" and envelope.producer == "ds"
    payload = events_pb2.InsightDigest()
    envelope.payload.Unpack(payload)
    assert (payload.week_start, payload.period_start, payload.period_end) == (
        "2026-12-07",
        "2026-12-01",
        "2026-12-31",
    )
    projection = next(insight for insight in payload.insights if insight.type == "projection")
    # 9 days of December at 250.00 a day.
    assert projection.currency == "INR" and projection.facts["spent_so_far"] == "2250.00"

    # The next week (Monday 14th) gets its own digest.
    assert await digest.round(NOW + timedelta(days=5)) == 1
    assert len(await published(database)) == 2
