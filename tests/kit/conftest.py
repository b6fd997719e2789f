from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from sqlalchemy import MetaData

from services.kit.db import Database
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


@asynccontextmanager
async def database_with(url: str, metadata: MetaData, schema: str) -> AsyncIterator[Database]:
    """A Database whose schema holds metadata's tables (created when missing)."""
    database = Database(url, schema=schema)
    async with database.engine.begin() as connection:
        if database.schema:
            await connection.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{database.schema}"')
        await connection.run_sync(metadata.create_all)
    yield database
    await database.dispose()
