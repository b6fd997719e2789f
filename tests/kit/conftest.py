from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from sqlalchemy import MetaData

from services.kit.db.engine import Database
from tests.infra import NATS_URL, require


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
