"""Database.read(): Core reads outside any transaction, on real SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, func, select, text

from services.kit.db import Database

metadata = MetaData()
items = Table("items", metadata, Column("id", Integer, primary_key=True))
count_items = select(func.count()).select_from(items)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url, pool_size=2)
    async with database.engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
    yield database
    await database.dispose()


async def _add(db: Database, item_id: int) -> None:
    async with db.transaction() as session:
        await session.execute(items.insert().values(id=item_id))


async def test_a_read_waits_for_no_writer_and_sees_only_commits(db: Database) -> None:
    await _add(db, 1)
    async with db.transaction() as session:
        await session.execute(items.insert().values(id=2))  # holds SQLite's write lock
        async with db.read() as connection:
            # A read taking SQLite's write lock would wait out busy_timeout (10 s).
            seen = await asyncio.wait_for(connection.execute(count_items), timeout=5)
            assert seen.scalar_one() == 1


async def test_each_statement_of_a_read_sees_the_latest_commits(db: Database) -> None:
    async with db.read() as connection:
        assert (await connection.execute(count_items)).scalar_one() == 0
        await _add(db, 1)
        assert (await connection.execute(count_items)).scalar_one() == 1


async def test_postgresql_runs_each_statement_of_a_read_as_its_own_transaction(db: Database) -> None:
    if not db.is_postgres:
        pytest.skip("SQLite: the tests above show it takes no lock and keeps no snapshot")
    async with db.read() as connection:
        first, second = [(await connection.execute(text("SELECT txid_current()"))).scalar_one() for _ in "ab"]
    assert first != second


async def test_transactions_after_reads_still_roll_back(db: Database) -> None:
    """A connection handed out by read() and back in the pool writes transactionally again."""
    for _ in range(3):
        async with db.read() as connection:
            await connection.execute(count_items)
    with pytest.raises(RuntimeError):
        async with db.transaction() as session:
            await session.execute(items.insert().values(id=1))
            raise RuntimeError("rolls back")
    async with db.read() as connection:
        assert (await connection.execute(count_items)).scalar_one() == 0
