"""Group commit: concurrent callers' writes share one transaction, so the round
trips, the per-statement work and the commit's fsync are paid once per batch
instead of once per call.

An item is written at once when no batch is being built (no added latency at
low load); otherwise it waits, and the next batch takes everything waiting (at
most `max_batch_size`). A batch function may say when only its commit remains
(`next_may_start`): the next batch is then built while that commit's fsync is in
flight, up to `max_concurrent_batches` batches at once. Starting the next batch
only then, rather than as soon as an item arrives, keeps batches large under
load, and so the cost per item low. Under load (a batch starting as the previous
one ends) it may also `linger` before taking its items: a fast batch otherwise
takes only the few calls that arrived while its predecessor ran, and a batch's
fixed cost (a transaction, its round trips) then weighs on every item. An item
arriving while nothing runs never lingers.

A batch that fails as a whole (a concurrent duplicate key, a lost connection,
a serialization failure: its transaction rolled back) is written again item by
item through `write_one`, so one bad item never fails its neighbours and no
item is lost. Items with the same conflict key (e.g. one AIP-155 request id)
never share a batch nor run in two batches at once: the later one goes in a
later batch and so sees what the earlier one committed."""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from services.kit import tracing

log = logging.getLogger(__name__)

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")


def no_conflicts(_item: object) -> None:
    return None


@dataclass(eq=False)
class _Waiting(Generic[ItemT, ResultT]):
    item: ItemT
    key: Hashable | None
    future: asyncio.Future[ResultT]
    # The caller's trace context (tracing on): the batch runs in a context of its own.
    trace: tracing.Context | None = None


class GroupCommitter(Generic[ItemT, ResultT]):
    """`write_batch(items, next_may_start)` writes one batch and returns one result
    or one exception per item, in order (results must not be exceptions themselves);
    `write_one(item)` writes a single item, raising its error."""

    def __init__(
        self,
        write_batch: Callable[[list[ItemT], Callable[[], None]], Awaitable[Sequence[ResultT | Exception]]],
        write_one: Callable[[ItemT], Awaitable[ResultT]],
        *,
        max_batch_size: int,
        max_concurrent_batches: int,
        conflict_key: Callable[[ItemT], Hashable | None] = no_conflicts,
        linger: float = 0.0,
    ) -> None:
        if max_batch_size < 1 or max_concurrent_batches < 1:
            raise ValueError("batch size and concurrency must be at least 1")
        self._write_batch = write_batch
        self._write_one = write_one
        self._max_batch_size = max_batch_size
        self._max_concurrent = max_concurrent_batches
        self._conflict_key = conflict_key
        self._linger = linger
        self._queue: deque[_Waiting[ItemT, ResultT]] = deque()
        self._busy_keys: set[Hashable] = set()
        self._running = 0
        # A batch is starting or being built: items arriving meanwhile wait for the next one.
        self._building = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, item: ItemT) -> ResultT:
        """The item's result, or its exception raised. A caller cancelled while
        waiting leaves the batch alone: its item may still be written."""
        future: asyncio.Future[ResultT] = asyncio.get_running_loop().create_future()
        trace = tracing.current() if tracing.enabled() else None
        self._queue.append(_Waiting(item, self._conflict_key(item), future, trace))
        self._start_batch()
        return await future

    def _start_batch(self, linger: float = 0.0) -> None:
        if self._queue and not self._building and self._running < self._max_concurrent:
            self._building = True
            self._running += 1
            # A context of its own: the batch serves many callers, so it must not run
            # with the one that happened to start it (e.g. its identity).
            task = asyncio.get_running_loop().create_task(
                self._run_batch(linger), context=contextvars.Context()
            )
            self._tasks.add(task)  # the loop keeps only weak references to tasks
            task.add_done_callback(self._tasks.discard)

    async def _run_batch(self, linger: float) -> None:
        batch: list[_Waiting[ItemT, ResultT]] = []
        built = False

        def next_may_start() -> None:
            nonlocal built
            if not built:
                built = True
                self._building = False
                self._start_batch(self._linger)

        try:
            if linger:
                await asyncio.sleep(linger)
            batch = self._take()
            if batch and tracing.enabled():
                await self._write_traced(batch, next_may_start)
            elif batch:
                await self._write(batch, next_may_start)
        finally:
            self._running -= 1
            self._building = self._building and built
            self._busy_keys.difference_update(w.key for w in batch if w.key is not None)
            for waiting in batch:
                # Only when this task was cancelled (shutdown): nobody will answer them.
                if not waiting.future.done():
                    waiting.future.cancel()
        # A batch that took nothing (every item's key busy) does not restart: the
        # batch holding those keys does when it ends.
        if batch:
            self._start_batch(self._linger)

    def _take(self) -> list[_Waiting[ItemT, ResultT]]:
        """The oldest waiting items, skipping those whose key is taken; those stay first in line."""
        batch: list[_Waiting[ItemT, ResultT]] = []
        blocked: list[_Waiting[ItemT, ResultT]] = []
        while self._queue and len(batch) < self._max_batch_size:
            waiting = self._queue.popleft()
            if waiting.future.done():  # its caller gave up before the batch started
                continue
            if waiting.key is not None:
                if waiting.key in self._busy_keys:
                    blocked.append(waiting)
                    continue
                self._busy_keys.add(waiting.key)
            batch.append(waiting)
        self._queue.extendleft(reversed(blocked))
        return batch

    async def _write(self, batch: list[_Waiting[ItemT, ResultT]], next_may_start: Callable[[], None]) -> None:
        try:
            outcomes = await self._write_batch([waiting.item for waiting in batch], next_may_start)
        except Exception as error:
            next_may_start()
            log.warning(
                "a batch failed; writing its items one by one",
                extra={"items": len(batch), "error": repr(error)},
            )
            await asyncio.gather(*(self._write_alone(w) for w in batch if not w.future.done()))
            return
        for waiting, outcome in zip(batch, outcomes, strict=True):
            _settle(waiting.future, outcome)

    async def _write_traced(
        self, batch: list[_Waiting[ItemT, ResultT]], next_may_start: Callable[[], None]
    ) -> None:
        """The batch as a span in the first caller's trace, linked to the other callers'."""
        first, *others = [waiting.trace for waiting in batch]
        links = [context for context in others if context is not None]
        attributes = {"batch.items": len(batch)}
        with tracing.span("group commit", parent=first, links=links, attributes=attributes):
            await self._write(batch, next_may_start)

    async def _write_alone(self, waiting: _Waiting[ItemT, ResultT]) -> None:
        if waiting.trace is not None:  # its own caller's trace (a task of gather's: a context of its own)
            tracing.attach(waiting.trace)
        try:
            result = await self._write_one(waiting.item)
        except Exception as error:
            _settle(waiting.future, error)
        else:
            _settle(waiting.future, result)


def _settle(future: asyncio.Future[ResultT], outcome: ResultT | Exception) -> None:
    if future.done():  # the caller was cancelled
        return
    if isinstance(outcome, Exception):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
