"""Transactional outbox: an event row is written in the same transaction as
the change it describes; a relay publishes it to JetStream afterwards with
Nats-Msg-Id = event id, retrying while NATS is down. Published rows are kept
for a replay window (JetStream's own durability is not the source of truth), then the
runtime's retention purger (kit.retention) deletes them.

The relay publishes what this process committed straight from memory, handed
over on commit: a SELECT of the table per commit cost as much as the commit's
own statements. It marks those rows published in one UPDATE at most every
`mark_interval` (a transaction per commit round was a fifth of a grouped
create's fixed cost); a row published but not yet marked when the process dies
is published again by the next poll, and JetStream's dedupe window and the
consumers' inboxes absorb the copy.
Rows it never got to (the process died, NATS was down, a replay) are found by a
poll of unpublished rows older than `stale_after`, so direct dispatch and the
poll rarely both publish a row (and if they do, JetStream's dedupe window and
the consumers' inboxes absorb the copy)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, timedelta

from google.protobuf.message import Message
from opentelemetry.trace import SpanKind
from sqlalchemy import Column, Index, LargeBinary, MetaData, String, Table, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.kit import metrics, tracing
from services.kit.db.engine import Database, UtcDateTime, after_commit
from services.kit.db.sql import BigIntId, insert_many
from services.kit.domain.timestamps import utcnow
from services.kit.events.bus import EventBus, make_envelope, subject_for
from services.kit.events.registry import event_type_of

log = logging.getLogger(__name__)

# session.info key of the rows a transaction added, handed to the relay on commit.
_ADDED = "kit.outbox.added"


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


@dataclass(frozen=True)
class OutboxEvent:
    event_id: str
    subject: str
    body: bytes
    # The trace context of the transaction that wrote it (tracing on), carried in memory only:
    # the table has none, so what the poll publishes starts a trace of its own.
    trace_headers: tuple[tuple[str, str], ...] = ()


class Outbox:
    """Writes events inside the caller's transaction; on commit hands them to the
    relay (at most `max_handed` waiting: beyond that the poll finds them)."""

    def __init__(self, table: Table, prefix: str, producer: str, max_handed: int = 10_000) -> None:
        self.table = table
        self.prefix = prefix
        self.producer = producer
        self.max_handed = max_handed
        self.committed = asyncio.Event()
        self.handed: deque[OutboxEvent] = deque()

    async def add(self, session: AsyncSession, user_id: str, payload: Message) -> str:
        return (await self.add_many(session, [(user_id, payload)]))[0]

    async def add_many(self, session: AsyncSession, events: Sequence[tuple[str, Message]]) -> list[str]:
        """Several (user_id, payload) in one multi-row INSERT, for bulk writes. Each
        payload's event type comes from the registry, and must be this service's own."""
        if not events:
            return []
        now = utcnow()
        envelopes = [
            make_envelope(self._own_type(type(payload)), user, payload, self.producer)
            for user, payload in events
        ]
        trace_headers = tuple(tracing.headers_of().items()) if tracing.enabled() else ()
        added = [
            OutboxEvent(
                envelope.event_id,
                subject_for(self.prefix, envelope.type),
                envelope.SerializeToString(),
                trace_headers,
            )
            for envelope in envelopes
        ]
        await insert_many(
            session,
            self.table,
            [
                {"event_id": e.event_id, "subject": e.subject, "body": e.body, "created_at": now}
                for e in added
            ],
        )
        self._hand_over_on_commit(session, added)
        return [event.event_id for event in added]

    def _own_type(self, payload: type[Message]) -> str:
        event_type = event_type_of(payload)
        if event_type.producer != self.producer:
            raise ValueError(
                f"{event_type.name} is {event_type.producer}'s to publish, not {self.producer}'s"
            )
        return event_type.name

    def _hand_over_on_commit(self, session: AsyncSession, added: list[OutboxEvent]) -> None:
        pending: list[OutboxEvent] | None = session.info.get(_ADDED)
        if pending is None:
            pending = session.info[_ADDED] = []

            def hand_over() -> None:
                session.info.pop(_ADDED, None)
                room = self.max_handed - len(self.handed)
                self.handed.extend(pending[: max(room, 0)])
                self.committed.set()

            after_commit(session, hand_over)
        pending.extend(added)


class OutboxRelay:
    def __init__(
        self,
        db: Database,
        outbox: Outbox,
        bus: EventBus,
        batch_size: int,
        poll_interval: float,
        stale_after: timedelta = timedelta(seconds=5),
        mark_interval: timedelta = timedelta(seconds=0.5),
    ) -> None:
        if mark_interval >= stale_after:
            raise ValueError("published rows must be marked before the poll deems them stale")
        self.db = db
        self.outbox = outbox
        self.bus = bus
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.stale_after = stale_after
        self.mark_interval = mark_interval.total_seconds()
        # Event ids published from memory, not yet marked published in the table.
        self._unmarked: list[str] = []
        self._next_mark = 0.0
        # The first poll takes every unpublished row, whatever its age: its process is gone.
        self._poll_all = True
        self._next_poll = 0.0
        self._published = metrics.OUTBOX_PUBLISHED.labels(outbox.producer)

    async def run(self) -> None:
        await self.bus.wait_ready()
        backoff = 0.1
        loop = asyncio.get_running_loop()
        while True:
            # Cleared before the round, not after: a commit landing while it publishes
            # must wake the next round rather than wait for the poll interval.
            self.outbox.committed.clear()
            try:
                await self.publish_handed()
                if loop.time() >= self._next_poll:
                    while await self.publish_batch() == self.batch_size:
                        pass
                    self._next_poll = loop.time() + self.poll_interval
                if loop.time() >= self._next_mark:
                    await self.mark_published()
                backoff = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("outbox relay cannot publish; retrying", extra={"error": repr(error)})
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if not self.outbox.handed:
                wake_at = min(self._next_poll, self._next_mark) if self._unmarked else self._next_poll
                await self._wait_for_work(max(wake_at - loop.time(), 0.0))

    async def _wait_for_work(self, at_most_seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.outbox.committed.wait(), at_most_seconds)

    async def publish_handed(self) -> int:
        """Publishes what this process committed; mark_published() records it.
        A failure leaves the rows unpublished for the poll."""
        handed = self.outbox.handed
        events = [handed.popleft() for _ in range(min(len(handed), self.batch_size))]
        if not events:
            return 0
        publish = self._publish_traced if tracing.enabled() else self._publish
        await asyncio.gather(*(publish(event) for event in events))
        self._unmarked.extend(e.event_id for e in events)
        self._published.inc(len(events))
        return len(events)

    async def _publish(self, event: OutboxEvent) -> None:
        await self.bus.publish(event.subject, event.body, event.event_id)

    async def _publish_traced(self, event: OutboxEvent) -> None:
        """A PRODUCER span, child of the writing transaction's span; its context rides in the
        message's headers to the consumers."""
        parent = tracing.context_from(dict(event.trace_headers))
        attributes = {
            "messaging.system": "nats",
            "messaging.destination.name": event.subject,
            "messaging.message.id": event.event_id,
        }
        with tracing.span(f"publish {event.subject}", SpanKind.PRODUCER, parent, attributes=attributes):
            await self.bus.publish(event.subject, event.body, event.event_id, tracing.headers_of())

    async def mark_published(self) -> None:
        """Marks what publish_handed() published, in one UPDATE."""
        self._next_mark = asyncio.get_running_loop().time() + self.mark_interval
        marked, self._unmarked = self._unmarked, []
        if not marked:
            return
        table = self.outbox.table
        try:
            async with self.db.transaction() as session:
                await session.execute(
                    update(table).where(table.c.event_id.in_(marked)).values(published_at=utcnow())
                )
        except BaseException:
            self._unmarked[:0] = marked
            raise

    async def publish_batch(self) -> int:
        """Publishes unpublished rows nobody handed over (older than stale_after)."""
        table = self.outbox.table
        query = (
            select(table.c.id, table.c.event_id, table.c.subject, table.c.body)
            .where(table.c.published_at.is_(None))
            .order_by(table.c.id)
            .limit(self.batch_size)
        )
        if not self._poll_all:
            query = query.where(table.c.created_at < utcnow() - self.stale_after)
        async with self.db.transaction() as session:
            if self.db.is_postgres:
                # Several relay processes share the table without publishing the same rows.
                query = query.with_for_update(skip_locked=True)
            rows = (await session.execute(query)).all()
            if rows:
                await asyncio.gather(*(self.bus.publish(r.subject, r.body, r.event_id) for r in rows))
                self._published.inc(len(rows))
                await session.execute(
                    update(table).where(table.c.id.in_([r.id for r in rows])).values(published_at=utcnow())
                )
        if len(rows) < self.batch_size:
            self._poll_all = False
        return len(rows)

    async def replay_from(self, outbox_id: int) -> int:
        """Queues every kept event from outbox_id on for publishing again."""
        table = self.outbox.table
        async with self.db.transaction() as session:
            result = await session.execute(
                update(table).where(table.c.id >= outbox_id).values(published_at=None)
            )
        self._poll_all = True
        self._next_poll = 0.0
        self.outbox.committed.set()
        return int(result.rowcount)

    async def backlog(self) -> tuple[int, float]:
        """Rows not marked published yet and the age in seconds of the oldest (0 when none),
        for metrics: one indexed query (ix_outbox_unpublished). Rows published from memory
        count until the next mark (mark_interval): an age beyond stale_after is a stuck relay."""
        table = self.outbox.table
        query = select(func.count(), func.min(table.c.created_at)).where(table.c.published_at.is_(None))
        async with self.db.read() as connection:
            count, oldest = (await connection.execute(query)).all()[0]
        if oldest is not None and oldest.tzinfo is None:  # SQLite's raw read
            oldest = oldest.replace(tzinfo=UTC)
        age = (utcnow() - oldest).total_seconds() if oldest is not None else 0.0
        return int(count), max(age, 0.0)

    async def pending(self) -> int:
        """Rows not published yet."""
        await self.mark_published()
        table = self.outbox.table
        async with self.db.transaction() as session:
            rows = await session.execute(select(table.c.id).where(table.c.published_at.is_(None)))
            return len(rows.all())
