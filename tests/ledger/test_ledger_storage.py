"""The ledger's schema and queries on real SQLite and PostgreSQL: the migration
builds exactly the models (plus the trigram index and append-only triggers), and
list queries stay bounded."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, nullcontext
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.kit.config.settings import MeshSettings
from services.kit.db import migrations
from services.kit.db.engine import Database
from services.kit.db.idempotency import RequestKey, _keys_lookup, stored_answers
from services.kit.db.sql import COPY_MIN_ROWS, insert_many, one_round_trip, wanted_values
from services.kit.domain.ids import new_id
from services.ledger import storage
from services.ledger.domain import Count, Cursor, Expense, ExpenseFilter, parse_ordering

# Created by the migration only: the PostgreSQL trigram index needs the pg_trgm extension.
MIGRATION_ONLY = {"ix_expenses_search", "alembic_version"}


@pytest.fixture
async def db(database_url: str, tmp_path: Path) -> AsyncIterator[Database]:
    settings = MeshSettings(database_url=database_url, data_dir=tmp_path)
    await asyncio.to_thread(migrations.upgrade, "ledger", settings)
    database = Database(database_url, schema="ledger", pool_size=2)
    yield database
    await database.dispose()


def _drift(connection: Any) -> list[Any]:
    def include(obj: Any, name: str | None, kind: str, reflected: bool, compare_to: Any) -> bool:
        return name not in MIGRATION_ONLY

    context = MigrationContext.configure(connection, opts={"include_object": include, "compare_type": True})
    return compare_metadata(context, storage.metadata)


async def test_the_migration_builds_the_models(db: Database) -> None:
    async with db.engine.connect() as connection:
        assert await connection.run_sync(_drift) == []


async def test_text_search_is_indexed_on_postgresql(db: Database) -> None:
    if not db.is_postgres:
        pytest.skip("SQLite has no trigram index; q filters the user's own rows")
    async with db.transaction() as session:
        definition = (
            await session.execute(
                text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_expenses_search'")
            )
        ).scalar_one()
    assert "gin_trgm_ops" in definition and "delete_time IS NULL" in definition


def _expense(user_id: str, day: int, amount: int) -> Expense:
    now = datetime.now(UTC)
    return Expense(
        new_id(), user_id, amount, "INR", date(2026, 1, day), None, "Shop", "", ("t",), "manual", 1, now, now
    )


async def test_counts_stop_at_the_cap_and_pages_at_the_limit(db: Database) -> None:
    user_id, other = new_id(), new_id()
    async with db.transaction() as session:
        await storage.insert_expenses(session, [_expense(user_id, 1 + i % 28, 100 + i) for i in range(25)])
        await storage.insert_expenses(session, [_expense(other, 1, 5)])
    ordering = parse_ordering("amount desc")
    everything = ExpenseFilter()
    async with db.read() as connection:
        assert await storage.count_expenses(connection, user_id, everything, cap=10) == Count(10, True)
        assert await storage.count_expenses(connection, user_id, everything, cap=25) == Count(25, False)
        assert await storage.count_expenses(connection, user_id, everything, cap=100) == Count(25, False)
        assert await storage.count_expenses(
            connection, user_id, ExpenseFilter(tag_key="t", min_value=12400), 100
        ) == Count(1, False)
        page, total = await storage.list_expenses(connection, user_id, everything, ordering, None, 7, cap=10)
        assert total == Count(10, True)
        counted = await storage.list_expenses(connection, user_id, everything, ordering, None, 7, 100)
        assert counted[1] == Count(25, False)
        # Not counted at all: the same page, no count.
        assert await storage.list_expenses(connection, user_id, everything, ordering, None, 7, None) == (
            page,
            None,
        )
    assert [expense.amount_minor for expense in page] == list(range(124, 117, -1))
    assert {expense.user_id for expense in page} == {user_id}


async def test_an_empty_page_still_counts_the_matching_rows(db: Database) -> None:
    """The count rides on the page's rows: a page past the last row counts separately."""
    user_id = new_id()
    async with db.transaction() as session:
        await storage.insert_expenses(session, [_expense(user_id, 1 + i, 100 + i) for i in range(3)])
    ordering = parse_ordering("amount desc")
    async with db.read() as connection:
        page, total = await storage.list_expenses(
            connection, user_id, ExpenseFilter(), ordering, None, 10, 100
        )
        assert (len(page), total) == (3, Count(3, False))
        past_the_end = Cursor(ordering.key_of(page[-1]), page[-1].expense_id)
        assert await storage.list_expenses(
            connection, user_id, ExpenseFilter(), ordering, past_the_end, 10, 100
        ) == ([], Count(3, False))
        assert await storage.list_expenses(
            connection, user_id, ExpenseFilter(text="nothing"), ordering, None, 10, 100
        ) == ([], Count(0, False))


async def test_text_search_takes_like_wildcards_and_the_escape_character_literally(db: Database) -> None:
    user_id = new_id()
    shop = _expense(user_id, 1, 100)._replace(note="Tea/2_for%1")
    async with db.transaction() as session:
        await storage.insert_expenses(session, [shop, _expense(user_id, 2, 200)])
    ordering = parse_ordering("amount desc")

    async def found(text: str) -> list[str]:
        async with db.read() as connection:
            page, _ = await storage.list_expenses(
                connection, user_id, ExpenseFilter(text=text), ordering, None, 10, 100
            )
        return [expense.expense_id for expense in page]

    for literal in ("tea/2_for%1", "/2", "2_f", "r%1"):
        assert await found(literal) == [shop.expense_id]
    for pattern in ("tea_2", "tea%for", "2/_", "//"):
        assert await found(pattern) == []


def bulk(session: AsyncSession, together: bool) -> AbstractAsyncContextManager[None]:
    return one_round_trip(session) if together else nullcontext()


@pytest.mark.parametrize("together", [False, True], ids=["alone", "one-round-trip"])
@pytest.mark.parametrize("count", [COPY_MIN_ROWS - 1, 120])
async def test_bulk_inserts_store_the_same_values_either_way(
    db: Database, count: int, together: bool
) -> None:
    """insert_many uses COPY on PostgreSQL from COPY_MIN_ROWS on, executemany otherwise;
    inside one_round_trip, one statement inserting into every table."""
    user_id, now = new_id(), datetime.now(UTC)
    entries = [
        {
            "expense_id": new_id(),
            "user_id": user_id,
            "version": 1,
            "action": "create",
            "actor": user_id,
            "time": now,
            "before": None,
            "after": {"amount_minor": i, "note": "ü\n\t\\"},
        }
        for i in range(count)
    ]
    events = [
        {"event_id": new_id(), "subject": "t.events.x", "body": bytes([0, i % 256, 255]), "created_at": now}
        for i in range(count)
    ]
    async with db.transaction() as session, bulk(session, together):
        await insert_many(session, storage.ledger_entries, entries)
        await insert_many(session, storage.outbox, events)
    async with db.transaction() as session:
        stored = (
            await session.execute(
                select(storage.ledger_entries).where(storage.ledger_entries.c.user_id == user_id)
            )
        ).all()
        bodies = {row.event_id: row.body for row in (await session.execute(select(storage.outbox))).all()}
    assert sorted((row.after["amount_minor"], row.after["note"], row.before, row.time) for row in stored) == [
        (i, "ü\n\t\\", None, now) for i in range(count)
    ]
    assert all(bodies[event["event_id"]] == event["body"] for event in events)

    with pytest.raises(IntegrityError):
        async with db.transaction() as session, bulk(session, together):
            await insert_many(session, storage.outbox, [*events[-2:], *events[:-2]])


def _plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _plan_nodes(child)


async def test_import_keys_are_probed_per_id_and_found(db: Database) -> None:
    """The lookup of an import's keys reads one index entry per id, not every key of
    the user: the cost of an import call must not grow with the user's history."""
    user_id, method = new_id(), "ImportExpenses"
    stored = [
        {
            "user_id": user_id,
            "method": method,
            "request_id": f"r{i}",
            "fingerprint": f"f{i}",
            "response": b"",
            "created_at": datetime.now(UTC),
        }
        for i in range(5000)
    ]
    # An import call's worth of ids: enough for a join to hash all the user's keys.
    wanted = ["r5", "r4999", "absent", "r5", *(f"new{i}" for i in range(1000))]
    async with db.transaction() as session:
        await insert_many(session, storage.idempotency_keys, stored)
        keys = [RequestKey(user_id, method, request_id) for request_id in wanted]
        stored_keys = await stored_answers(session, storage.idempotency_keys, keys)
        found = {key.request_id: answer for key, answer in stored_keys.items()}
        assert {k: v.fingerprint for k, v in found.items()} == {"r5": "f5", "r4999": "f4999"}
        if not db.is_postgres:
            return
        await session.execute(text("ANALYZE ledger.idempotency_keys"))
        query = _keys_lookup(storage.idempotency_keys, "postgresql")
        sql = str(query.compile(dialect=session.bind.dialect))
        parameters = {**wanted_values(RequestKey._fields, keys), "param_1": 1}
        connection = await session.connection()
        result = await connection.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {sql}", parameters)
        nodes = list(_plan_nodes(result.scalar_one()[0]["Plan"]))
    assert "Hash Join" not in {node["Node Type"] for node in nodes}
    conditions = [node.get("Index Cond", "") for node in nodes]
    assert any("(request_id)::text = (wanted.request_id)::text" in c for c in conditions), conditions


async def test_migration_0004_adds_older_rows_tags_to_their_search_text(
    database_url: str, tmp_path: Path
) -> None:
    """Rows written before 0004 searched merchant and note alone: the upgrade appends their
    tags' keys, so `q` finds them by tag as it finds new rows."""
    settings = MeshSettings(database_url=database_url, data_dir=tmp_path)
    await asyncio.to_thread(migrations.upgrade, "ledger", settings, "0003")
    database = Database(database_url, schema="ledger", pool_size=1)
    try:
        user_id, old = new_id(), _expense(new_id(), 1, 100)._replace(tags=("Work", "Trip"))
        old = old._replace(user_id=user_id)
        async with database.transaction() as session:
            await storage.insert_expenses(session, [old])
            # As 0003's code wrote it: merchant and note only.
            await session.execute(
                storage.expenses.update()
                .values(search_text="shop\n")
                .where(storage.expenses.c.id == old.expense_id)
            )
        await asyncio.to_thread(migrations.upgrade, "ledger", settings)
        async with database.read() as connection:
            stored = await connection.execute(select(storage.expenses.c.search_text))
            assert sorted(stored.scalar().split("\n")) == sorted(["shop", "", "work", "trip"])
            page, total = await storage.list_expenses(
                connection, user_id, ExpenseFilter(text="trip"), parse_ordering(""), None, 10, 100
            )
        assert ([e.expense_id for e in page], total) == ([old.expense_id], Count(1, False))
    finally:
        await database.dispose()
