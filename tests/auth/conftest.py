from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.auth.harness import AuthUnderTest, running_auth
from tests.infra import REDIS_URL

# SQLite without Redis (the embedded default), PostgreSQL with Redis (the cache path).
BACKENDS = {"sqlite": ("sqlite", {}), "postgresql-redis": ("postgresql", {"redis_url": REDIS_URL})}


@pytest.fixture(scope="module", params=list(BACKENDS))
async def auth_service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[AuthUnderTest]:
    backend, overrides = BACKENDS[request.param]
    async with running_auth(backend, tmp_path_factory.mktemp("auth"), **overrides) as service:
        yield service
