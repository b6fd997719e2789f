from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis

from tests.infra import REDIS_URL, require, unique_prefix
from tests.reporting.harness import Reporting, build_reporting, migrated_settings

# SQLite without Redis (the embedded default), PostgreSQL with Redis (the cache path).
BACKENDS = {"sqlite": ("sqlite", False), "postgresql-redis": ("postgresql", True)}


@pytest.fixture(scope="module", params=list(BACKENDS))
async def reporting(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Reporting]:
    backend, with_redis = BACKENDS[request.param]
    prefix = unique_prefix("r")
    overrides = {"event_prefix": prefix}
    if with_redis:
        require("Redis", "127.0.0.1", 6379)
        overrides["redis_url"] = REDIS_URL
    async with migrated_settings(backend, tmp_path_factory.mktemp("reporting"), **overrides) as settings:
        service = build_reporting(settings)
        await service.serve()
        yield service
        await service.close()
    if with_redis:
        await forget_cache(prefix)


async def forget_cache(prefix: str) -> None:
    """The run's report entries and version tokens in the shared Redis."""
    client = redis.Redis.from_url(REDIS_URL)
    keys = [key async for key in client.scan_iter(f"{prefix}:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()
