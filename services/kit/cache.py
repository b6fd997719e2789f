"""Redis when REDIS_URL is set and reachable; otherwise no cache. Every
operation degrades to a miss (or to an in-process counter) on any Redis error,
so Redis is an accelerator, never a dependency. Reads count as hits or misses
(em_cache_requests_total, services/kit/metrics.py); without Redis nothing is counted."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Mapping

from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.kit import metrics

log = logging.getLogger(__name__)

LOCAL_COUNTERS_MAX = 100_000
NO_VERSION = "0"
# KEYS[1]: a version key; ARGV: the value key's head and tail around the version, the
# version when there is none. Returns the version and the value (nil when absent).
_GET_VERSIONED = """
local version = redis.call('GET', KEYS[1]) or ARGV[3]
return {version, redis.call('GET', ARGV[1] .. version .. ARGV[2])}
"""


class Cache:
    def __init__(self, url: str | None, prefix: str, name: str | None = None) -> None:
        self.prefix = prefix
        # Hits and misses of get()/get_versioned(), as metrics labelled `name` (the service).
        label = name or prefix.rpartition(":")[2]
        self._hits = metrics.CACHE_REQUESTS.labels(label, "hit")
        self._misses = metrics.CACHE_REQUESTS.labels(label, "miss")
        self._redis: Redis | None = (
            Redis.from_url(url, socket_timeout=0.25, socket_connect_timeout=0.25) if url else None
        )
        if self._redis is not None:
            self._get_versioned = self._redis.register_script(_GET_VERSIONED)
        # Fallback fixed-window counters: {key: (window_end, count)}.
        self._local_counts: dict[str, tuple[float, int]] = defaultdict(lambda: (0.0, 0))

    @property
    def enabled(self) -> bool:
        return self._redis is not None

    def _key(self, key: str) -> str:
        return f"{self.prefix}:{key}"

    async def get(self, key: str) -> bytes | None:
        if self._redis is None:
            return None
        try:
            value = await self._redis.get(self._key(key))
        except RedisError as error:
            log.warning("cache get failed", extra={"error": repr(error)})
            value = None
        self._counted(value)
        return value

    def _counted(self, value: bytes | None) -> None:
        (self._misses if value is None else self._hits).inc()

    async def get_versioned(self, version_key: str, head: str, tail: str) -> tuple[str, bytes | None]:
        """The version token stored at version_key ("0" when none) and the value at
        head + token + tail, in one round trip (a script) instead of two GETs."""
        if self._redis is None:
            return NO_VERSION, None
        try:
            token, value = await self._get_versioned(
                keys=[self._key(version_key)], args=[self._key(head), tail, NO_VERSION]
            )
        except RedisError as error:
            log.warning("cache get failed", extra={"error": repr(error)})
            self._misses.inc()
            return NO_VERSION, None
        self._counted(value)
        return token.decode(), value

    async def set(self, key: str, value: bytes, ttl_seconds: float, only_if_absent: bool = False) -> None:
        """only_if_absent (SET NX) keeps a value a concurrent writer has just put there."""
        if self._redis is None:
            return
        try:
            await self._redis.set(
                self._key(key), value, px=max(1, int(ttl_seconds * 1000)), nx=only_if_absent
            )
        except RedisError as error:
            log.warning("cache set failed", extra={"error": repr(error)})

    async def set_many(self, values: Mapping[str, bytes], ttl_seconds: float) -> None:
        """Several keys in one round trip (a pipeline, not a transaction)."""
        if self._redis is None or not values:
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key, value in values.items():
                    pipe.set(self._key(key), value, px=max(1, int(ttl_seconds * 1000)))
                await pipe.execute()
        except RedisError as error:
            log.warning("cache set failed", extra={"error": repr(error)})

    async def delete(self, *keys: str) -> None:
        if self._redis is None or not keys:
            return
        try:
            await self._redis.delete(*(self._key(k) for k in keys))
        except RedisError as error:
            log.warning("cache delete failed", extra={"error": repr(error)})

    async def count(self, key: str, window_seconds: int) -> int:
        """Increments a fixed-window counter and returns the new count."""
        if self._redis is not None:
            try:
                full = self._key(key)
                async with self._redis.pipeline(transaction=True) as pipe:
                    pipe.incr(full)
                    pipe.expire(full, window_seconds, nx=True)
                    count, _ = await pipe.execute()
                return int(count)
            except RedisError as error:
                log.warning("cache counter failed; counting locally", extra={"error": repr(error)})
        return self._count_locally(key, window_seconds)

    async def peek_count(self, key: str) -> int:
        if self._redis is not None:
            try:
                value = await self._redis.get(self._key(key))
                return int(value or 0)
            except RedisError:
                pass
        window_end, count = self._local_counts.get(key, (0.0, 0))
        return count if window_end > time.monotonic() else 0

    async def seconds_left(self, key: str) -> float:
        """Time until a counter's window ends (0 when there is no window)."""
        if self._redis is not None:
            try:
                millis = await self._redis.pttl(self._key(key))
                return max(0.0, millis / 1000)
            except RedisError:
                pass
        window_end, _ = self._local_counts.get(key, (0.0, 0))
        return max(0.0, window_end - time.monotonic())

    async def reset_count(self, key: str) -> None:
        self._local_counts.pop(key, None)
        await self.delete(key)

    def _count_locally(self, key: str, window_seconds: int) -> int:
        now = time.monotonic()
        if len(self._local_counts) > LOCAL_COUNTERS_MAX:
            # Many distinct keys (e.g. one per guessed email): drop the finished windows.
            self._local_counts = defaultdict(
                lambda: (0.0, 0), {k: v for k, v in self._local_counts.items() if v[0] > now}
            )
        window_end, count = self._local_counts[key]
        if window_end <= now:
            window_end, count = now + window_seconds, 0
        self._local_counts[key] = (window_end, count + 1)
        return count + 1

    async def ping(self) -> bool:
        if self._redis is None:
            return True
        try:
            return bool(await self._redis.ping())
        except RedisError:
            return False

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
