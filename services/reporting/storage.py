"""reporting's tables and the queries on them.

- Rollups: `category_totals` and `merchant_totals`, per (user, grain, period_start,
  category, currency[, merchant]): sum_minor, count, at three grains: "day",
  "month" and "year". A report's totals read the period's own grain (days for a
  week), its series the days of a week or month or the months of a year, so no
  report touches more than ~31 rows per category or merchant and period. One table
  per kind keeps an event at two upserts.
- `expenses`: reporting's copy of each expense as the ledger events describe it
  (with the ledger's version; deleted ones stay as tombstones). It makes applying
  an event exact whatever the order or repetition, and it is what the CSV export
  reads; reports never read it.
- `categories` and `profiles`: names, parents and preferences from events."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
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
    any_,
    bindparam,
    cast,
    delete,
    func,
    literal,
    literal_column,
    null,
    or_,
    select,
    tuple_,
    type_coerce,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from services.kit.db.engine import Queryable, UtcDateTime
from services.kit.db.erasure import erased_users_table
from services.kit.db.sql import execute_rows, insert_ignore, rows_insert, upsert_if_newer
from services.kit.domain.timestamps import utcnow
from services.kit.events.tables import add_event_tables
from services.ledger.replica import CategoryInfo, CategoryTree, ExpenseKey, ExpenseLine, StoredExpense
from services.reporting.domain import (
    MERCHANT_KEY_LENGTH,
    MerchantTotal,
    PeriodRows,
    Rollup,
    RollupDeltas,
    Total,
)

Id = String(64)
# Rows per multi-row statement (well under both engines' bound-parameter limits).
CHUNK = 500

metadata = MetaData()
outbox_table, inbox_table = add_event_tables(metadata)
erased_users = erased_users_table(metadata)
Index("ix_erased_users_erased_at", erased_users.c.erased_at)

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
# Expenses the ledger deleted, kept so that older events of them stay ignored; the
# retention purge deletes them by updated_at (reporting/server.py).
tombstones = expenses.c.deleted
Index("ix_expenses_tombstones", expenses.c.updated_at, postgresql_where=tombstones, sqlite_where=tombstones)

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
    # BCP 47; "" when the profile event did not say (then [user.defaults]).
    Column("locale", String(35), nullable=False, server_default=""),
    Column("updated_at", UtcDateTime, nullable=False),
    # ProfileUpdated.version of the event applied: an event not above it is an older one
    # redelivered, and ignored (0: none applied, or from a user service without versions).
    Column("version", BigInteger, nullable=False, server_default="0"),
)

# One row per (user, month) whose report.monthly_ready event was published: the key
# that makes it once per user and month, whatever replicas and rounds do.
monthly_reports = Table(
    "monthly_reports",
    metadata,
    Column("user_id", Id, nullable=False),
    # "2026-11"
    Column("month", String(7), nullable=False),
    Column("published_at", UtcDateTime, nullable=False),
    PrimaryKeyConstraint("user_id", "month"),
)

# A lease per background job: one replica at a time runs it (as in billing).
leases = Table(
    "leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(128), nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
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
        # "day", "month" or "year"; period_start is the day, or the first day of the month or year.
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
    Rollup.YEARLY_CATEGORY: (category_totals, "year"),
    Rollup.DAILY_MERCHANT: (merchant_totals, "day"),
    Rollup.MONTHLY_MERCHANT: (merchant_totals, "month"),
    Rollup.YEARLY_MERCHANT: (merchant_totals, "year"),
}


def _dialect_insert(session: AsyncSession) -> Any:
    return (postgresql if session.bind.dialect.name == "postgresql" else sqlite).insert


def _chunks(rows: Sequence[dict[str, Any]]) -> Iterable[Sequence[dict[str, Any]]]:
    for start in range(0, len(rows), CHUNK):
        yield rows[start : start + CHUNK]


async def _execute(db: Queryable, statement: Any, parameters: Any = None) -> Any:
    """Core statements straight on the connection (a session's, in a transaction):
    the ORM execution path costs ~60 % more CPU per statement, which bounds how
    fast events apply."""
    connection = await db.connection() if isinstance(db, AsyncSession) else db
    return await connection.execute(statement, parameters)


# ------------------------------------------------------------ rollups


def _rollup_rows(deltas: Mapping[str, RollupDeltas]) -> dict[Table, list[dict[str, Any]]]:
    """The rows to add, per table (every user and grain of a table go in one
    statement), in key order: concurrent transactions then lock rows in the same
    order instead of deadlocking."""
    rows: dict[Table, list[dict[str, Any]]] = {category_totals: [], merchant_totals: []}
    for user_id, user_deltas in deltas.items():
        for rollup, changes in user_deltas.items():
            table, grain = ROLLUPS[rollup]
            for (period_start, category_id, currency, merchant), total in changes.items():
                row = {"user_id": user_id, "grain": grain, "period_start": period_start}
                row |= {"category_id": category_id, "currency": currency}
                if table is merchant_totals:
                    row["merchant"] = merchant
                rows[table].append(row | {"sum_minor": total.sum_minor, "count": total.count})
    for table, table_rows in rows.items():
        keys = [column.name for column in table.primary_key.columns]
        table_rows.sort(key=lambda row: [row[key] for key in keys])
    return rows


@cache
def _adding_upsert(dialect: str, table: Table) -> Any:
    """INSERT ... ON CONFLICT DO UPDATE adding to sum_minor and count, of any
    number of rows in one statement; built once."""
    insert = rows_insert(dialect, table)
    return insert.on_conflict_do_update(
        index_elements=[column.name for column in table.primary_key.columns],
        set_={
            "sum_minor": table.c.sum_minor + insert.excluded.sum_minor,
            "count": table.c.count + insert.excluded.count,
        },
    )


async def apply_deltas(session: AsyncSession, deltas: Mapping[str, RollupDeltas]) -> None:
    """Adds each user's deltas to their rollup rows (creating them), then drops rows
    left empty: at most two statements per table, however many users and rows."""
    dialect = session.bind.dialect.name
    for table, rows in _rollup_rows(deltas).items():
        if not rows:
            continue
        await execute_rows(session, _adding_upsert(dialect, table), table, rows)
        shrunk = [row for row in rows if row["count"] < 0]
        if shrunk:
            # Users x days is wider than the rows that shrank, but only rows of this
            # transaction can have a zero count: every committed one has expenses.
            parameters = {
                "users": sorted({row["user_id"] for row in shrunk}),
                "days": sorted({row["period_start"] for row in shrunk}),
            }
            await _execute(session, _emptied_rows(dialect, table), parameters)


@cache
def _emptied_rows(dialect: str, table: Table) -> Any:
    return delete(table).where(
        _one_of(dialect, table.c.user_id, "users"),
        _one_of(dialect, table.c.period_start, "days"),
        table.c.count == 0,
    )


def _one_of(dialect: str, column: Column[Any], name: str) -> Any:
    """`column IN (the list bound as name)`. PostgreSQL gets one array (= ANY), so the
    statement's text is the same for any list: psycopg parses it and PostgreSQL
    plans it once, instead of once per batch."""
    if dialect == "postgresql":
        return column == any_(bindparam(name, type_=postgresql.ARRAY(column.type)))
    return column.in_(bindparam(name, expanding=True))


async def insert_rollups(session: AsyncSession, user_id: str, deltas: RollupDeltas) -> None:
    """Writes freshly computed rollups (the user's old rows must be gone)."""
    for table, rows in _rollup_rows({user_id: deltas}).items():
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


async def load_expenses(
    session: AsyncSession, keys: Collection[ExpenseKey]
) -> dict[ExpenseKey, StoredExpense]:
    """The stored copies, locked (PostgreSQL) until the transaction ends, so two
    processes applying events of one expense take turns; in key order, so two
    batches sharing expenses wait for each other instead of deadlocking."""
    if not keys:
        return {}
    dialect = session.bind.dialect.name
    found = await _execute(session, _copies_query(dialect), _copies_parameters(dialect, sorted(keys)))
    return {(row.user_id, row.expense_id): StoredExpense(_line(row), bool(row.deleted)) for row in found}


@cache
def _copies_query(dialect: str) -> Any:
    key = tuple_(expenses.c.user_id, expenses.c.expense_id)
    if dialect == "postgresql":
        # Two arrays rather than two parameters per expense, as in _one_of.
        wanted = select(
            func.unnest(bindparam("user_ids", type_=postgresql.ARRAY(String()))),
            func.unnest(bindparam("expense_ids", type_=postgresql.ARRAY(String()))),
        )
        condition = key.in_(wanted)
    else:
        condition = key.in_(bindparam("keys", expanding=True))
    order = (expenses.c.user_id, expenses.c.expense_id)
    return select(expenses).where(condition).order_by(*order).with_for_update()


def _copies_parameters(dialect: str, keys: list[ExpenseKey]) -> dict[str, list[Any]]:
    if dialect == "postgresql":
        return {"user_ids": [user_id for user_id, _ in keys], "expense_ids": [expense for _, expense in keys]}
    return {"keys": keys}


@cache
def _replacing_upsert(dialect: str) -> Any:
    insert = rows_insert(dialect, expenses)
    keys = [column.name for column in expenses.primary_key.columns]
    return insert.on_conflict_do_update(
        index_elements=keys,
        set_={
            column.name: insert.excluded[column.name]
            for column in expenses.columns
            if column.name not in keys
        },
    )


async def save_expenses(
    session: AsyncSession, copies: Mapping[ExpenseKey, StoredExpense], existing: Collection[ExpenseKey]
) -> None:
    """New copies go in with a plain INSERT: a concurrent writer of the same new
    expense fails on the primary key and its events are applied again, instead of
    both counting. The `existing` ones (locked by load_expenses) are replaced."""
    new: list[dict[str, Any]] = []
    replaced: list[dict[str, Any]] = []
    for key in sorted(copies):
        row = {"user_id": key[0], "expense_id": key[1], **_expense_values(copies[key])}
        (replaced if key in existing else new).append(row)
    dialect = session.bind.dialect.name
    if new:
        await execute_rows(session, rows_insert(dialect, expenses), expenses, new)
    if replaced:
        await execute_rows(session, _replacing_upsert(dialect), expenses, replaced)


async def expense_lines(
    db: Queryable, user_id: str, start: date, end: date, limit: int | None = None
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
    return [ExpenseLine(*row) for row in (await _execute(db, query)).all()]


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


_user_categories = select(
    categories.c.category_id,
    categories.c.name,
    categories.c.parent_id,
    categories.c.deleted,
    categories.c.reassigned_to,
).where(categories.c.user_id == bindparam("user_id"))


async def category_tree(db: Queryable, user_id: str) -> CategoryTree:
    rows = await _execute(db, _user_categories, {"user_id": user_id})
    return CategoryTree(
        CategoryInfo(category_id, name, parent_id, bool(deleted), reassigned_to)
        for category_id, name, parent_id, deleted, reassigned_to in rows
    )


@dataclass(frozen=True)
class StoredProfile:
    default_currency: str
    time_zone: str
    first_day_of_week: str
    locale: str = ""


async def save_profile(session: AsyncSession, user_id: str, profile: StoredProfile, version: int) -> bool:
    """The profile at `version`, unless the copy holds this version or a newer one; True when saved."""
    values = {
        "default_currency": profile.default_currency,
        "time_zone": profile.time_zone,
        "first_day_of_week": profile.first_day_of_week,
        "locale": profile.locale,
        "updated_at": utcnow(),
    }
    row = {"user_id": user_id, "version": version, **values}
    return await upsert_if_newer(session, profiles, row, values, "version")


async def expense_version(db: Queryable, user_id: str, expense_id: str) -> int | None:
    """The ledger version of reporting's copy of an expense; None when it has none."""
    statement = select(expenses.c.version).where(
        expenses.c.user_id == user_id, expenses.c.expense_id == expense_id
    )
    return (await _execute(db, statement)).scalar()


async def load_profile(db: Queryable, user_id: str) -> StoredProfile | None:
    row = (await _execute(db, select(profiles).where(profiles.c.user_id == user_id))).first()
    if row is None:
        return None
    return StoredProfile(row.default_currency, row.time_zone, row.first_day_of_week, row.locale)


# ------------------------------------------------------------ report queries

# What each row of a period report's statement is (its `part` column).
_BUCKET, _CATEGORY, _PREVIOUS, _MERCHANT = "bucket", "category", "previous", "merchant"


@dataclass(frozen=True)
class PeriodReads:
    """Which rollups answer a period report: `series`, category rows whose
    period_start is a series bucket (days of a week or month, months of a year);
    `totals`, category rows that tile the period and the one before; `merchants`,
    merchant rows that tile the period."""

    series: Rollup
    totals: Rollup
    merchants: Rollup
    start: date
    end: date
    previous_start: date
    previous_end: date
    top_merchants: int


async def period_rows(
    db: Queryable, user_id: str, reads: PeriodReads, category_ids: Collection[str] | None = None
) -> PeriodRows:
    """What a period report reads from the rollups (of these categories only, when
    given): one statement, so its figures agree without a transaction, summed by
    the database into a few rows per currency (one per category, bucket, merchant)."""
    parameters = {
        "user_id": user_id,
        "series_grain": ROLLUPS[reads.series][1],
        "totals_grain": ROLLUPS[reads.totals][1],
        "merchants_grain": ROLLUPS[reads.merchants][1],
        "start": reads.start,
        "end": reads.end,
        "previous_start": reads.previous_start,
        "previous_end": reads.previous_end,
        "top_merchants": reads.top_merchants,
    }
    if category_ids is not None:
        parameters["category_ids"] = sorted(category_ids)
    statement = _period_statement(_dialect(db), category_ids is not None)
    rows = (await _execute(db, statement, parameters)).all()
    return _period_rows(rows, reads.top_merchants)


def _period_rows(rows: Iterable[Any], top_merchants: int) -> PeriodRows:
    buckets: dict[tuple[str, date], Total] = {}
    categories: dict[tuple[str, str], Total] = {}
    previous: dict[str, Total] = {}
    merchants: dict[str, list[MerchantTotal]] = defaultdict(list)
    for part, currency, key, day, sum_minor, count in rows:
        total = Total(sum_minor, count)
        if part == _BUCKET:
            buckets[(currency, day)] = total
        elif part == _CATEGORY:
            categories[(currency, key)] = total
        elif part == _PREVIOUS:
            previous[currency] = total
        else:
            merchants[currency].append(MerchantTotal(key, total))
    # The database ranks by amount only (tied rows share a place, so all of them come
    # back); names break ties here, so the order is the same on every engine and collation.
    top = {
        currency: sorted(found, key=lambda m: (-m.total.sum_minor, m.merchant))[:top_merchants]
        for currency, found in merchants.items()
    }
    return PeriodRows(categories=categories, buckets=buckets, previous=previous, merchants=top)


@cache
def _period_statement(dialect: str, filtered: bool) -> Any:
    """The UNION ALL of period_rows' four groupings (SQLite has no GROUPING SETS),
    built once per dialect and filter; grains and dates are parameters."""

    def where(table: Table, grain: str, start: str, end: str) -> list[Any]:
        condition = [
            table.c.user_id == bindparam("user_id"),
            table.c.grain == bindparam(grain),
            table.c.period_start.between(bindparam(start), bindparam(end)),
        ]
        return [*condition, _one_of(dialect, table.c.category_id, "category_ids")] if filtered else condition

    totals, merchants = category_totals, merchant_totals
    # First: its columns type the result (PostgreSQL resolves the NULLs below by it,
    # and SQLite's text dates are parsed as the Date column they come from).
    buckets = (
        select(_part(_BUCKET), totals.c.currency, null().label("key"), totals.c.period_start.label("day"))
        .add_columns(*_sums(totals))
        .where(*where(totals, "series_grain", "start", "end"))
        .group_by(totals.c.currency, totals.c.period_start)
    )
    by_category = (
        select(_part(_CATEGORY), totals.c.currency, totals.c.category_id, null(), *_sums(totals))
        .where(*where(totals, "totals_grain", "start", "end"))
        .group_by(totals.c.currency, totals.c.category_id)
    )
    previous = (
        select(_part(_PREVIOUS), totals.c.currency, null(), null(), *_sums(totals))
        .where(*where(totals, "totals_grain", "previous_start", "previous_end"))
        .group_by(totals.c.currency)
    )
    grouped = (
        select(merchants.c.currency, merchants.c.merchant, *_sums(merchants))
        .where(*where(merchants, "merchants_grain", "start", "end"))
        .group_by(merchants.c.currency, merchants.c.merchant)
        .subquery("grouped")
    )
    place = func.rank().over(partition_by=grouped.c.currency, order_by=grouped.c.sum_minor.desc())
    ranked = select(grouped, place.label("place")).subquery("ranked")
    top = select(
        _part(_MERCHANT), ranked.c.currency, ranked.c.merchant, null(), ranked.c.sum_minor, ranked.c.count
    ).where(ranked.c.place <= bindparam("top_merchants"))
    return union_all(buckets, by_category, previous, top)


def _part(name: str) -> Any:
    return literal_column(f"'{name}'").label("part")


def _sums(table: Table) -> list[Any]:
    # SUM(bigint) is numeric on PostgreSQL (a Decimal to convert here); the cast keeps
    # plain integers. A report's sum overflows bigint only past ~9.2e18 minor units.
    return [
        cast(func.sum(table.c.sum_minor), BigInteger).label("sum_minor"),
        cast(func.sum(table.c.count), BigInteger).label("count"),
    ]


def _dialect(db: Queryable) -> str:
    return (db.bind if isinstance(db, AsyncSession) else db).dialect.name


async def bucket_totals(
    db: Queryable, rollup: Rollup, user_id: str, start: date, end: date, *, weeks: bool
) -> dict[tuple[date, str, str], Total]:
    """(first day of the bucket, currency, category_id) -> total, from a category
    rollup's rows in [start, end]: per 7 days from `start` when `weeks` (the rows
    being days), else per row date (rows at the buckets' own grain)."""
    parameters = {"user_id": user_id, "grain": ROLLUPS[rollup][1], "start": start, "end": end}
    rows = await _execute(db, _bucket_statement(_dialect(db), weeks), parameters)
    return {(bucket, currency, category_id): Total(s, n) for bucket, currency, category_id, s, n in rows}


@cache
def _bucket_statement(dialect: str, weeks: bool) -> Any:
    table = category_totals
    bucket = _week_of(dialect, table.c.period_start) if weeks else table.c.period_start
    return (
        select(bucket.label("bucket"), table.c.currency, table.c.category_id, *_sums(table))
        .where(
            table.c.user_id == bindparam("user_id"),
            table.c.grain == bindparam("grain"),
            table.c.period_start.between(bindparam("start"), bindparam("end")),
        )
        .group_by(bucket, table.c.currency, table.c.category_id)
    )


def _week_of(dialect: str, day: Column[Any]) -> Any:
    """The first day of the 7-day bucket holding `day`, counted from the `start`
    parameter: the database sums a week's days, not Python."""
    start = bindparam("start", type_=Date)
    if dialect == "postgresql":
        return day - (day - start) % 7
    # SQLite keeps dates as 'YYYY-MM-DD' text; its % truncates the day difference to an integer.
    offset = cast((func.julianday(day) - func.julianday(start)) % 7, String)
    return type_coerce(func.date(day, literal("-") + offset + literal(" days")), Date)


# ------------------------------------------------------------ monthly reports


async def take_lease(session: AsyncSession, name: str, holder: str, now: datetime, until: datetime) -> bool:
    """Holds (or renews) the named lease until `until` unless another holder's is current."""
    await insert_ignore(session, leases, {"name": name, "holder": holder, "expires_at": until})
    result = await session.execute(
        update(leases)
        .where(leases.c.name == name, or_(leases.c.holder == holder, leases.c.expires_at < now))
        .values(holder=holder, expires_at=until)
        .returning(leases.c.name)
    )
    return result.first() is not None


async def users_with_monthly_spending(db: Queryable, since: date, after: str, limit: int) -> list[str]:
    """Users with spending in a month starting on or after `since`, by id after `after`."""
    query = (
        select(category_totals.c.user_id)
        .where(
            category_totals.c.grain == "month",
            category_totals.c.period_start >= since,
            category_totals.c.user_id > after,
        )
        .group_by(category_totals.c.user_id)
        .order_by(category_totals.c.user_id)
        .limit(limit)
    )
    return [row[0] for row in (await _execute(db, query)).all()]


async def monthly_report_sent(db: Queryable, user_id: str, month: str) -> bool:
    query = select(monthly_reports.c.month).where(
        monthly_reports.c.user_id == user_id, monthly_reports.c.month == month
    )
    return (await _execute(db, query)).first() is not None


async def claim_monthly_report(session: AsyncSession, user_id: str, month: str, now: datetime) -> bool:
    """False when the (user, month) report was already published."""
    return await insert_ignore(
        session, monthly_reports, {"user_id": user_id, "month": month, "published_at": now}
    )
