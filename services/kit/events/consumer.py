"""Durable JetStream pull consumer with an inbox table: the effect of an
event and its inbox row commit together, so a redelivered event changes
nothing (at-least-once delivery, effectively-once application).

A consumer hands a batch handler all the fresh events of a fetched batch at
once, so a service can apply them with a few statements instead of a few per
event; `per_event` adapts a handler of one event at a time."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from google.protobuf.message import DecodeError
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from sqlalchemy import Column, Index, MetaData, PrimaryKeyConstraint, String, Table
from sqlalchemy.ext.asyncio import AsyncSession

from expense.events.v1 import events_pb2
from services.kit.db.engine import Database, UtcDateTime
from services.kit.db.sql import insert_ignore_many
from services.kit.domain.timestamps import utcnow
from services.kit.events.bus import EventBus, subject_for

log = logging.getLogger(__name__)

Handler = Callable[[AsyncSession, events_pb2.EventEnvelope], Awaitable[None]]
# Called inside the inbox transaction with the events it had not seen, each once, in delivery order.
BatchHandler = Callable[[AsyncSession, Sequence[events_pb2.EventEnvelope]], Awaitable[None]]
REDELIVERY_BACKOFF = [1.0, 2.0, 5.0, 15.0, 30.0]
MAX_DELIVER = 10


def inbox_table(metadata: MetaData) -> Table:
    return Table(
        "inbox",
        metadata,
        Column("consumer", String(100), nullable=False),
        Column("event_id", String(36), nullable=False),
        Column("processed_at", UtcDateTime, nullable=False),
        PrimaryKeyConstraint("consumer", "event_id"),
        Index("ix_inbox_processed_at", "processed_at"),  # for the retention purge
    )


def per_event(handler: Handler) -> BatchHandler:
    """A batch handler applying the events one after the other with `handler`."""

    async def apply_each(session: AsyncSession, envelopes: Sequence[events_pb2.EventEnvelope]) -> None:
        for envelope in envelopes:
            await handler(session, envelope)

    return apply_each


class EventConsumer:
    def __init__(
        self,
        bus: EventBus,
        db: Database,
        inbox: Table,
        name: str,
        event_pattern: str,
        handler: BatchHandler,
        batch: int = 100,
        linger: float = 0.0,
    ) -> None:
        self.bus = bus
        self.db = db
        self.inbox = inbox
        self.durable = f"{bus.prefix}_{name}".replace(".", "_")
        self.name = name
        self.filter_subject = subject_for(bus.prefix, event_pattern)
        self.handler = handler
        self.batch = batch
        # Seconds to wait for more events after a short fetch: every batch costs a
        # transaction and a few statements whatever its size, so fuller batches cost
        # less per event, for at most this much more lag.
        self.linger = linger
        self.applied = 0

    def _config(self) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=self.durable,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            filter_subject=self.filter_subject,
            ack_wait=30,
            max_deliver=MAX_DELIVER,
            max_ack_pending=1000,
        )

    async def run(self) -> None:
        await self.bus.wait_ready()
        while True:
            try:
                await self._consume()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("consumer restarting", extra={"consumer": self.name, "error": repr(error)})
                await asyncio.sleep(1)

    async def _consume(self) -> None:
        js = self.bus.js
        await js.add_consumer(self.bus.stream, self._config())
        subscription = await js.pull_subscribe_bind(durable=self.durable, stream=self.bus.stream)
        while True:
            try:
                messages = await subscription.fetch(self.batch, timeout=1)
            except TimeoutError:
                # Nothing to fetch. nats-py raises its own TimeoutError or, from a batch
                # fetch, asyncio's (the builtin): both mean "idle", not "restart".
                continue
            except NotFoundError:
                return  # consumer vanished (stream recreated); run() re-creates it
            if self.linger and 0 < len(messages) < self.batch:
                await asyncio.sleep(self.linger)
                messages += await self._available(subscription, self.batch - len(messages))
            await self.handle_batch(messages)

    async def _available(self, subscription: JetStreamContext.PullSubscription, at_most: int) -> list[Msg]:
        """What the stream holds for this consumer now (up to at_most), without waiting for more."""
        try:
            return await subscription.fetch(at_most, timeout=self.linger)
        except TimeoutError:
            return []

    async def handle_batch(self, messages: Sequence[Msg]) -> None:
        """A fetched batch in one transaction: one commit instead of one per event,
        which is what bounds a consumer's rate. If anything in it fails, each event
        is applied in a transaction of its own, so only the failing one is redelivered."""
        decoded = [(m, envelope) for m in messages if (envelope := await self._decode(m)) is not None]
        if len(decoded) > 1 and await self._handle_together(decoded):
            return
        for message, envelope in decoded:
            await self._handle(message, envelope)

    async def _handle_together(self, decoded: list[tuple[Msg, events_pb2.EventEnvelope]]) -> bool:
        """False when the batch's transaction failed (nothing of it applied, nothing acked)."""
        try:
            async with self.db.transaction() as session:
                await self._apply(session, [envelope for _, envelope in decoded])
        except Exception as error:
            log.warning(
                "batch failed; applying its events one by one",
                extra={"consumer": self.name, "error": repr(error)},
            )
            return False
        for message, _ in decoded:
            await message.ack()
        self.applied += len(decoded)
        return True

    @staticmethod
    async def _decode(message: Msg) -> events_pb2.EventEnvelope | None:
        try:
            return events_pb2.EventEnvelope.FromString(message.data)
        except DecodeError:
            log.error("undecodable event terminated", extra={"subject": message.subject})
            await message.term()
            return None

    async def _apply(self, session: AsyncSession, envelopes: Sequence[events_pb2.EventEnvelope]) -> None:
        """Records the events in the inbox and hands the handler those it did not hold yet."""
        # A redelivery can bring an event twice into one batch; both copies are the same event.
        unique = {envelope.event_id: envelope for envelope in envelopes}
        now = utcnow()
        rows = [{"consumer": self.name, "event_id": event_id, "processed_at": now} for event_id in unique]
        fresh = await insert_ignore_many(session, self.inbox, rows, "event_id")
        if fresh:
            await self.handler(
                session, [envelope for event_id, envelope in unique.items() if event_id in fresh]
            )

    async def _handle(self, message: Msg, envelope: events_pb2.EventEnvelope) -> None:
        try:
            async with self.db.transaction() as session:
                await self._apply(session, [envelope])
        except Exception as error:
            attempt = message.metadata.num_delivered
            delay = REDELIVERY_BACKOFF[min(attempt, len(REDELIVERY_BACKOFF)) - 1]
            log.exception("event handler failed", extra={"event_id": envelope.event_id, "error": repr(error)})
            await message.nak(delay=delay)
            return
        await message.ack()
        self.applied += 1
