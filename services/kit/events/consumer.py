"""Durable JetStream pull consumer with an inbox table: the effect of an
event and its inbox row commit together, so a redelivered event changes
nothing (at-least-once delivery, effectively-once application).

A consumer hands a batch handler all the fresh events of a fetched batch at
once, so a service can apply them with a few statements instead of a few per
event; `per_event` adapts a handler of one event at a time. Handlers get each
event with its payload parsed (Subscription.parse).

A message no handler can take (it does not parse, or its type is not one the
consumer subscribed to), and an event its handler failed on MAX_DELIVER times,
is a dead letter: copied to `<prefix>.dead.<consumer>` in the events stream,
terminated (never redelivered) and logged, while the rest of its batch goes on."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from opentelemetry.trace import SpanKind
from sqlalchemy import Column, Index, MetaData, PrimaryKeyConstraint, String, Table
from sqlalchemy.ext.asyncio import AsyncSession

from services.kit import metrics, tracing
from services.kit.db.engine import Database, UtcDateTime
from services.kit.db.sql import insert_ignore_many
from services.kit.domain.timestamps import utcnow
from services.kit.events.bus import EventBus, dead_letter_subject, durable_name
from services.kit.events.subscription import Event, Subscription, UnusableEvent

log = logging.getLogger(__name__)

Handler = Callable[[AsyncSession, Event[Any]], Awaitable[None]]
# Called inside the inbox transaction with the events it had not seen, each once, in delivery order.
BatchHandler = Callable[[AsyncSession, Sequence[Event[Any]]], Awaitable[None]]
REDELIVERY_BACKOFF = [1.0, 2.0, 5.0, 15.0, 30.0]
MAX_DELIVER = 10
MAX_REASON_CHARS = 1000
# The first server version whose consumers take several filter subjects; older ones ignore them.
FILTER_SUBJECTS_SINCE = (2, 10)


class ConsumerMetrics:
    """A consumer's counters, label sets bound once."""

    def __init__(self, consumer: str) -> None:
        self._applied = metrics.CONSUMER_APPLIED.labels(consumer)
        self._redeliveries = metrics.CONSUMER_REDELIVERIES.labels(consumer)
        self._lag = metrics.CONSUMER_LAG_SECONDS.labels(consumer)
        self.dead_letters = metrics.CONSUMER_DEAD_LETTERS.labels(consumer)

    def applied(self, messages: Sequence[Msg]) -> None:
        """Acked messages: how long each waited since it reached the stream, and which came again."""
        self._applied.inc(len(messages))
        now = utcnow()
        for message in messages:
            meta = message.metadata
            if meta.num_delivered > 1:
                self._redeliveries.inc()
            self._lag.observe(max((now - meta.timestamp).total_seconds(), 0.0))


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

    async def apply_each(session: AsyncSession, events: Sequence[Event[Any]]) -> None:
        for event in events:
            await handler(session, event)

    return apply_each


class EventConsumer:
    def __init__(
        self,
        bus: EventBus,
        db: Database,
        inbox: Table,
        subscription: Subscription,
        handler: BatchHandler,
        batch: int = 100,
        linger: float = 0.0,
    ) -> None:
        self.bus = bus
        self.db = db
        self.inbox = inbox
        self.subscription = subscription
        self.name = subscription.consumer
        self.durable = durable_name(bus.prefix, self.name)
        self.filter_subjects = subscription.filter_subjects(bus.prefix)
        self.handler = handler
        self.batch = batch
        # Seconds to wait for more events after a short fetch: every batch costs a
        # transaction and a few statements whatever its size, so fuller batches cost
        # less per event, for at most this much more lag.
        self.linger = linger
        self.applied = 0
        self.dead_letters = 0
        self._metrics = ConsumerMetrics(self.name)

    async def sample(self) -> None:
        """Sets this consumer's lag gauges from JetStream's consumer info (a metrics Sample)."""
        info = await self.bus.js.consumer_info(self.bus.stream, self.durable, timeout=2)
        metrics.CONSUMER_PENDING.labels(self.name).set(info.num_pending or 0)
        metrics.CONSUMER_ACK_PENDING.labels(self.name).set(info.num_ack_pending or 0)

    def _config(self) -> ConsumerConfig:
        subjects = self.filter_subjects
        if len(subjects) > 1 and self.bus.server_version < FILTER_SUBJECTS_SINCE:
            # It would ignore filter_subjects and deliver the whole stream.
            raise RuntimeError(f"{self.name} takes several event types: it needs NATS 2.10 or later")
        return ConsumerConfig(
            durable_name=self.durable,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            filter_subject=subjects[0] if len(subjects) == 1 else None,
            filter_subjects=subjects if len(subjects) > 1 else None,
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
        if not messages:
            return
        if not tracing.enabled():
            await self._handle_batch(messages)
            return
        with self._traced(messages):
            await self._handle_batch(messages)

    @contextlib.contextmanager
    def _traced(self, messages: Sequence[Msg]) -> Any:
        """A CONSUMER span per message, child of its publisher's (the `traceparent` header).
        One message: its span is current, so the transaction's spans join the producer's trace.
        Several: a batch span, linked to each message's, is current instead."""
        attributes = {"messaging.system": "nats", "messaging.consumer.group.name": self.durable}
        spans = [
            tracing.started(
                f"process {message.subject}",
                SpanKind.CONSUMER,
                tracing.context_from(message.headers),
                {**attributes, "messaging.destination.name": message.subject},
            )
            for message in messages
        ]
        try:
            if len(spans) == 1:
                with tracing.span_in_use(spans[0]):
                    yield
            else:
                contexts = [tracing.context_with(span) for span in spans]
                with tracing.span(f"process batch {self.name}", SpanKind.CONSUMER, links=contexts):
                    yield
        finally:
            for span in spans:
                span.end()

    async def _handle_batch(self, messages: Sequence[Msg]) -> None:
        parsed: list[tuple[Msg, Event[Any]]] = []
        for message in messages:
            try:
                parsed.append((message, self.subscription.parse(message.data)))
            except UnusableEvent as unusable:
                await self._dead_letter(message, unusable.reason, unusable.event_id)
        if len(parsed) > 1 and await self._handle_together(parsed):
            return
        for message, event in parsed:
            await self._handle(message, event)

    async def _handle_together(self, parsed: list[tuple[Msg, Event[Any]]]) -> bool:
        """False when the batch's transaction failed (nothing of it applied, nothing acked)."""
        try:
            async with self.db.transaction() as session:
                await self._apply(session, [event for _, event in parsed])
        except Exception as error:
            log.warning(
                "batch failed; applying its events one by one",
                extra={"consumer": self.name, "error": repr(error)},
            )
            return False
        for message, _ in parsed:
            await message.ack()
        self.applied += len(parsed)
        self._metrics.applied([message for message, _ in parsed])
        return True

    async def _apply(self, session: AsyncSession, events: Sequence[Event[Any]]) -> None:
        """Records the events in the inbox and hands the handler those it did not hold yet."""
        # A redelivery can bring an event twice into one batch; both copies are the same event.
        unique = {event.event_id: event for event in events}
        now = utcnow()
        rows = [{"consumer": self.name, "event_id": event_id, "processed_at": now} for event_id in unique]
        fresh = await insert_ignore_many(session, self.inbox, rows, "event_id")
        if fresh:
            await self.handler(session, [event for event_id, event in unique.items() if event_id in fresh])

    async def _handle(self, message: Msg, event: Event[Any]) -> None:
        try:
            async with self.db.transaction() as session:
                await self._apply(session, [event])
        except Exception as error:
            attempt = message.metadata.num_delivered
            log.exception("event handler failed", extra={"event_id": event.event_id, "error": repr(error)})
            if attempt >= MAX_DELIVER:
                reason = f"the handler failed {attempt} times: {error!r}"
                await self._dead_letter(message, reason, event.event_id)
                return
            await message.nak(delay=REDELIVERY_BACKOFF[min(attempt, len(REDELIVERY_BACKOFF)) - 1])
            return
        await message.ack()
        self.applied += 1
        self._metrics.applied([message])

    async def _dead_letter(self, message: Msg, reason: str, event_id: str) -> None:
        """Keeps the message as it came, with why, then ends its deliveries."""
        # A header is one line, and an error's text can be long (a failed statement's parameters).
        reason = " ".join(reason.split())[:MAX_REASON_CHARS]
        headers = {"Dead-Letter-Reason": reason, "Dead-Letter-Subject": message.subject}
        # One copy however often the message is dead-lettered (JetStream's dedupe window).
        msg_id = f"{self.durable}.{message.metadata.sequence.stream}"
        await self.bus.publish(dead_letter_subject(self.bus.prefix, self.name), message.data, msg_id, headers)
        await message.term()
        self.dead_letters += 1
        self._metrics.dead_letters.inc()
        log.warning(
            "event dead-lettered", extra={"consumer": self.name, "event_id": event_id, "reason": reason}
        )
