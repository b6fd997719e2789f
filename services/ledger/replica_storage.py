"""Storage of a consumer's copy of the ledger's expenses (billing and ds keep one): the
table's shape is each consumer's own (its migrations own it), these read and write it.

The table has the columns user_id, expense_id, amount_minor, currency, spent_on,
category_id, merchant, merchant_key, source, version, deleted and updated_at."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Table, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from services.ledger.replica import ExpenseKey, ExpenseLine, StoredExpense

CHUNK = 500
_KEY_COLUMNS = ("user_id", "expense_id")


def expense_line(row: Any) -> ExpenseLine:
    return ExpenseLine(
        expense_id=row.expense_id,
        amount_minor=row.amount_minor,
        currency=row.currency,
        spent_on=row.spent_on,
        category_id=row.category_id,
        merchant=row.merchant,
        source=row.source,
        version=row.version,
    )


async def load_copies(
    session: AsyncSession, table: Table, keys: Collection[ExpenseKey]
) -> dict[ExpenseKey, StoredExpense]:
    found: dict[ExpenseKey, StoredExpense] = {}
    ordered = sorted(keys)
    for start in range(0, len(ordered), CHUNK):
        chunk = ordered[start : start + CHUNK]
        query = table.select().where(tuple_(table.c.user_id, table.c.expense_id).in_(chunk))
        for row in await session.execute(query):
            found[(row.user_id, row.expense_id)] = StoredExpense(expense_line(row), bool(row.deleted))
    return found


async def save_copies(
    session: AsyncSession,
    table: Table,
    copies: Mapping[ExpenseKey, StoredExpense],
    merchant_keys: Mapping[ExpenseKey, str],
    now: datetime,
) -> None:
    """Upserts the copies, in key order (two writers of overlapping rows lock them alike)."""
    if not copies:
        return
    rows = [
        {
            "user_id": user_id,
            "expense_id": expense_id,
            "amount_minor": copy.line.amount_minor,
            "currency": copy.line.currency,
            "spent_on": copy.line.spent_on,
            "category_id": copy.line.category_id,
            "merchant": copy.line.merchant,
            "merchant_key": merchant_keys[(user_id, expense_id)],
            "source": copy.line.source,
            "version": copy.line.version,
            "deleted": copy.deleted,
            "updated_at": now,
        }
        for (user_id, expense_id), copy in sorted(copies.items())
    ]
    dialect = postgresql if session.bind.dialect.name == "postgresql" else sqlite
    for start in range(0, len(rows), CHUNK):
        statement = dialect.insert(table).values(rows[start : start + CHUNK])
        replaced = {name: statement.excluded[name] for name in rows[0] if name not in _KEY_COLUMNS}
        await session.execute(
            statement.on_conflict_do_update(index_elements=list(_KEY_COLUMNS), set_=replaced)
        )
