"""The delivery work queue on the machine's NATS (JetStream): a job is retried after
its back-off step until its handler is done, each job goes to one worker however many
run, and a job failing max_deliver times lands in the dead-letter stream, where it can
be listed, read and dropped (an operator's replay)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import pytest

from services.kit.domain.timestamps import utcnow
from services.kit.events.bus import EventBus
from services.notification.queue import DELIVERIES, DONE, BatchJobHandler, DeliveryQueue, Job, Outcome
from services.notification.settings import DeliverySettings
from tests.infra import NATS_URL, delete_stream, require, unique_prefix

SETTINGS = DeliverySettings(max_deliver=3, backoff_seconds=[0.2, 0.2], ack_wait_seconds=5, concurrency=8)


@pytest.fixture
async def bus() -> AsyncIterator[EventBus]:
    require("NATS", "127.0.0.1", 4222)
    prefix = unique_prefix("nq")
    bus = EventBus(NATS_URL, prefix, "notification-queue-test")
    bus.start()
    await asyncio.wait_for(bus.wait_ready(), 10)
    yield bus
    await bus.close()
    for stream in (DELIVERIES.stream(prefix), DELIVERIES.dead_stream(prefix), f"{prefix.upper()}_EVENTS"):
        await delete_stream(NATS_URL, stream)


def each_job(handler: Callable[[Job], Awaitable[Outcome]]) -> BatchJobHandler:
    """The worker's batch handler running `handler` on each job of a batch at once."""

    async def handle(jobs: Sequence[Job]) -> list[Outcome]:
        return list(await asyncio.gather(*(handler(job) for job in jobs)))

    return handle


async def until(check: object, within: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not check():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "not within the time"
        await asyncio.sleep(0.05)


async def test_a_job_is_retried_until_done_and_taken_by_one_worker(bus: EventBus) -> None:
    seen: Counter[str] = Counter()
    tries: list[int] = []

    async def handler(job: Job) -> Outcome:
        seen[job.delivery_id] += 1
        if job.delivery_id == "flaky":
            tries.append(job.delivery_count)
            return DONE if job.delivery_count == 2 else Outcome(retry_in=0.2)
        return DONE

    queue = DeliveryQueue(bus, SETTINGS)
    workers = [asyncio.create_task(DeliveryQueue(bus, SETTINGS).work(each_job(handler))) for _ in range(3)]
    try:
        for index in range(20):
            await queue.enqueue(f"job-{index}", "sms", utcnow())
        await queue.enqueue("flaky", "email", utcnow())
        await until(lambda: len(seen) == 21 and tries == [1, 2])
        await asyncio.sleep(0.5)  # nothing comes twice
    finally:
        for worker in workers:
            worker.cancel()
    assert all(count == 1 for job, count in seen.items() if job != "flaky") and seen["flaky"] == 2
    assert await queue.dead_letter_count() == 0
    info = await bus.js.stream_info(DELIVERIES.stream(bus.prefix))
    assert info.state.messages == 0  # a work queue keeps nothing acked


async def test_a_job_failing_every_try_is_a_dead_letter_an_operator_can_drop(bus: EventBus) -> None:
    async def handler(job: Job) -> Outcome:
        return DeliveryQueue(bus, SETTINGS).retry_or_dead(job, "provider said 500")

    queue = DeliveryQueue(bus, SETTINGS)
    worker = asyncio.create_task(queue.work(each_job(handler)))
    try:
        await queue.enqueue("doomed", "whatsapp", utcnow())
        await queue.enqueue("also-doomed", "sms", utcnow())

        async def count() -> int:
            return await queue.dead_letter_count()

        for _ in range(200):
            if await count() == 2:
                break
            await asyncio.sleep(0.05)
    finally:
        worker.cancel()
    letters = await queue.dead_letters(0, 10)
    assert sorted(letter.delivery_id for letter in letters) == ["also-doomed", "doomed"]
    doomed = next(letter for letter in letters if letter.delivery_id == "doomed")
    assert (doomed.channel, doomed.attempts) == ("whatsapp", 3)
    assert doomed.reason == "failed 3 times, last: provider said 500"
    assert (await queue.dead_letters(letters[0].sequence, 10))[0].sequence == letters[1].sequence
    assert await queue.get_dead_letter(doomed.sequence) == doomed
    await queue.forget_dead_letter(doomed.sequence)
    assert await queue.get_dead_letter(doomed.sequence) is None
    assert await queue.dead_letter_count() == 1
