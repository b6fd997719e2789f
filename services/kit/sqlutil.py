"""Small SQL helpers that differ between PostgreSQL and SQLite."""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Integer, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

# BIGINT on PostgreSQL, INTEGER on SQLite (only INTEGER PRIMARY KEY autoincrements there).
BigIntId = BigInteger().with_variant(Integer(), "sqlite")


async def insert_ignore(session: AsyncSession, table: Table, values: dict[str, Any]) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING; True when the row was inserted.
    RETURNING tells, since psycopg's async rowcount is -1 for this statement."""
    dialect = postgresql if session.bind.dialect.name == "postgresql" else sqlite
    first_column = next(iter(table.primary_key.columns))
    statement = dialect.insert(table).values(**values).on_conflict_do_nothing().returning(first_column)
    result = await session.execute(statement)
    return result.first() is not None
