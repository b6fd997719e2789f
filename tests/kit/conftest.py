from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncConnection

from services.kit.config.settings import MeshSettings
from services.kit.db import migrations
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


@asynccontextmanager
async def migrated_connection(service: str, url: str, data_dir: Path) -> AsyncIterator[AsyncConnection]:
    """A connection to the service's database (at `url`: its own PostgreSQL schema) migrated to head."""
    settings = MeshSettings(database_url=url, data_dir=data_dir)
    await asyncio.to_thread(migrations.upgrade, service, settings)
    database = Database.for_service(settings, service, pool_size=1)
    try:
        async with database.engine.connect() as connection:
            yield connection
    finally:
        await database.dispose()
