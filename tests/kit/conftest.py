from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.infra import NATS_URL, fresh_postgres_database, require


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'kit.sqlite3'}"
        return
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture
def nats_url() -> str:
    require("NATS", "127.0.0.1", 4222)
    return NATS_URL
