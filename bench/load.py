"""Load generators in this process (asyncio): open-loop at a fixed rate, where each
request's latency runs from its *intended* send time (so a stalled system or a late
generator shows up in the tail instead of being omitted), and closed-loop with a
fixed number of concurrent callers (for gRPC, where wrk cannot go).

A call is an `async () -> outcome` ("ok", an HTTP status, a gRPC code name)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bench.stats import Measurement

Call = Callable[[], Awaitable[str]]
# How far behind its schedule the generator may fall before the step says so.
LATE_SEND_WARNING_MS = 5.0


async def _timed(call: Call, started: float, measurement: Measurement, record: bool) -> None:
    try:
        outcome = await call()
    except Exception as error:
        outcome = type(error).__name__
    if record:
        measurement.add((time.perf_counter() - started) * 1000, outcome)


async def closed_loop(call: Call, connections: int, warmup: float, duration: float) -> Measurement:
    """`connections` callers, each sending its next request when the last one answered."""
    measurement = Measurement()
    begin = time.perf_counter() + warmup
    end = begin + duration

    async def caller() -> None:
        while (now := time.perf_counter()) < end:
            await _timed(call, now, measurement, record=now >= begin)

    await asyncio.gather(*(caller() for _ in range(connections)))
    measurement.seconds = duration
    return measurement


@dataclass
class OpenLoopReport(Measurement):
    """A Measurement plus how late the generator itself sent requests."""

    max_send_delay_ms: float = 0.0


async def open_loop(call: Call, rate: float, duration: float, warmup: float = 0.0) -> OpenLoopReport:
    """Sends at `rate` per second for warmup + duration seconds; records the last `duration`."""
    report = OpenLoopReport()
    interval = 1.0 / rate
    total = int((warmup + duration) * rate)
    first_recorded = int(warmup * rate)
    pending: set[asyncio.Task[None]] = set()
    start = time.perf_counter() + 0.05
    for index in range(total):
        intended = start + index * interval
        delay = intended - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        record = index >= first_recorded
        if record:
            report.max_send_delay_ms = max(report.max_send_delay_ms, (time.perf_counter() - intended) * 1000)
        task = asyncio.create_task(_timed(call, intended, report, record))
        pending.add(task)
        task.add_done_callback(pending.discard)
    await asyncio.gather(*pending)
    report.seconds = duration
    return report
