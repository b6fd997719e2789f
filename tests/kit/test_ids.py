"""new_id (services/kit/domain/ids.py): valid UUIDv7 whose order is the order they were
made in, within a millisecond too (plain UUIDv7 orders those at random: ds's review queue,
"oldest first" by id, listed two messages of one call in either order), and from threads."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from services.kit.domain.ids import new_id


def test_ids_are_uuid7_of_the_current_millisecond() -> None:
    before = time.time_ns() // 1_000_000
    made = uuid.UUID(new_id())
    after = time.time_ns() // 1_000_000
    assert (made.version, made.variant) == (7, uuid.RFC_4122)
    assert before <= made.int >> 80 <= after


def test_ids_sort_in_the_order_they_were_made() -> None:
    # Thousands per millisecond: most of them share their millisecond with the one before.
    ids = [new_id() for _ in range(20_000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert all(uuid.UUID(made).version == 7 for made in ids[::997])


def test_ids_made_in_threads_are_unique() -> None:
    with ThreadPoolExecutor(4) as pool:
        batches = list(pool.map(lambda _: [new_id() for _ in range(5_000)], range(4)))
    every = [made for batch in batches for made in batch]
    assert len(set(every)) == len(every)
    assert all(batch == sorted(batch) for batch in batches)
