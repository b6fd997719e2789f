"""upsert_if_newer (services/kit/db/sql.py), the compare-and-set behind every copy kept from
versioned events, on real SQLite and PostgreSQL: a version not above the stored one changes
nothing; version 0 (a producer older than versions) replaces only an unversioned row; and
writers racing with versions in any order leave the highest."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import BigInteger, Column, MetaData, String, Table, select

from services.kit.db.engine import Database
from services.kit.db.sql import upsert_if_newer

metadata = MetaData()
copies = Table(
    "copies",
    metadata,
    Column("user_id", String(36), primary_key=True),
    Column("value", String(20), nullable=False),
    Column("version", BigInteger, nullable=False),
)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url, pool_size=4)
    async with database.engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
    yield database
    await database.dispose()


async def _write(db: Database, value: str, version: int, user_id: str = "u1") -> bool:
    async with db.transaction() as session:
        row = {"user_id": user_id, "value": value, "version": version}
        return await upsert_if_newer(session, copies, row, {"value": value}, "version")


async def _stored(db: Database, user_id: str = "u1") -> tuple[str, int] | None:
    async with db.transaction() as session:
        query = select(copies.c.value, copies.c.version).where(copies.c.user_id == user_id)
        row = (await session.execute(query)).first()
    return None if row is None else (row.value, row.version)


async def test_only_a_newer_version_replaces_the_copy(db: Database) -> None:
    assert await _write(db, "v3", 3)
    assert not await _write(db, "v2", 2)
    assert not await _write(db, "v3 again", 3)
    assert await _stored(db) == ("v3", 3)
    assert await _write(db, "v5", 5)
    assert await _stored(db) == ("v5", 5)
    assert await _write(db, "other", 1, user_id="u2")  # a key of its own
    assert await _stored(db) == ("v5", 5)


async def test_unversioned_events_replace_only_an_unversioned_copy(db: Database) -> None:
    assert await _write(db, "old producer", 0)
    assert await _write(db, "old producer again", 0)
    assert await _stored(db) == ("old producer again", 0)
    assert await _write(db, "new producer", 1)
    # Once versions flow, an unversioned event can only be one published before them.
    assert not await _write(db, "late old producer", 0)
    assert await _stored(db) == ("new producer", 1)


async def test_racing_writers_leave_the_highest_version(db: Database) -> None:
    versions = list(range(1, 31))
    random.Random(7).shuffle(versions)
    outcomes = await asyncio.gather(*(_write(db, f"v{version}", version) for version in versions))
    # Whatever order they commit in, the highest wins and is never overwritten.
    assert await _stored(db) == ("v30", 30)
    assert outcomes[versions.index(30)] is True
