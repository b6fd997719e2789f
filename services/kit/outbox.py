"""Transactional outbox: an event row is written in the same transaction as
the change it describes; a relay publishes it to JetStream afterwards with
Nats-Msg-Id = event id, retrying while NATS is down. Published rows are kept
for a replay window (JetStream's own durability is not the source of truth)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import timedelta

from google.protobuf.message import Message
from sqlalchemy import Column, Index, LargeBinary, MetaData, String, Table, delete, event, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.kit.bus import EventBus, make_envelope, subject_for
from services.kit.db import Database, UtcDateTime
from services.kit.sqlutil import BigIntId, insert_many
from services.kit.timeutil import utcnow

log = logging.getLogger(__name__)

PURGE_EVERY = timedelta(minutes=10)


def outbox_table(metadata: MetaData) -> Table:
    return Table(
        "outbox",
        metadata,
        Column("id", BigIntId, primary_key=True, autoincrement=True),
        Column("event_id", String(36), nullable=False, unique=True),
        Column("subject", String(200), nullable=False),
        Column("body", LargeBinary, nullable=False),
        Column("created_at", UtcDateTime, nullable=False),
        Column("published_at", UtcDateTime, nullable=True),
        Index("ix_outbox_unpublished", "published_at", "id"),
    )


class Outbox:
    """Writes events inside the caller's transaction and wakes the relay on commit."""

    def __init__(self, table: Table, prefix: str, producer: str) -> None:
        self.table = table
        self.prefix = prefix
        self.producer = producer
        self.committed = asyncio.Event()

    async def add(self, session: AsyncSession, event_type: str, user_id: str, payload: Message) -> str:
        return (await self.add_many(session, [(event_type, user_id, payload)]))[0]

    async def add_many(self, session: AsyncSession, events: Sequence[tuple[str, str, Message]]) -> list[str]:
        """Several (event_type, user_id, payload) in one multi-row INSERT, for bulk writes."""
        if not events:
            return []
        now = utcnow()
        envelopes = [make_envelope(kind, user, payload, self.producer) for kind, user, payload in events]
        await insert_many(
            session,
            self.table,
            [
                {
                    "event_id": envelope.event_id,
                    "subject": subject_for(self.prefix, envelope.type),
                    "body": envelope.SerializeToString(),
                    "created_at": now,
                }
                for envelope in envelopes
            ],
        )
        if not event.contains(session.sync_session, "after_commit", self._on_commit):
            event.listen(session.sync_session, "after_commit", self._on_commit, once=True)
        return [envelope.event_id for envelope in envelopes]

    def _on_commit(self, _session: object) -> None:
        self.committed.set()


class OutboxRelay:
    def __init__(
        self,
        db: Database,
        outbox: Outbox,
        bus: EventBus,
        batch_size: int,
        poll_interval: float,
        replay_window: timedelta,
    ) -> None:
        self.db = db
        self.outbox = outbox
        self.bus = bus
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.replay_window = replay_window
        self._last_purge = utcnow() - PURGE_EVERY

    async def run(self) -> None:
        await self.bus.wait_ready()
        backoff = 0.1
        while True:
            # Cleared before the batch is read, not after: a commit landing while a batch
            # is published must wake the next round rather than wait for the poll interval.
            self.outbox.committed.clear()
            try:
                published = await self.publish_batch()
                backoff = 0.1
                await self._maybe_purge()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("outbox relay cannot publish; retrying", extra={"error": repr(error)})
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if published < self.batch_size:
                await self._wait_for_work()

    async def _wait_for_work(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.outbox.committed.wait(), self.poll_interval)

    async def publish_batch(self) -> int:
        table = self.outbox.table
        async with self.db.transaction() as session:
            query = (
                select(table.c.id, table.c.event_id, table.c.subject, table.c.body)
                .where(table.c.published_at.is_(None))
                .order_by(table.c.id)
                .limit(self.batch_size)
            )
            if self.db.is_postgres:
                # Several relay processes share the table without publishing the same rows.
                query = query.with_for_update(skip_locked=True)
            rows = (await session.execute(query)).all()
            if not rows:
                return 0
            await asyncio.gather(*(self.bus.publish(r.subject, r.body, r.event_id) for r in rows))
            await session.execute(
                update(table).where(table.c.id.in_([r.id for r in rows])).values(published_at=utcnow())
            )
        return len(rows)

    async def _maybe_purge(self) -> None:
        now = utcnow()
        if now - self._last_purge < PURGE_EVERY:
            return
        self._last_purge = now
        table = self.outbox.table
        async with self.db.transaction() as session:
            await session.execute(delete(table).where(table.c.published_at < now - self.replay_window))

    async def replay_from(self, outbox_id: int) -> int:
        """Queues every kept event from outbox_id on for publishing again."""
        table = self.outbox.table
        async with self.db.transaction() as session:
            result = await session.execute(
                update(table).where(table.c.id >= outbox_id).values(published_at=None)
            )
        self.outbox.committed.set()
        return int(result.rowcount)

    async def pending(self) -> int:
        table = self.outbox.table
        async with self.db.transaction() as session:
            rows = await session.execute(select(table.c.id).where(table.c.published_at.is_(None)))
            return len(rows.all())
