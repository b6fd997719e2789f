"""The cache is an accelerator: real Redis when configured, graceful without."""

from __future__ import annotations

import pytest

from services.kit.cache import Cache
from tests.infra import REDIS_URL, free_port, require, unique_prefix


@pytest.fixture
async def redis_cache():  # type: ignore[no-untyped-def]
    require("Redis", "127.0.0.1", 6379)
    cache = Cache(REDIS_URL, unique_prefix("cache"))
    yield cache
    await cache.close()


async def test_values_round_trip_and_expire_in_redis(redis_cache: Cache) -> None:
    await redis_cache.set("k", b"v", ttl_seconds=0.2)
    assert await redis_cache.get("k") == b"v"
    await redis_cache.delete("k")
    assert await redis_cache.get("k") is None


async def test_many_values_are_set_at_once(redis_cache: Cache) -> None:
    await redis_cache.set_many({"a": b"1", "b": b"2"}, ttl_seconds=60)
    assert [await redis_cache.get(key) for key in ("a", "b", "c")] == [b"1", b"2", None]


async def test_counters_are_shared_through_redis(redis_cache: Cache) -> None:
    other_process = Cache(REDIS_URL, redis_cache.prefix)
    assert [await redis_cache.count("hits", 60) for _ in range(3)] == [1, 2, 3]
    assert await other_process.count("hits", 60) == 4
    assert await other_process.peek_count("hits") == 4
    await redis_cache.reset_count("hits")
    assert await other_process.peek_count("hits") == 0
    await other_process.close()


@pytest.mark.parametrize("url", [None, "unreachable"])
async def test_without_redis_everything_still_answers(url: str | None) -> None:
    cache = Cache(f"redis://127.0.0.1:{free_port()}/0" if url else None, unique_prefix())
    await cache.set("k", b"v", 10)
    await cache.set_many({"k": b"v"}, 10)
    assert await cache.get("k") is None
    assert await cache.get_versioned("version", "k:", "") == ("0", None)
    assert [await cache.count("hits", 60) for _ in range(3)] == [1, 2, 3]
    assert await cache.peek_count("hits") == 3
    assert await cache.ping() is (url is None)
    await cache.close()


async def test_a_versioned_value_is_read_under_the_current_version(redis_cache: Cache) -> None:
    """One round trip reads a version key and the value stored under that version."""
    assert await redis_cache.get_versioned("version:u1", "report:u1:", ":month") == ("0", None)
    await redis_cache.set("report:u1:0:month", b"unversioned", ttl_seconds=60)
    assert await redis_cache.get_versioned("version:u1", "report:u1:", ":month") == ("0", b"unversioned")
    await redis_cache.set("version:u1", b"v7", ttl_seconds=60)
    assert await redis_cache.get_versioned("version:u1", "report:u1:", ":month") == ("v7", None)
    await redis_cache.set("report:u1:v7:month", b"current", ttl_seconds=60)
    assert await redis_cache.get_versioned("version:u1", "report:u1:", ":month") == ("v7", b"current")
