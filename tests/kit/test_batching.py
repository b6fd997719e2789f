"""Group commit (services/kit/db/group_commit.py): batches form while others are in
flight, every caller gets its own answer, a failed batch is written again item
by item, cancelled callers do not disturb the others. Gates, not timing, decide
what is in flight."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator, Callable, Hashable

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, select
from sqlalchemy.exc import IntegrityError

from services.kit.db.engine import Database
from services.kit.db.group_commit import GroupCommitter
from tests.kit.conftest import database_with

MAX_YIELDS = 1000


async def until(condition: Callable[[], bool]) -> None:
    """Lets the loop run until condition holds (bounded, so a bug fails instead of hanging)."""
    for _ in range(MAX_YIELDS):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition never held")


class Writer:
    """Answers item * 10. `invalid` items get their own error from the batch;
    a batch holding a `poison` item fails as a whole, and the poison fails alone too."""

    def __init__(
        self,
        invalid: frozenset[int] = frozenset(),
        poison: frozenset[int] = frozenset(),
        overlap: bool = True,
    ) -> None:
        self.invalid = invalid
        self.poison = poison
        # Lets the next batch start before this one's gate opens (as before a COMMIT).
        self.overlap = overlap
        self.batches: list[list[int]] = []
        self.alone: list[int] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.running = 0
        self.most_running = 0

    async def write_batch(
        self, items: list[int], next_may_start: Callable[[], None]
    ) -> list[int | Exception]:
        self.batches.append(list(items))
        if self.overlap:
            next_may_start()
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await self.gate.wait()
        finally:
            self.running -= 1
        if self.poison & set(items):
            raise RuntimeError("the batch rolled back")
        return [ValueError(f"invalid {item}") if item in self.invalid else item * 10 for item in items]

    async def write_one(self, item: int) -> int:
        self.alone.append(item)
        if item in self.poison:
            raise LookupError(f"poison {item}")
        return item * 10


def committer(
    writer: Writer,
    max_batch_size: int = 100,
    max_concurrent_batches: int = 1,
    conflict_key: Callable[[int], Hashable | None] = lambda item: None,
    linger: float = 0.0,
) -> GroupCommitter[int, int]:
    return GroupCommitter(
        writer.write_batch,
        writer.write_one,
        max_batch_size=max_batch_size,
        max_concurrent_batches=max_concurrent_batches,
        conflict_key=conflict_key,
        linger=linger,
    )


async def held_first_batch(batcher: GroupCommitter[int, int], writer: Writer) -> asyncio.Task[int]:
    """Item 1 submitted and its batch started, held at the writer's gate (closed here)."""
    writer.gate.clear()
    first = asyncio.create_task(batcher.submit(1))
    await until(lambda: len(writer.batches) == 1)
    return first


async def test_an_item_alone_is_written_at_once() -> None:
    writer = Writer()
    assert await committer(writer).submit(7) == 70
    assert writer.batches == [[7]]


async def test_items_arriving_during_a_batch_form_the_next_one() -> None:
    writer = Writer()
    batcher = committer(writer)
    first = await held_first_batch(batcher, writer)
    rest = [asyncio.create_task(batcher.submit(item)) for item in range(2, 8)]
    await until(lambda: all(not task.done() for task in rest))
    writer.gate.set()
    assert await first == 10
    assert await asyncio.gather(*rest) == [item * 10 for item in range(2, 8)]
    assert writer.batches == [[1], list(range(2, 8))]
    assert writer.alone == []


async def test_under_load_a_batch_lingers_for_more_items_but_never_when_idle() -> None:
    writer = Writer()
    batcher = committer(writer, linger=0.2)
    first = await held_first_batch(batcher, writer)  # at once: nothing ran before it
    second = asyncio.create_task(batcher.submit(2))
    await until(lambda: not second.done())
    writer.gate.set()
    await first
    # The batch of 2 is lingering: 3 arrives in time to join it.
    third = asyncio.create_task(batcher.submit(3))
    assert await asyncio.gather(second, third) == [20, 30]
    assert writer.batches == [[1], [2, 3]]


async def test_batches_respect_the_size_and_concurrency_caps() -> None:
    writer = Writer()
    batcher = committer(writer, max_batch_size=3, max_concurrent_batches=2)
    writer.gate.clear()
    tasks = [asyncio.create_task(batcher.submit(item)) for item in range(10)]
    await until(lambda: len(writer.batches) == 2)
    writer.gate.set()
    assert await asyncio.gather(*tasks) == [item * 10 for item in range(10)]
    assert sorted(item for batch in writer.batches for item in batch) == list(range(10))
    assert max(len(batch) for batch in writer.batches) == 3
    assert writer.most_running == 2


async def test_the_next_batch_starts_only_once_the_previous_one_is_built() -> None:
    writer = Writer(overlap=False)
    batcher = committer(writer, max_concurrent_batches=2)
    first = await held_first_batch(batcher, writer)
    rest = [asyncio.create_task(batcher.submit(item)) for item in (2, 3)]
    for _ in range(20):
        await asyncio.sleep(0)
    # Room for a second batch, but the first never said only its commit was left.
    assert writer.batches == [[1]]
    writer.gate.set()
    assert [await first, *await asyncio.gather(*rest)] == [10, 20, 30]
    assert writer.batches == [[1], [2, 3]]
    assert writer.most_running == 1


async def test_an_item_error_reaches_only_its_caller() -> None:
    writer = Writer(invalid=frozenset({3}))
    batcher = committer(writer)
    outcomes = await asyncio.gather(*(batcher.submit(item) for item in range(1, 6)), return_exceptions=True)
    assert outcomes[:2] == [10, 20] and outcomes[3:] == [40, 50]
    assert isinstance(outcomes[2], ValueError) and str(outcomes[2]) == "invalid 3"
    assert writer.batches == [[1, 2, 3, 4, 5]]
    assert writer.alone == []


async def test_a_failed_batch_is_written_item_by_item() -> None:
    writer = Writer(poison=frozenset({3}))
    batcher = committer(writer)
    outcomes = await asyncio.gather(*(batcher.submit(item) for item in range(1, 6)), return_exceptions=True)
    assert outcomes[:2] == [10, 20] and outcomes[3:] == [40, 50]
    assert isinstance(outcomes[2], LookupError)
    assert writer.batches == [[1, 2, 3, 4, 5]]
    assert sorted(writer.alone) == [1, 2, 3, 4, 5]


async def test_a_caller_cancelled_while_waiting_is_left_out() -> None:
    writer = Writer()
    batcher = committer(writer)
    first = await held_first_batch(batcher, writer)
    waiting = {item: asyncio.create_task(batcher.submit(item)) for item in (2, 3, 4)}
    await until(lambda: all(not task.done() for task in waiting.values()))
    waiting[3].cancel()
    writer.gate.set()
    assert [await first, await waiting[2], await waiting[4]] == [10, 20, 40]
    assert waiting[3].cancelled()
    assert writer.batches == [[1], [2, 4]]


async def test_a_caller_cancelled_during_its_batch_leaves_the_batch_alone() -> None:
    writer = Writer()
    batcher = committer(writer)
    writer.gate.clear()
    tasks = [asyncio.create_task(batcher.submit(item)) for item in (1, 2, 3)]
    await until(lambda: len(writer.batches) == 1)
    tasks[1].cancel()
    await until(tasks[1].done)
    writer.gate.set()
    assert [await tasks[0], await tasks[2]] == [10, 30]
    assert tasks[1].cancelled()
    assert writer.batches == [[1, 2, 3]]
    # The batcher still works afterwards.
    assert await batcher.submit(4) == 40


async def test_a_cancelled_caller_is_not_retried_alone() -> None:
    writer = Writer(poison=frozenset({1}))
    batcher = committer(writer)
    writer.gate.clear()
    tasks = [asyncio.create_task(batcher.submit(item)) for item in (1, 2, 3)]
    await until(lambda: len(writer.batches) == 1)
    tasks[2].cancel()
    writer.gate.set()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(outcomes[0], LookupError) and outcomes[1] == 20
    assert isinstance(outcomes[2], asyncio.CancelledError)
    assert sorted(writer.alone) == [1, 2]


async def test_items_with_one_key_never_share_or_overlap_batches() -> None:
    writer = Writer()
    # Items from 10 on share one key; the others have none.
    batcher = committer(
        writer, max_concurrent_batches=2, conflict_key=lambda item: "same" if item >= 10 else None
    )
    writer.gate.clear()
    tasks = [asyncio.create_task(batcher.submit(item)) for item in [10, 1, 11, 2, 12, 3]]
    await until(lambda: len(writer.batches) == 1)
    # A second batch could run now, but only items of the busy key are left.
    for _ in range(20):
        await asyncio.sleep(0)
    assert writer.batches == [[10, 1, 2, 3]]
    writer.gate.set()
    assert await asyncio.gather(*tasks) == [100, 10, 110, 20, 120, 30]
    assert writer.batches == [[10, 1, 2, 3], [11], [12]]


async def test_a_batch_runs_outside_its_callers_context() -> None:
    caller: contextvars.ContextVar[str] = contextvars.ContextVar("caller", default="none")
    seen: list[str] = []

    async def write_batch(items: list[int], next_may_start: Callable[[], None]) -> list[int | Exception]:
        seen.append(caller.get())
        return items

    async def submit_as(name: str, item: int) -> int:
        caller.set(name)
        return await batcher.submit(item)

    batcher: GroupCommitter[int, int] = GroupCommitter(
        write_batch, Writer().write_one, max_batch_size=10, max_concurrent_batches=1
    )
    assert await asyncio.gather(submit_as("alice", 1), submit_as("bob", 2)) == [1, 2]
    assert seen == ["none"]


# ------------------------------------------------------- with a real database

metadata = MetaData()
grouped = Table(
    "grouped_rows", metadata, Column("id", Integer, primary_key=True), Column("label", String(20))
)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    async with database_with(database_url, metadata, "kit_batching") as database:
        yield database


async def test_a_duplicate_key_fails_alone_and_the_rest_commits(db: Database) -> None:
    async with db.transaction() as session:
        await session.execute(grouped.insert(), [{"id": 3, "label": "earlier"}])
    batches: list[list[int]] = []

    async def write_batch(ids: list[int], next_may_start: Callable[[], None]) -> list[int | Exception]:
        batches.append(list(ids))
        async with db.transaction() as session:
            await session.execute(grouped.insert(), [{"id": i, "label": "batch"} for i in ids])
        return ids

    async def write_one(row_id: int) -> int:
        async with db.transaction() as session:
            await session.execute(grouped.insert().values(id=row_id, label="alone"))
        return row_id

    batcher: GroupCommitter[int, int] = GroupCommitter(
        write_batch, write_one, max_batch_size=10, max_concurrent_batches=2
    )
    outcomes = await asyncio.gather(*(batcher.submit(i) for i in range(1, 6)), return_exceptions=True)
    assert batches == [[1, 2, 3, 4, 5]]
    assert outcomes[:2] == [1, 2] and outcomes[3:] == [4, 5]
    assert isinstance(outcomes[2], IntegrityError)
    async with db.transaction() as session:
        rows = (await session.execute(select(grouped.c.id, grouped.c.label).order_by(grouped.c.id))).all()
    assert [tuple(row) for row in rows] == [
        (1, "alone"),
        (2, "alone"),
        (3, "earlier"),
        (4, "alone"),
        (5, "alone"),
    ]
