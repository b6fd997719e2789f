"""The ledger's bulk load (services/ledger/seed.py, for benchmarks and load tests) on
PostgreSQL: what it writes reads back through the ledger's own queries exactly as the
ledger would have written it, and a load that fails part-way leaves nothing behind."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import psycopg
import pytest

from services.kit.config.settings import MeshSettings
from services.kit.db import migrations
from services.kit.db.bulk import libpq_dsn
from services.kit.db.engine import Database
from services.kit.domain.ids import new_id
from services.ledger import storage
from services.ledger.domain import Category, Expense, entry
from services.ledger.seed import seed_categories, seed_expenses
from tests.infra import fresh_postgres_database

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    with fresh_postgres_database() as url:
        migrations.upgrade("ledger", MeshSettings(database_url=url, data_dir=tmp_path))
        yield url


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url, schema="ledger", pool_size=2)
    yield database
    await database.dispose()


def _categories(user_id: str) -> list[Category]:
    food = Category(new_id(), user_id, "Food", None, "#E4572E", "restaurant", NOW, NOW)
    coffee = Category(new_id(), user_id, "Coffee", food.category_id, "", "", NOW, NOW)
    return [food, coffee]


def _expense(user_id: str, category_id: str | None, tags: tuple[str, ...]) -> Expense:
    return Expense(
        expense_id=new_id(),
        user_id=user_id,
        amount_minor=24950,
        currency="INR",
        spent_on=date(2026, 2, 14),
        category_id=category_id,
        merchant="Chai Point",
        note="",
        tags=tags,
        source="sms",
        version=1,
        create_time=NOW,
        update_time=NOW,
    )


async def test_seeded_rows_read_back_as_the_ledger_wrote_them(database_url: str, db: Database) -> None:
    user_id = new_id()
    categories = _categories(user_id)
    expenses = [
        _expense(user_id, categories[1].category_id, ("Work", "work", "trip")),
        _expense(user_id, None, ()),
    ]
    dsn = libpq_dsn(database_url)

    category_rows = await asyncio.to_thread(seed_categories, dsn, categories)
    expense_rows = await asyncio.to_thread(seed_expenses, dsn, expenses)

    assert category_rows == {"ledger.categories": 2}
    assert expense_rows == {"ledger.expenses": 2, "ledger.expense_tags": 2, "ledger.ledger_entries": 2}
    async with db.read() as connection:
        assert sorted(await storage.user_categories(connection, user_id), key=lambda c: c.name) == sorted(
            categories, key=lambda c: c.name
        )
        for expense in expenses:
            assert await storage.find_expense(connection, user_id, expense.expense_id) == expense
            assert await storage.entries_of(connection, user_id, expense.expense_id) == [
                entry("create", user_id, NOW, None, expense)
            ]
    async with db.transaction() as session:
        assert await storage.is_category_owner(session, user_id)


async def test_a_failed_load_commits_nothing(database_url: str) -> None:
    user_id = new_id()

    def failing() -> Iterator[Expense]:
        yield _expense(user_id, None, ("work",))
        raise RuntimeError("the generator broke")

    with pytest.raises(RuntimeError, match="the generator broke"):
        await asyncio.to_thread(seed_expenses, libpq_dsn(database_url), failing())

    with psycopg.connect(libpq_dsn(database_url)) as connection:
        for table in ("expenses", "expense_tags", "ledger_entries"):
            row = connection.execute(f"SELECT count(*) FROM ledger.{table}").fetchone()
            assert row == (0,), table
