"""Stopping background tasks for sure.

On Python 3.11 `asyncio.wait_for` can swallow a cancellation that lands as its inner
future completes (nats-py's fetch and our own waits use it), and a `while True` loop
then runs on. So a task that is still running a moment after its cancel is cancelled
again, until it ends or the grace period is over."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

log = logging.getLogger(__name__)

RECANCEL_EVERY_SECONDS = 0.5


async def cancel_and_wait(tasks: Iterable[asyncio.Task[object]], grace_seconds: float = 10.0) -> None:
    """Cancels `tasks` and waits until each has ended, re-cancelling the ones that ignored
    the first cancel; after `grace_seconds` the ones still running are logged and left."""
    pending = {task for task in tasks if not task.done()}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace_seconds
    while pending and loop.time() < deadline:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=min(RECANCEL_EVERY_SECONDS, deadline - loop.time()))
    for task in pending:
        log.error("task did not stop", extra={"task": task.get_name()})
