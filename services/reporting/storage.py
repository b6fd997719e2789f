"""reporting's tables and the queries on them.

- Rollups: `category_totals` and `merchant_totals`, per (user, grain, period_start,
  category, currency[, merchant]): sum_minor, count, at two grains: "day" and
  "month". Week reports read days; month and year reports read months (a month's
  series of days reads days), so no report touches more than ~31 rows per
  category or merchant and period. One table per kind keeps an event at two upserts.
- `expenses`: reporting's copy of each expense as the ledger events describe it
  (with the ledger's version; deleted ones stay as tombstones). It makes applying
  an event exact whatever the order or repetition, and it is what the CSV export
  reads; reports never read it.
- `categories` and `profiles`: names, parents and preferences from events."""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date
from functools import cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    Index,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    and_,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from services.kit.db import Database, UtcDateTime
from services.kit.runtime import add_kit_tables
from services.kit.timeutil import utcnow
from services.reporting.domain import (
    MERCHANT_KEY_LENGTH,
    CategoryInfo,
    CategoryTree,
    ExpenseLine,
    MerchantTotal,
    Rollup,
    RollupDeltas,
    StoredExpense,
    Total,
)

Id = String(64)
# Rows per multi-row statement (well under both engines' bound-parameter limits).
CHUNK = 500

metadata = MetaData()
outbox_table, inbox_table = add_kit_tables(metadata)

expenses = Table(
    "expenses",
    metadata,
    Column("user_id", Id, nullable=False),
    Column("expense_id", Id, nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("spent_on", Date, nullable=False),
    Column("category_id", Id, nullable=False),
    Column("merchant", Text, nullable=False),
    Column("source", String(20), nullable=False),
    # The ledger's version of this state; 0 when unknown (a row from a rebuild).
    Column("version", BigInteger, nullable=False),
    Column("deleted", Boolean, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    PrimaryKeyConstraint("user_id", "expense_id"),
    Index("ix_expenses_user_spent_on", "user_id", "spent_on"),
    Index("ix_expenses_user_category", "user_id", "category_id"),
)

categories = Table(
    "categories",
    metadata,
    Column("user_id", Id, nullable=False),
    Column("category_id", Id, nullable=False),
    Column("name", String(200), nullable=False),
    Column("parent_id", Id, nullable=False),
    Column("deleted", Boolean, nullable=False),
    Column("reassigned_to", Id, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    PrimaryKeyConstraint("user_id", "category_id"),
)

profiles = Table(
    "profiles",
    metadata,
    Column("user_id", Id, primary_key=True),
    Column("default_currency", String(3), nullable=False),
    Column("time_zone", String(64), nullable=False),
    Column("first_day_of_week", String(16), nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)


def _rollup_table(name: str, with_merchant: bool) -> Table:
    keys = [
        "user_id",
        "grain",
        "period_start",
        "category_id",
        "currency",
        *(["merchant"] if with_merchant else []),
    ]
    return Table(
        name,
        metadata,
        Column("user_id", Id, nullable=False),
        # "day" or "month"; period_start is the day, or the first day of the month.
        Column("grain", String(5), nullable=False),
        Column("period_start", Date, nullable=False),
        Column("category_id", Id, nullable=False),
        Column("currency", String(3), nullable=False),
        *([Column("merchant", String(MERCHANT_KEY_LENGTH), nullable=False)] if with_merchant else []),
        Column("sum_minor", BigInteger, nullable=False),
        Column("count", BigInteger, nullable=False),
        PrimaryKeyConstraint(*keys),
    )


category_totals = _rollup_table("category_totals", with_merchant=False)
merchant_totals = _rollup_table("merchant_totals", with_merchant=True)
# Each rollup: its table and grain.
ROLLUPS: dict[Rollup, tuple[Table, str]] = {
    Rollup.DAILY_CATEGORY: (category_totals, "day"),
    Rollup.MONTHLY_CATEGORY: (category_totals, "month"),
    Rollup.DAILY_MERCHANT: (merchant_totals, "day"),
    Rollup.MONTHLY_MERCHANT: (merchant_totals, "month"),
}


def _dialect_insert(session: AsyncSession) -> Any:
    return (postgresql if session.bind.dialect.name == "postgresql" else sqlite).insert


def _chunks(rows: Sequence[dict[str, Any]]) -> Iterable[Sequence[dict[str, Any]]]:
    for start in range(0, len(rows), CHUNK):
        yield rows[start : start + CHUNK]


async def _execute(session: AsyncSession, statement: Any, parameters: Any = None) -> Any:
    """Core statements straight on the session's connection: the ORM execution
    path costs ~60 % more CPU per statement, which bounds how fast events apply."""
    connection = await session.connection()
    return await connection.execute(statement, parameters)


@asynccontextmanager
async def read_snapshot(db: Database) -> AsyncIterator[AsyncSession]:
    """A read transaction whose queries all see the same committed state."""
    async with db.sessions() as session, session.begin():
        if db.is_postgres:
            await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        yield session


# ------------------------------------------------------------ rollups


def _rollup_rows(user_id: str, deltas: RollupDeltas) -> dict[Table, list[dict[str, Any]]]:
    """The rows to add, per table (both grains of a table go in one statement)."""
    rows: dict[Table, list[dict[str, Any]]] = {category_totals: [], merchant_totals: []}
    for rollup, changes in deltas.items():
        table, grain = ROLLUPS[rollup]
        for (period_start, category_id, currency, merchant), total in changes.items():
            row = {"user_id": user_id, "grain": grain, "period_start": period_start}
            row |= {"category_id": category_id, "currency": currency}
            if table is merchant_totals:
                row["merchant"] = merchant
            rows[table].append(row | {"sum_minor": total.sum_minor, "count": total.count})
    return rows


@cache
def _adding_upsert(dialect: str, table: Table) -> Any:
    """INSERT ... ON CONFLICT DO UPDATE adding to sum_minor and count; built once,
    executed with a list of rows."""
    insert = (postgresql if dialect == "postgresql" else sqlite).insert(table)
    return insert.on_conflict_do_update(
        index_elements=[column.name for column in table.primary_key.columns],
        set_={
            "sum_minor": table.c.sum_minor + insert.excluded.sum_minor,
            "count": table.c.count + insert.excluded.count,
        },
    )


async def apply_deltas(session: AsyncSession, user_id: str, deltas: RollupDeltas) -> None:
    """Adds each delta to its rollup row (creating it), then drops rows left empty."""
    for table, rows in _rollup_rows(user_id, deltas).items():
        if not rows:
            continue
        await _execute(session, _adding_upsert(session.bind.dialect.name, table), rows)
        emptied = sorted({row["period_start"] for row in rows if row["count"] < 0})
        if emptied:
            await _execute(
                session,
                delete(table).where(
                    table.c.user_id == user_id, table.c.count == 0, table.c.period_start.in_(emptied)
                ),
            )


async def insert_rollups(session: AsyncSession, user_id: str, deltas: RollupDeltas) -> None:
    """Writes freshly computed rollups (the user's old rows must be gone)."""
    for table, rows in _rollup_rows(user_id, deltas).items():
        for chunk in _chunks(rows):
            await _execute(session, table.insert(), list(chunk))


# ------------------------------------------------------------ expense copies


# ExpenseLine's fields, in order.
EXPENSE_LINE_COLUMNS = (
    "expense_id",
    "amount_minor",
    "currency",
    "spent_on",
    "category_id",
    "merchant",
    "source",
    "version",
)


def _line(row: Any) -> ExpenseLine:
    return ExpenseLine(
        expense_id=row.expense_id,
        amount_minor=int(row.amount_minor),
        currency=row.currency,
        spent_on=row.spent_on,
        category_id=row.category_id,
        merchant=row.merchant,
        source=row.source,
        version=int(row.version),
    )


def _expense_values(stored: StoredExpense) -> dict[str, Any]:
    line = stored.line
    return {
        "amount_minor": line.amount_minor,
        "currency": line.currency,
        "spent_on": line.spent_on,
        "category_id": line.category_id,
        "merchant": line.merchant,
        "source": line.source,
        "version": line.version,
        "deleted": stored.deleted,
        "updated_at": utcnow(),
    }


async def load_expense(session: AsyncSession, user_id: str, expense_id: str) -> StoredExpense | None:
    """The stored copy, locked (PostgreSQL) until the transaction ends, so two
    processes applying events of one expense take turns."""
    query = (
        select(expenses)
        .where(expenses.c.user_id == user_id, expenses.c.expense_id == expense_id)
        .with_for_update()
    )
    row = (await _execute(session, query)).first()
    return StoredExpense(_line(row), bool(row.deleted)) if row else None


async def save_expense(session: AsyncSession, user_id: str, stored: StoredExpense, existed: bool) -> None:
    """A plain INSERT for a new copy: a concurrent writer of the same expense
    fails on the primary key and its event is redelivered, instead of both counting."""
    values = _expense_values(stored)
    if existed:
        await _execute(
            session,
            update(expenses)
            .where(expenses.c.user_id == user_id, expenses.c.expense_id == stored.line.expense_id)
            .values(**values),
        )
    else:
        await _execute(
            session, expenses.insert().values(user_id=user_id, expense_id=stored.line.expense_id, **values)
        )


async def expense_lines(
    session: AsyncSession, user_id: str, start: date, end: date, limit: int | None = None
) -> list[ExpenseLine]:
    """Live expenses spent in [start, end], by date then id; at most `limit`."""
    columns = [expenses.c[name] for name in EXPENSE_LINE_COLUMNS]
    query = (
        select(*columns)
        .where(
            expenses.c.user_id == user_id,
            expenses.c.spent_on.between(start, end),
            expenses.c.deleted.is_(False),
        )
        .order_by(expenses.c.spent_on, expenses.c.expense_id)
    )
    if limit is not None:
        query = query.limit(limit)
    return [ExpenseLine(*row) for row in (await _execute(session, query)).all()]


# ------------------------------------------------------------ rebuild


async def clear_user(session: AsyncSession, user_id: str) -> None:
    """Deletes the user's expense copies and rollups (their rows stay locked
    until the rebuild commits, so concurrent events wait and then re-apply)."""
    await _execute(session, delete(expenses).where(expenses.c.user_id == user_id))
    for table in (category_totals, merchant_totals):
        await _execute(session, delete(table).where(table.c.user_id == user_id))


async def insert_expenses(session: AsyncSession, user_id: str, lines: Sequence[ExpenseLine]) -> None:
    rows = [
        {"user_id": user_id, "expense_id": line.expense_id, **_expense_values(StoredExpense(line))}
        for line in lines
    ]
    for chunk in _chunks(rows):
        await _execute(session, expenses.insert(), list(chunk))


async def replace_categories(session: AsyncSession, user_id: str, current: Sequence[CategoryInfo]) -> None:
    """The ledger's live categories; those it no longer has are kept, marked deleted
    (their reassignment may still route late events)."""
    await _execute(
        session,
        update(categories).where(categories.c.user_id == user_id).values(deleted=True, updated_at=utcnow()),
    )
    for category in current:
        await save_category(session, user_id, category)


async def known_users(session: AsyncSession) -> set[str]:
    found = await _execute(
        session, select(expenses.c.user_id).distinct().union(select(categories.c.user_id).distinct())
    )
    return {row[0] for row in found.all()}


# ------------------------------------------------------------ categories and profiles


async def save_category(session: AsyncSession, user_id: str, category: CategoryInfo) -> None:
    values = {
        "name": category.name,
        "parent_id": category.parent_id,
        "deleted": category.deleted,
        "reassigned_to": category.reassigned_to,
        "updated_at": utcnow(),
    }
    insert = _dialect_insert(session)(categories).values(
        user_id=user_id, category_id=category.category_id, **values
    )
    await _execute(
        session, insert.on_conflict_do_update(index_elements=["user_id", "category_id"], set_=values)
    )


async def category_tree(session: AsyncSession, user_id: str) -> CategoryTree:
    rows = (await _execute(session, select(categories).where(categories.c.user_id == user_id))).all()
    return CategoryTree(
        CategoryInfo(row.category_id, row.name, row.parent_id, bool(row.deleted), row.reassigned_to)
        for row in rows
    )


@dataclass(frozen=True)
class StoredProfile:
    default_currency: str
    time_zone: str
    first_day_of_week: str


async def save_profile(session: AsyncSession, user_id: str, profile: StoredProfile) -> None:
    values = {
        "default_currency": profile.default_currency,
        "time_zone": profile.time_zone,
        "first_day_of_week": profile.first_day_of_week,
        "updated_at": utcnow(),
    }
    insert = _dialect_insert(session)(profiles).values(user_id=user_id, **values)
    await _execute(session, insert.on_conflict_do_update(index_elements=["user_id"], set_=values))


async def load_profile(session: AsyncSession, user_id: str) -> StoredProfile | None:
    row = (await _execute(session, select(profiles).where(profiles.c.user_id == user_id))).first()
    return StoredProfile(row.default_currency, row.time_zone, row.first_day_of_week) if row else None


# ------------------------------------------------------------ report queries


def _where(rollup: Rollup, user_id: str, start: date, end: date, category_ids: Iterable[str] | None) -> Any:
    table, grain = ROLLUPS[rollup]
    condition = and_(
        table.c.user_id == user_id, table.c.grain == grain, table.c.period_start.between(start, end)
    )
    if category_ids is not None:
        condition = and_(condition, table.c.category_id.in_(sorted(category_ids)))
    return condition


def _total(sum_minor: Any, count: Any) -> Total:
    # PostgreSQL's SUM(bigint) is numeric (a Decimal here); both are exact integers.
    return Total(int(sum_minor), int(count))


async def bucket_totals(
    session: AsyncSession,
    rollup: Rollup,
    user_id: str,
    buckets: Sequence[tuple[date, date]],
    category_ids: Iterable[str] | None = None,
) -> dict[tuple[int, str, str], Total]:
    """(bucket index, currency, category_id) -> total, for contiguous date ranges
    (the days of a month, the months of a year, the periods of a trend). The
    database sums per row date; rows go to their bucket here (a CASE with one
    branch per bucket costs more to build and bind than the whole query)."""
    table, _ = ROLLUPS[rollup]
    query = (
        select(
            table.c.period_start,
            table.c.currency,
            table.c.category_id,
            func.sum(table.c.sum_minor),
            func.sum(table.c.count),
        )
        .where(_where(rollup, user_id, buckets[0][0], buckets[-1][1], category_ids))
        .group_by(table.c.period_start, table.c.currency, table.c.category_id)
    )
    starts = [start for start, _ in buckets]
    totals: dict[tuple[int, str, str], Total] = defaultdict(Total)
    for period_start, currency, category_id, sum_minor, count in (await _execute(session, query)).all():
        index = bisect_right(starts, period_start) - 1
        totals[(index, currency, category_id)] += _total(sum_minor, count)
    return totals


async def currency_totals(
    session: AsyncSession,
    rollup: Rollup,
    user_id: str,
    start: date,
    end: date,
    category_ids: Iterable[str] | None = None,
) -> dict[str, Total]:
    table, _ = ROLLUPS[rollup]
    query = (
        select(table.c.currency, func.sum(table.c.sum_minor), func.sum(table.c.count))
        .where(_where(rollup, user_id, start, end, category_ids))
        .group_by(table.c.currency)
    )
    return {currency: _total(s, n) for currency, s, n in (await _execute(session, query)).all()}


async def top_merchants(
    session: AsyncSession,
    rollup: Rollup,
    user_id: str,
    start: date,
    end: date,
    limit: int,
    category_ids: Iterable[str] | None = None,
) -> dict[str, list[MerchantTotal]]:
    """Per currency, the `limit` merchants with the largest totals. The database
    ranks by amount only (ties share a rank, so all tied rows come back); names
    break ties here, so the order is the same on every engine and collation."""
    table, _ = ROLLUPS[rollup]
    grouped = (
        select(
            table.c.currency,
            table.c.merchant,
            func.sum(table.c.sum_minor).label("total"),
            func.sum(table.c.count).label("n"),
        )
        .where(_where(rollup, user_id, start, end, category_ids))
        .group_by(table.c.currency, table.c.merchant)
        .subquery()
    )
    ranked = select(
        grouped,
        func.rank().over(partition_by=grouped.c.currency, order_by=grouped.c.total.desc()).label("place"),
    ).subquery()
    query = select(ranked.c.currency, ranked.c.merchant, ranked.c.total, ranked.c.n).where(
        ranked.c.place <= limit
    )
    found: dict[str, list[MerchantTotal]] = {}
    for currency, merchant, total, count in (await _execute(session, query)).all():
        found.setdefault(currency, []).append(MerchantTotal(merchant, _total(total, count)))
    return {
        currency: sorted(merchants, key=lambda m: (-m.total.sum_minor, m.merchant))[:limit]
        for currency, merchants in found.items()
    }
