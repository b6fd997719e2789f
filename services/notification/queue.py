"""The delivery work queue on JetStream: one job per delivery attempt series, a
durable pull consumer with explicit ack, redelivery with back-off, and a stream of
dead letters beside it (services/kit/events/work_queue.py names them). The worker
decides what a job's outcome is (services/notification/usecases.py); this file only
moves messages."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    RawStreamMsg,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError, NotFoundError

from services.kit.domain.timestamps import utcnow
from services.kit.events.bus import DUPLICATE_WINDOW, EventBus
from services.kit.events.work_queue import WorkQueue
from services.notification.settings import DeliverySettings

log = logging.getLogger(__name__)

DELIVERIES = WorkQueue("notification", "deliveries")
DAY_SECONDS = 86400
# How long a fetch of the jobs already waiting may take (they come in the no-wait probe).
WAITING_FETCH_SECONDS = 0.02


@dataclass(frozen=True)
class Job:
    delivery_id: str
    channel: str
    # 1 the first time; JetStream counts every delivery (redeliveries, naks).
    delivery_count: int


@dataclass(frozen=True)
class Outcome:
    """What happens to a job: done (ack), again after `retry_in` seconds (nak), or
    dead (`dead_reason`: to the dead letters)."""

    retry_in: float | None = None
    dead_reason: str = ""

    @property
    def done(self) -> bool:
        return self.retry_in is None and not self.dead_reason


DONE = Outcome()


@dataclass(frozen=True)
class DeadLetterRecord:
    sequence: int
    delivery_id: str
    channel: str
    reason: str
    dead_at: datetime
    attempts: int


# A fetched batch of jobs at once: one outcome per job, in order.
BatchJobHandler = Callable[[Sequence[Job]], Awaitable[Sequence[Outcome]]]


class DeliveryQueue:
    def __init__(self, bus: EventBus, settings: DeliverySettings) -> None:
        self.bus = bus
        self.settings = settings
        self.prefix = bus.prefix
        self.stream = DELIVERIES.stream(self.prefix)
        self.dead_stream = DELIVERIES.dead_stream(self.prefix)
        self._ready = False

    async def ensure_streams(self) -> None:
        if self._ready:
            return
        await self._ensure(
            StreamConfig(
                name=self.stream,
                subjects=[DELIVERIES.subjects(self.prefix)],
                retention=RetentionPolicy.WORK_QUEUE,
                storage=StorageType.FILE,
                duplicate_window=DUPLICATE_WINDOW.total_seconds(),
                num_replicas=1,
            )
        )
        await self._ensure(
            StreamConfig(
                name=self.dead_stream,
                subjects=[DELIVERIES.dead_subjects(self.prefix)],
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE,
                max_age=self.settings.dead_letter_days * DAY_SECONDS,
                duplicate_window=DUPLICATE_WINDOW.total_seconds(),
                num_replicas=1,
            )
        )
        self._ready = True

    async def _ensure(self, config: StreamConfig) -> None:
        try:
            await self.bus.js.add_stream(config)
        except BadRequestError:
            await self.bus.js.update_stream(config)

    async def enqueue(self, delivery_id: str, channel: str, enqueued_at: datetime) -> None:
        """A job; the message id (per enqueue) keeps a retried publish from doubling it."""
        await self.ensure_streams()
        msg_id = f"{delivery_id}.{int(enqueued_at.timestamp() * 1000)}"
        await self.bus.publish(DELIVERIES.subject(self.prefix, channel), delivery_id.encode(), msg_id)

    def _consumer_config(self) -> ConsumerConfig:
        # Retries wait by an explicit nak delay (retry_delay); ack_wait only brings back
        # the job of a worker that died mid-send.
        return ConsumerConfig(
            durable_name=DELIVERIES.durable(self.prefix),
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            filter_subject=DELIVERIES.subjects(self.prefix),
            max_deliver=self.settings.max_deliver,
            ack_wait=self.settings.ack_wait_seconds,
            max_ack_pending=self.settings.max_ack_pending,
        )

    def retry_or_dead(self, job: Job, error: str) -> Outcome:
        """Again after the back-off step of this try, or dead after the last one."""
        if job.delivery_count >= self.settings.max_deliver:
            return Outcome(dead_reason=f"failed {job.delivery_count} times, last: {error}")
        steps = self.settings.backoff_seconds
        return Outcome(retry_in=steps[min(job.delivery_count, len(steps)) - 1])

    async def work(self, handler: BatchJobHandler) -> None:
        """Runs forever: fetches jobs and hands each fetched batch to `handler`, at most
        `concurrency` jobs at once; restarts the subscription after any failure."""
        await self.bus.wait_ready()
        while True:
            try:
                await self._work(handler)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("delivery worker restarting", extra={"error": repr(error)})
                self._ready = False
                await asyncio.sleep(1)

    async def _work(self, handler: BatchJobHandler) -> None:
        await self.ensure_streams()
        js = self.bus.js
        await js.add_consumer(self.stream, self._consumer_config())
        subscription = await js.pull_subscribe_bind(
            durable=DELIVERIES.durable(self.prefix), stream=self.stream
        )
        slots = asyncio.Semaphore(self.settings.concurrency)
        running: set[asyncio.Task[None]] = set()
        while True:
            await slots.acquire()  # a free slot before fetching: the jobs do not wait in hand
            free = 1 + min(self.settings.fetch_batch - 1, slots._value)
            # One job first, then what else is waiting: a fetch of many waits out its whole
            # timeout for a full batch once the first has come (nats-py), a second a job
            # does not have.
            try:
                messages = await subscription.fetch(1, timeout=1)
            except TimeoutError:
                slots.release()
                continue
            except NotFoundError:
                slots.release()
                return
            if free > 1:
                messages += await _waiting(subscription, free - 1)
            for _ in messages[1:]:
                await slots.acquire()
            task = asyncio.create_task(self._run(handler, messages, slots))
            running.add(task)
            task.add_done_callback(running.discard)

    async def _run(self, handler: BatchJobHandler, messages: Sequence[Msg], slots: asyncio.Semaphore) -> None:
        try:
            jobs = [
                Job(message.data.decode(), message.subject.rsplit(".", 1)[-1], message.metadata.num_delivered)
                for message in messages
            ]
            try:
                outcomes = list(await handler(jobs))
            except Exception as error:
                # Nothing of the batch is known done: each job tries again (or is dead).
                log.exception("delivery batch failed", extra={"jobs": len(jobs)})
                outcomes = [self.retry_or_dead(job, repr(error)) for job in jobs]
            await asyncio.gather(
                *(
                    self._settle(message, job, outcome)
                    for message, job, outcome in zip(messages, jobs, outcomes, strict=True)
                ),
                return_exceptions=True,
            )
        finally:
            for _ in messages:
                slots.release()

    async def _settle(self, message: Msg, job: Job, outcome: Outcome) -> None:
        if outcome.dead_reason:
            await self._dead_letter(message, job, outcome.dead_reason)
        elif outcome.retry_in is not None:
            await message.nak(delay=outcome.retry_in)
        else:
            await message.ack()

    async def _dead_letter(self, message: Msg, job: Job, reason: str) -> None:
        """Keeps the job with why, then ends its deliveries."""
        reason = " ".join(reason.split())[:1000]
        headers = {
            "Dead-Letter-Reason": reason,
            "Dead-Letter-Attempts": str(job.delivery_count),
            "Dead-Letter-Channel": job.channel,
        }
        msg_id = f"dead.{message.metadata.sequence.stream}"
        await self.bus.publish(
            DELIVERIES.dead_subject(self.prefix, job.channel), message.data, msg_id, headers
        )
        await message.term()
        log.warning("delivery dead-lettered", extra={"delivery_id": job.delivery_id, "reason": reason})

    # ------------------------------------------------------------ dead letters

    async def dead_letter_count(self) -> int:
        await self.ensure_streams()
        info = await self.bus.js.stream_info(self.dead_stream)
        return int(info.state.messages)

    async def dead_letters(self, after: int, limit: int) -> list[DeadLetterRecord]:
        """Oldest first, those after stream sequence `after`."""
        await self.ensure_streams()
        records: list[DeadLetterRecord] = []
        sequence = after + 1
        while len(records) < limit:
            record = await self._next_dead_letter(sequence)
            if record is None:
                break
            records.append(record)
            sequence = record.sequence + 1
        return records

    async def get_dead_letter(self, sequence: int) -> DeadLetterRecord | None:
        await self.ensure_streams()
        try:
            message = await self.bus.js.get_msg(self.dead_stream, seq=sequence)
        except NotFoundError:
            return None
        return _record(message)

    async def _next_dead_letter(self, sequence: int) -> DeadLetterRecord | None:
        try:
            message = await self.bus.js.get_msg(
                self.dead_stream, seq=sequence, subject=DELIVERIES.dead_subjects(self.prefix), next=True
            )
        except NotFoundError:
            return None
        return _record(message)

    async def forget_dead_letter(self, sequence: int) -> None:
        await self.bus.js.delete_msg(self.dead_stream, sequence)


async def _waiting(subscription: JetStreamContext.PullSubscription, at_most: int) -> list[Msg]:
    """The jobs already waiting (up to at_most), without waiting for more."""
    try:
        return await subscription.fetch(at_most, timeout=WAITING_FETCH_SECONDS)
    except TimeoutError:
        return []


def _record(message: RawStreamMsg) -> DeadLetterRecord:
    headers = message.headers or {}
    return DeadLetterRecord(
        sequence=int(message.seq or 0),
        delivery_id=bytes(message.data or b"").decode(),
        channel=headers.get("Dead-Letter-Channel", ""),
        reason=headers.get("Dead-Letter-Reason", ""),
        dead_at=message.time or utcnow(),
        attempts=int(headers.get("Dead-Letter-Attempts", "0") or 0),
    )
