"""Every consumer of user.profile_updated keeps the profile's version and ignores an event
whose version is not above it: JetStream redelivers an older event after a newer one (a
nack, an ack timeout, a consumer restart), and applying it would put the older profile back
(ds: consent taken back and the raw SMS kept under it deleted). Per consumer, on its own
migrated database (SQLite and PostgreSQL) with its real handlers as its server.py wires
them, fed through a real JetStream stream: the newer event, then the older one, then a
newer one still; then user.deleted and a late profile event, which must not bring the row
back (services/kit/db/erasure.py ErasedUsers)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Table, func, select

from expense.events.v1 import events_pb2
from services.billing import storage as billing_storage
from services.billing.events import EventHandlers as BillingHandlers
from services.billing.rules import AlertSink, RuleChecks
from services.billing.server import OWNED_THROUGH
from services.billing.settings import BillingMeshSettings
from services.billing.usecases import Calendars
from services.ds import storage as ds_storage
from services.ds.events import EventHandlers as DsHandlers
from services.ds.settings import DsMeshSettings
from services.kit.cache import Cache
from services.kit.db import migrations
from services.kit.db.engine import Database
from services.kit.db.erasure import ErasedUsers, erasing
from services.kit.db.unit_of_work import UnitsOfWork
from services.kit.domain.ids import new_id
from services.kit.domain.timestamps import utcnow
from services.kit.events.bus import EventBus, make_envelope, subject_for
from services.kit.events.consumer import EventConsumer, Handler, per_event
from services.kit.events.outbox import Outbox
from services.kit.events.subscription import Subscription
from services.kit.responses import ResponseCache
from services.kit.tasks import cancel_and_wait
from services.notification import storage as notification_storage
from services.notification.queue import DeliveryQueue
from services.notification.settings import NotificationMeshSettings
from services.notification.usecases import Intake
from services.reporting import storage as reporting_storage
from services.reporting.events import EventHandlers as ReportingHandlers
from services.reporting.settings import ReportingMeshSettings
from tests.infra import NATS_URL, REDIS_URL, delete_stream, require, unique_prefix

WAIT_SECONDS = 15.0
USER = "u-versions"


def profile(version: int, **fields: Any) -> events_pb2.ProfileUpdated:
    return events_pb2.ProfileUpdated(user_id=USER, version=version, **fields)


# The newer profile (consent given), the older one redelivered after it (no consent yet),
# and a newer one still.
NEWER = profile(
    3,
    default_currency="JPY",
    time_zone="Asia/Tokyo",
    first_day_of_week="sunday",
    locale="ja",
    sms_auto_import=True,
    sms_allowed_senders=["HDFCBK"],
)
OLDER = profile(2, default_currency="EUR", time_zone="Europe/Paris", first_day_of_week="monday", locale="fr")
NEWEST = profile(
    4,
    default_currency="USD",
    time_zone="America/New_York",
    first_day_of_week="monday",
    locale="en",
    sms_auto_import=True,
    sms_allowed_senders=["HDFCBK", "ICICIT"],
)


@dataclass
class Consumer:
    """A service's profile and erasure handlers, and what its copy says of the user."""

    inbox: Table
    on_profile: Handler
    on_deleted: Handler
    copy: Callable[[Database], Awaitable[Any]]
    # What the copy says once this profile event is the one applied.
    expected: Callable[[events_pb2.ProfileUpdated], Any]
    closers: tuple[Callable[[], Awaitable[None]], ...] = ()


async def _row(db: Database, table: Table, *columns: str) -> tuple[Any, ...] | None:
    async with db.transaction() as session:
        query = select(*(table.c[name] for name in columns)).where(table.c.user_id == USER)
        row = (await session.execute(query)).first()
    return None if row is None else tuple(row)


# ---------------------------------------------------------------- the consumers, as wired


async def ds_raw_messages(db: Database) -> int:
    """The user's SMS still holding the raw message (consent withdrawn deletes it)."""
    table = ds_storage.sms_messages
    async with db.transaction() as session:
        query = select(func.count()).where(table.c.user_id == USER, table.c.body.is_not(None))
        return int((await session.execute(query)).scalar_one())


async def ds(db: Database, bus: EventBus) -> Consumer:
    defaults = DsMeshSettings().user.defaults
    calendar = ds_storage.Calendar(defaults.time_zone, defaults.first_day_of_week, defaults.locale)
    handlers = DsHandlers(calendar)
    erased = ErasedUsers(ds_storage.erased_users)
    # A message kept under consent, waiting for review: only a withdrawal deletes it.
    now = utcnow()
    async with db.transaction() as session:
        message = {
            "message_id": new_id(), "user_id": USER, "dedupe_key": "k1", "state": "pending",
            "sender": "VM-HDFCBK-S", "body": "Rs 75 debited at some kiosk", "received_at": now,
            "parsed": "{}", "expense_id": "", "linked_expense_id": "", "created_at": now, "updated_at": now,
        }  # fmt: skip
        await session.execute(ds_storage.sms_messages.insert().values(**message))

    async def copy(db: Database) -> Any:
        row = await _row(db, ds_storage.profiles, "sms_auto_import", "sms_allowed_senders", "time_zone")
        return None if row is None else (*row, await ds_raw_messages(db))

    def expected(event: events_pb2.ProfileUpdated) -> Any:
        return (event.sms_auto_import, sorted(event.sms_allowed_senders), event.time_zone, 1)

    return Consumer(
        ds_storage.inbox_table,
        erased.skipping(handlers.on_profile_event),
        erasing(ds_storage.metadata, erased=erased),
        copy,
        expected,
    )


async def billing(db: Database, bus: EventBus) -> Consumer:
    config = BillingMeshSettings()
    cache = Cache(REDIS_URL, f"{bus.prefix}:billing", "billing")
    statuses = ResponseCache(cache, 60.0, "budgets")
    units = UnitsOfWork(db, Outbox(billing_storage.outbox_table, bus.prefix, "billing"))
    checks = RuleChecks(config.billing, AlertSink(config.billing))
    handlers = BillingHandlers(units, Calendars(config.user.defaults), checks, statuses)
    erased = ErasedUsers(billing_storage.erased_users)

    async def copy(db: Database) -> Any:
        return await _row(db, billing_storage.profiles, "time_zone", "first_day_of_week", "version")

    return Consumer(
        billing_storage.inbox_table,
        erased.skipping(handlers.on_profile_event),
        erasing(billing_storage.metadata, OWNED_THROUGH, statuses.invalidate, erased=erased),
        copy,
        lambda event: (event.time_zone, event.first_day_of_week, event.version),
        (cache.close,),
    )


async def reporting(db: Database, bus: EventBus) -> Consumer:
    cache = ResponseCache(Cache(REDIS_URL, f"{bus.prefix}:reporting"), 60.0, "report")
    forgotten: list[str] = []
    handlers = ReportingHandlers(cache.invalidate, forgotten.append)
    erased = ErasedUsers(reporting_storage.erased_users)
    columns = ("default_currency", "time_zone", "first_day_of_week", "locale", "version")

    async def copy(db: Database) -> Any:
        return await _row(db, reporting_storage.profiles, *columns)

    return Consumer(
        reporting_storage.inbox_table,
        erased.skipping(handlers.on_profile_event),
        erasing(reporting_storage.metadata, forget=cache.invalidate, erased=erased),
        copy,
        lambda event: tuple(getattr(event, name) for name in columns),
        (cache.cache.close,),
    )


async def notification(db: Database, bus: EventBus) -> Consumer:
    config = NotificationMeshSettings().notification
    erased = ErasedUsers(notification_storage.erased_users)
    intake = Intake(db, config, DeliveryQueue(bus, config.delivery), erased)

    async def copy(db: Database) -> Any:
        return await _row(db, notification_storage.preferences, "time_zone", "locale", "profile_version")

    return Consumer(
        notification_storage.inbox_table,
        erased.skipping(intake.on_profile),
        erasing(notification_storage.metadata, erased=erased),
        copy,
        lambda event: (event.time_zone, event.locale, event.version),
    )


CONSUMERS = {
    "ds": (ds, DsMeshSettings),
    "billing": (billing, BillingMeshSettings),
    "reporting": (reporting, ReportingMeshSettings),
    "notification": (notification, NotificationMeshSettings),
}


# ---------------------------------------------------------------- the stream


class Feed:
    """The service's profile and erasure consumers on a stream of the test's own."""

    def __init__(self, bus: EventBus, db: Database, consumer: Consumer, service: str) -> None:
        self.bus = bus
        self.db = db
        self.inbox = consumer.inbox
        profiles = Subscription(f"{service}_profiles", (events_pb2.ProfileUpdated,))
        deletions = Subscription(f"{service}_erasure", (events_pb2.UserDeleted,))
        self.consumers = [
            EventConsumer(bus, db, consumer.inbox, profiles, per_event(consumer.on_profile)),
            EventConsumer(bus, db, consumer.inbox, deletions, per_event(consumer.on_deleted)),
        ]

    async def deliver(self, event_type: str, payload: Any, producer: str) -> None:
        """Publishes the event and waits until its consumer has applied it (or skipped it)."""
        envelope = make_envelope(event_type, USER, payload, producer)
        subject = subject_for(self.bus.prefix, event_type)
        await self.bus.publish(subject, envelope.SerializeToString(), envelope.event_id)
        deadline = asyncio.get_running_loop().time() + WAIT_SECONDS
        while not await self._applied(envelope.event_id):
            assert asyncio.get_running_loop().time() < deadline, f"{event_type} not applied"
            await asyncio.sleep(0.05)

    async def profile(self, payload: events_pb2.ProfileUpdated) -> None:
        await self.deliver("user.profile_updated", payload, "user")

    async def _applied(self, event_id: str) -> bool:
        async with self.db.transaction() as session:
            query = select(self.inbox.c.event_id).where(self.inbox.c.event_id == event_id)
            return (await session.execute(query)).first() is not None


@asynccontextmanager
async def running(service: str, database_url: str, tmp_path: Path) -> AsyncIterator[tuple[Feed, Consumer]]:
    require("NATS", "127.0.0.1", 4222)
    require("Redis", "127.0.0.1", 6379)
    build, settings_type = CONSUMERS[service]
    settings = settings_type(database_url=database_url, data_dir=tmp_path)
    # Alembic's env runs its own event loop, so it gets a thread of its own.
    await asyncio.to_thread(migrations.upgrade, service, settings)
    db = Database.for_service(settings, service, pool_size=2)
    bus = EventBus(NATS_URL, unique_prefix(), f"{service}-versions-test")
    consumer = await build(db, bus)
    feed = Feed(bus, db, consumer, service)
    bus.start()
    await bus.wait_ready()
    tasks = [asyncio.create_task(each.run()) for each in feed.consumers]
    try:
        yield feed, consumer
    finally:
        await cancel_and_wait(tasks)
        await bus.close()
        await delete_stream(NATS_URL, bus.stream)
        for close in consumer.closers:
            await close()
        await db.dispose()


@pytest.mark.parametrize("service", list(CONSUMERS))
async def test_an_older_profile_after_a_newer_one_is_ignored(
    service: str, database_url: str, tmp_path: Path
) -> None:
    async with running(service, database_url, tmp_path) as (feed, consumer):
        await feed.profile(NEWER)
        assert await consumer.copy(feed.db) == consumer.expected(NEWER)

        # Redelivered after the newer one: the copy (and ds's raw message) stays as it was.
        await feed.profile(OLDER)
        assert await consumer.copy(feed.db) == consumer.expected(NEWER)
        # The same version again (a republished event) is no newer either.
        await feed.profile(profile(NEWER.version, time_zone="Europe/Paris", locale="fr"))
        assert await consumer.copy(feed.db) == consumer.expected(NEWER)

        await feed.profile(NEWEST)
        assert await consumer.copy(feed.db) == consumer.expected(NEWEST)


@pytest.mark.parametrize("service", list(CONSUMERS))
async def test_a_profile_event_after_the_erasure_brings_nothing_back(
    service: str, database_url: str, tmp_path: Path
) -> None:
    async with running(service, database_url, tmp_path) as (feed, consumer):
        await feed.profile(NEWER)
        assert await consumer.copy(feed.db) is not None
        await feed.deliver("user.deleted", events_pb2.UserDeleted(user_id=USER), "auth")
        assert await consumer.copy(feed.db) is None
        # Published before the erasure, delivered after it: newer than any copy (there is
        # none left), so only the record of the erasure keeps the row from coming back.
        await feed.profile(NEWEST)
        assert await consumer.copy(feed.db) is None
