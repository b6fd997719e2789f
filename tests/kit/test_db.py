"""Database.read(): Core reads outside any transaction, on real SQLite and PostgreSQL
(there, straight through psycopg: kit.reads)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, bindparam, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, MultipleResultsFound, NoResultFound, OperationalError

from services.kit.db.engine import Database, UtcDateTime
from services.kit.db.reads import PLAN_EACH_TIME
from services.kit.db.sql import fetch_together

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


# The same table with more columns, for what reads must process as SQLAlchemy would.
events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("at", UtcDateTime(), nullable=False),
)
AT = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)


async def _add_events(db: Database) -> None:
    async with db.transaction() as session:
        await session.execute(
            events.insert(),
            [{"id": n, "kind": kind, "at": AT + timedelta(hours=n)} for n, kind in enumerate("aabbc", 1)],
        )


async def test_reads_take_each_statements_own_literals_and_expanding_lists(db: Database) -> None:
    """Statements of one shape share a compiled form (one cache key) but not their values."""
    await _add_events(db)
    by_ids = (
        select(events.c.id).where(events.c.id.in_(bindparam("ids", expanding=True))).order_by(events.c.id)
    )
    async with db.read() as connection:
        for kind, expected in (("a", [1, 2]), ("b", [3, 4]), ("z", [])):
            found = await connection.execute(
                select(events.c.id).where(events.c.kind == kind).order_by(events.c.id)
            )
            assert list(found.scalars()) == expected
        assert list((await connection.execute(by_ids, {"ids": [5, 2, 9]})).scalars()) == [2, 5]
        assert list((await connection.execute(by_ids, {"ids": [3]})).scalars()) == [3]
        assert list((await connection.execute(by_ids.limit(1), {"ids": [4, 5]})).scalars()) == [4]


async def test_reads_process_values_and_name_columns_as_sqlalchemy_does(db: Database) -> None:
    await _add_events(db)
    after = select(events.c.id, events.c.at, func.count().over().label("total")).where(
        events.c.at > bindparam("after", type_=UtcDateTime())
    )
    # A zone other than UTC goes through UtcDateTime's bind processing.
    in_kolkata = (AT + timedelta(hours=3)).astimezone(timezone(timedelta(hours=5, minutes=30)))
    async with db.read() as connection:
        rows = (await connection.execute(after.order_by(events.c.id), {"after": in_kolkata})).all()
        assert [(row.id, row.total) for row in rows] == [(4, 2), (5, 2)]
        assert rows[0].at == AT + timedelta(hours=4) and rows[0].at.utcoffset() == timedelta(0)
        assert (await connection.execute(after.where(events.c.id > 5), {"after": AT})).first() is None
        with pytest.raises(MultipleResultsFound):
            (await connection.execute(select(events.c.id))).scalar_one()
        with pytest.raises(NoResultFound):
            (await connection.execute(select(events.c.id).where(events.c.id > 9))).scalar_one()
        # scalar(), as Result's: the first row's first column, None without rows (reporting's
        # read-your-writes wait reads its copy's version so, on either backend).
        assert (await connection.execute(select(events.c.id).order_by(events.c.id))).scalar() == 1
        assert (await connection.execute(select(events.c.id).where(events.c.id > 9))).scalar() is None


async def test_read_errors_are_sqlalchemys(db: Database, database_url: str) -> None:
    """The interceptor maps SQLAlchemy's OperationalError to UNAVAILABLE, whatever the read path."""
    async with db.read() as connection:
        with pytest.raises(DBAPIError):  # ProgrammingError on PostgreSQL
            await connection.execute(text("SELECT * FROM no_such_table"))
        # The connection is still usable after a failed statement.
        assert (await connection.execute(count_items)).scalar_one() == 0
    if not db.is_postgres:
        return
    unreachable = Database(str(make_url(database_url).set(port=1)), pool_size=1)
    try:
        with pytest.raises(OperationalError):
            async with unreachable.read() as connection:
                await connection.execute(count_items)
    finally:
        await unreachable.dispose()


async def test_fetch_together_reads_each_querys_rows_in_the_sessions_transaction(db: Database) -> None:
    above = select(items.c.id.label("item_id")).where(items.c.id > bindparam("low"))
    above = above.order_by(items.c.id).limit(2)
    async with db.transaction() as session:
        transaction_id = select(func.txid_current()) if db.is_postgres else select(1)
        # First in the transaction: on PostgreSQL its BEGIN goes in the same round trip.
        [[(first_id,)]] = await fetch_together(session, [(transaction_id, {})])
        assert (await session.execute(transaction_id)).scalar_one() == first_id
        await session.execute(items.insert(), [{"id": i} for i in (1, 2, 3, 4)])
        first, counted = await fetch_together(session, [(above, {"low": 1}), (count_items, {})])
    # The LIMIT the statement binds itself applies; the transaction's own rows are seen.
    assert [row.item_id for row in first] == [2, 3]
    assert counted[0][0] == 4


async def test_fetch_together_errors_are_sqlalchemys_and_roll_back(db: Database) -> None:
    with pytest.raises(DBAPIError):
        async with db.transaction() as session:
            await session.execute(items.insert().values(id=1))
            await fetch_together(session, [(count_items, {}), (text("SELECT * FROM no_such_table"), {})])
    async with db.read() as connection:
        assert (await connection.execute(count_items)).scalar_one() == 0


async def test_a_statement_planned_each_time_is_never_prepared(db: Database) -> None:
    """psycopg prepares a statement from its 5th run, and PostgreSQL then may plan it once
    for any values; a statement with PLAN_EACH_TIME stays unprepared (the ledger's `q`)."""
    if not db.is_postgres:
        pytest.skip("SQLite prepares nothing on the server")
    await _add_events(db)
    by_id = select(events.c.id).where(events.c.id > bindparam("after"))
    each_time = by_id.where(events.c.id < 100).execution_options(**{PLAN_EACH_TIME: True})
    prepared = text("SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE '%< %'")
    async with db.read() as connection:  # one connection: prepared statements are its own
        for _ in range(8):
            assert len((await connection.execute(each_time, {"after": 1})).all()) == 4
        assert (await connection.execute(prepared)).scalar_one() == 0
        for _ in range(8):
            await connection.execute(by_id.where(events.c.id < 50), {"after": 1})
        assert (await connection.execute(prepared)).scalar_one() == 1
