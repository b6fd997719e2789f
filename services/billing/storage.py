"""billing's tables and the queries on them.

- `budgets` with `budget_amounts` (an amount per first period it applies to, so a
  new amount changes the current and later periods and history keeps the old ones).
- `expenses` (billing's copy of each expense, from ledger events, with the ledger's
  version; deleted ones stay as tombstones), `daily_spend`, its rollup per (user, day,
  category, currency), and `budget_spend`, each budget's own rollup per (period,
  currency): a budget's status and its rollover read a row per period, whatever the
  history behind it. A budget's rows are recomputed from `daily_spend` when what it
  counts changes (its categories, the user's category tree or first day of week).
- `categories` and `profiles`: the category tree and each user's calendar, from events.
- `bills` and `bill_settlements` (paid or skipped occurrences; the rest is computed
  from the recurrence).
- `alerts` (a unique dedupe_key: one alert per rule and occurrence, whatever the
  concurrency or redelivery), `alert_mutes`, and `leases` for the scheduler."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    delete,
    func,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from services.billing.domain import Alert, Bill, Budget, Settlement
from services.kit.db.engine import Queryable, UtcDateTime
from services.kit.db.erasure import erased_users_table
from services.kit.db.idempotency import idempotency_table
from services.kit.db.sql import insert_ignore, insert_ignore_many, upsert_if_newer
from services.kit.events.tables import add_event_tables
from services.ledger.replica import CategoryInfo, CategoryTree, ExpenseLine
from services.ledger.replica_storage import expense_line

Id = String(64)
# Rows per multi-row statement (well under both engines' bound-parameter limits).
CHUNK = 500

metadata = MetaData()
outbox_table, inbox_table = add_event_tables(metadata)
erased_users = erased_users_table(metadata)
Index("ix_erased_users_erased_at", erased_users.c.erased_at)
idempotency_keys = idempotency_table(metadata)

budgets = Table(
    "budgets",
    metadata,
    Column("budget_id", Id, primary_key=True),
    Column("user_id", Id, nullable=False),
    Column("category_id", Id, nullable=False),
    Column("period", String(8), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("rollover", Boolean, nullable=False),
    # Comma-separated percentages, ascending.
    Column("thresholds", String(100), nullable=False),
    Column("start_date", Date, nullable=False),
    # Grows with each new amount: threshold alerts of the new amount fire afresh.
    Column("arming", Integer, nullable=False),
    Column("version", Integer, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Index("ix_budgets_user", "user_id", "budget_id"),
)

budget_amounts = Table(
    "budget_amounts",
    metadata,
    Column("budget_id", Id, nullable=False),
    # The first day of the first period this amount applies to.
    Column("effective_from", Date, nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    PrimaryKeyConstraint("budget_id", "effective_from"),
)

expenses = Table(
    "expenses",
    metadata,
    Column("user_id", Id, nullable=False),
    Column("expense_id", Id, nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("spent_on", Date, nullable=False),
    Column("category_id", Id, nullable=False),
    Column("merchant", String(2000), nullable=False),
    Column("merchant_key", String(200), nullable=False),
    Column("source", String(16), nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("deleted", Boolean, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    PrimaryKeyConstraint("user_id", "expense_id"),
    Index("ix_expenses_user_category_day", "user_id", "category_id", "spent_on"),
    Index("ix_expenses_user_merchant_day", "user_id", "merchant_key", "spent_on"),
)

daily_spend = Table(
    "daily_spend",
    metadata,
    Column("user_id", Id, nullable=False),
    Column("day", Date, nullable=False),
    Column("category_id", Id, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("sum_minor", BigInteger, nullable=False),
    Column("count", Integer, nullable=False),
    PrimaryKeyConstraint("user_id", "day", "category_id", "currency"),
)

budget_spend = Table(
    "budget_spend",
    metadata,
    Column("budget_id", Id, nullable=False),
    Column("period_start", Date, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("sum_minor", BigInteger, nullable=False),
    Column("count", Integer, nullable=False),
    PrimaryKeyConstraint("budget_id", "period_start", "currency"),
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
    PrimaryKeyConstraint("user_id", "category_id"),
)

profiles = Table(
    "profiles",
    metadata,
    Column("user_id", Id, primary_key=True),
    Column("time_zone", String(64), nullable=False),
    Column("first_day_of_week", String(16), nullable=False),
    # ProfileUpdated.version of the event applied: an event not above it is an older one
    # redelivered, and ignored (0: none applied, or from a user service without versions).
    Column("version", BigInteger, nullable=False, server_default="0"),
)

bills = Table(
    "bills",
    metadata,
    Column("bill_id", Id, primary_key=True),
    Column("user_id", Id, nullable=False),
    Column("payee", String(2000), nullable=False),
    Column("payee_key", String(200), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("category_id", Id, nullable=False),
    Column("recurrence", String(600), nullable=False),
    Column("first_due", Date, nullable=False),
    Column("remind_days_before", Integer, nullable=False),
    Column("autopay", Boolean, nullable=False),
    Column("version", Integer, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Index("ix_bills_user", "user_id", "bill_id"),
)

bill_settlements = Table(
    "bill_settlements",
    metadata,
    Column("bill_id", Id, nullable=False),
    Column("due_on", Date, nullable=False),
    # "paid" or "skipped".
    Column("status", String(8), nullable=False),
    Column("expense_id", Id, nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("settled_at", UtcDateTime, nullable=False),
    PrimaryKeyConstraint("bill_id", "due_on"),
)

alerts = Table(
    "alerts",
    metadata,
    Column("alert_id", Id, primary_key=True),
    Column("user_id", Id, nullable=False),
    Column("type", String(32), nullable=False),
    Column("severity", String(8), nullable=False),
    Column("title", String(500), nullable=False),
    # JSON object of strings.
    Column("details", Text, nullable=False),
    Column("dedupe_key", String(300), nullable=False, unique=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("acknowledged_at", UtcDateTime, nullable=True),
    Index("ix_alerts_user", "user_id", "alert_id"),
)

alert_mutes = Table(
    "alert_mutes",
    metadata,
    Column("user_id", Id, nullable=False),
    Column("rule_type", String(32), nullable=False),
    PrimaryKeyConstraint("user_id", "rule_type"),
)

leases = Table(
    "leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(128), nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
)


def _dialect(session: AsyncSession) -> Any:
    return postgresql if session.bind.dialect.name == "postgresql" else sqlite


# ---------------------------------------------------------------- budgets


def _budget(row: Any, amounts: Sequence[tuple[date, int]]) -> Budget:
    return Budget(
        budget_id=row.budget_id,
        user_id=row.user_id,
        category_id=row.category_id,
        period=row.period,
        currency=row.currency,
        rollover=row.rollover,
        thresholds=tuple(int(part) for part in row.thresholds.split(",") if part),
        start_date=row.start_date,
        amounts=tuple(sorted(amounts)),
        arming=row.arming,
        version=row.version,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def _with_amounts(connection: Queryable, rows: Sequence[Any]) -> list[Budget]:
    if not rows:
        return []
    ids = [row.budget_id for row in rows]
    found = await connection.execute(select(budget_amounts).where(budget_amounts.c.budget_id.in_(ids)))
    amounts: dict[str, list[tuple[date, int]]] = {budget_id: [] for budget_id in ids}
    for amount in found:
        amounts[amount.budget_id].append((amount.effective_from, amount.amount_minor))
    return [_budget(row, amounts[row.budget_id]) for row in rows]


async def load_budgets(
    connection: Queryable, user_id: str, *, after: str = "", limit: int | None = None, lock: bool = False
) -> list[Budget]:
    """The user's budgets in id order (creation order: ids are UUIDv7); `lock` takes
    their rows FOR UPDATE, which serialises rule checks of one user's spending."""
    query = select(budgets).where(budgets.c.user_id == user_id, budgets.c.budget_id > after)
    query = query.order_by(budgets.c.budget_id)
    if limit is not None:
        query = query.limit(limit)
    if lock:
        query = query.with_for_update()
    return await _with_amounts(connection, list(await connection.execute(query)))


async def load_budget(
    connection: Queryable, user_id: str, budget_id: str, *, lock: bool = False
) -> Budget | None:
    query = select(budgets).where(budgets.c.user_id == user_id, budgets.c.budget_id == budget_id)
    if lock:
        query = query.with_for_update()
    found = await _with_amounts(connection, list(await connection.execute(query)))
    return found[0] if found else None


async def budgets_after(connection: Queryable, after: str, limit: int) -> list[Budget]:
    """Everyone's budgets in id order, a page at a time (the scheduler's walk)."""
    query = select(budgets).where(budgets.c.budget_id > after).order_by(budgets.c.budget_id).limit(limit)
    return await _with_amounts(connection, list(await connection.execute(query)))


async def count_budgets(session: AsyncSession, user_id: str) -> int:
    query = select(func.count()).select_from(budgets).where(budgets.c.user_id == user_id)
    return int((await session.execute(query)).scalar_one())


def _budget_row(budget: Budget) -> dict[str, Any]:
    return {
        "budget_id": budget.budget_id,
        "user_id": budget.user_id,
        "category_id": budget.category_id,
        "period": budget.period,
        "currency": budget.currency,
        "rollover": budget.rollover,
        "thresholds": ",".join(str(value) for value in budget.thresholds),
        "start_date": budget.start_date,
        "arming": budget.arming,
        "version": budget.version,
        "created_at": budget.created_at,
        "updated_at": budget.updated_at,
    }


async def save_budget(session: AsyncSession, budget: Budget, *, new: bool) -> None:
    """The budget's row and its amounts (all of them: a budget has a handful)."""
    row = _budget_row(budget)
    if new:
        await session.execute(budgets.insert().values(**row))
    else:
        await session.execute(update(budgets).where(budgets.c.budget_id == budget.budget_id).values(**row))
        await session.execute(delete(budget_amounts).where(budget_amounts.c.budget_id == budget.budget_id))
    await session.execute(
        budget_amounts.insert(),
        [
            {"budget_id": budget.budget_id, "effective_from": start, "amount_minor": amount}
            for start, amount in budget.amounts
        ],
    )


async def delete_budget(session: AsyncSession, budget_id: str) -> None:
    await session.execute(delete(budget_spend).where(budget_spend.c.budget_id == budget_id))
    await session.execute(delete(budget_amounts).where(budget_amounts.c.budget_id == budget_id))
    await session.execute(delete(budgets).where(budgets.c.budget_id == budget_id))


# ---------------------------------------------------------------- spending


async def budget_spending(
    connection: Queryable, budget_ids: Collection[str]
) -> dict[str, dict[tuple[date, str], int]]:
    """Each budget's spending per (period start, currency)."""
    if not budget_ids:
        return {}
    query = select(budget_spend).where(budget_spend.c.budget_id.in_(sorted(budget_ids)))
    found: dict[str, dict[tuple[date, str], int]] = {budget_id: {} for budget_id in budget_ids}
    for row in await connection.execute(query):
        found[row.budget_id][(row.period_start, row.currency)] = row.sum_minor
    return found


async def daily_rows(
    connection: Queryable, user_id: str, members: Collection[str] | None, since: date
) -> list[tuple[date, str, int, int]]:
    """(day, currency, sum, count) of the user's spending since a day in these categories (None: all)."""
    query = (
        select(
            daily_spend.c.day,
            daily_spend.c.currency,
            func.sum(daily_spend.c.sum_minor).label("total"),
            func.sum(daily_spend.c.count).label("n"),
        )
        .where(daily_spend.c.user_id == user_id, daily_spend.c.day >= since)
        .group_by(daily_spend.c.day, daily_spend.c.currency)
    )
    if members is not None:
        query = query.where(daily_spend.c.category_id.in_(sorted(members)))
    return [(row.day, row.currency, int(row.total), int(row.n)) for row in await connection.execute(query)]


async def apply_budget_deltas(
    session: AsyncSession, deltas: Mapping[tuple[str, date, str], tuple[int, int]]
) -> None:
    """Adds (sum, count) per (budget, period start, currency); rows that reach zero go."""
    await _add_sums(session, budget_spend, ["budget_id", "period_start", "currency"], deltas)


async def replace_budget_spending(
    session: AsyncSession, budget_id: str, rows: Mapping[tuple[date, str], tuple[int, int]]
) -> None:
    await session.execute(delete(budget_spend).where(budget_spend.c.budget_id == budget_id))
    if rows:
        await session.execute(
            budget_spend.insert(),
            [
                {
                    "budget_id": budget_id,
                    "period_start": start,
                    "currency": currency,
                    "sum_minor": total,
                    "count": n,
                }
                for (start, currency), (total, n) in sorted(rows.items())
            ],
        )


async def apply_spend_deltas(
    session: AsyncSession, deltas: Mapping[tuple[str, date, str, str], tuple[int, int]]
) -> None:
    """Adds (sum, count) per (user, day, category, currency); rows that reach zero go."""
    await _add_sums(session, daily_spend, ["user_id", "day", "category_id", "currency"], deltas)


async def _add_sums(
    session: AsyncSession,
    table: Table,
    key_columns: list[str],
    deltas: Mapping[tuple[Any, ...], tuple[int, int]],
) -> None:
    """Adds each (sum_minor, count) to its row (made if new), in key order (two writers of
    overlapping rows lock them in the same order); rows whose count reaches zero go."""
    if not deltas:
        return
    dialect = _dialect(session)
    rows = [
        {**dict(zip(key_columns, key, strict=True)), "sum_minor": total, "count": count}
        for key, (total, count) in sorted(deltas.items())
    ]
    for start in range(0, len(rows), CHUNK):
        statement = dialect.insert(table).values(rows[start : start + CHUNK])
        statement = statement.on_conflict_do_update(
            index_elements=key_columns,
            set_={
                "sum_minor": table.c.sum_minor + statement.excluded.sum_minor,
                "count": table.c.count + statement.excluded.count,
            },
        )
        await session.execute(statement)
    emptied = sorted(key for key, (_, count) in deltas.items() if count < 0)
    keys = tuple_(*(table.c[name] for name in key_columns))
    for start in range(0, len(emptied), CHUNK):
        await session.execute(
            delete(table).where(keys.in_(emptied[start : start + CHUNK]), table.c.count <= 0)
        )


async def recent_in_category(
    connection: Queryable, user_id: str, category_id: str, currency: str, limit: int
) -> list[tuple[str, int]]:
    """(expense id, amount) of the category's latest live expenses in one currency."""
    query = (
        select(expenses.c.expense_id, expenses.c.amount_minor)
        .where(
            expenses.c.user_id == user_id,
            expenses.c.category_id == category_id,
            expenses.c.currency == currency,
            expenses.c.deleted.is_(False),
        )
        .order_by(expenses.c.spent_on.desc())
        .limit(limit)
    )
    return [(row.expense_id, row.amount_minor) for row in await connection.execute(query)]


async def same_charges(
    connection: Queryable, user_id: str, line: ExpenseLine, merchant: str, start: date, end: date
) -> list[str]:
    """The earliest live expense, other than line, of the same merchant key and amount
    between two days (one is enough to call the charge a duplicate)."""
    query = (
        select(expenses.c.expense_id)
        .where(
            expenses.c.user_id == user_id,
            expenses.c.merchant_key == merchant,
            expenses.c.spent_on.between(start, end),
            expenses.c.amount_minor == line.amount_minor,
            expenses.c.currency == line.currency,
            expenses.c.deleted.is_(False),
            expenses.c.expense_id != line.expense_id,
        )
        .order_by(expenses.c.expense_id)
        .limit(1)
    )
    return [row.expense_id for row in await connection.execute(query)]


async def charges_since(connection: Queryable, user_id: str, since: date, min_count: int) -> list[Any]:
    """Live expenses since a day of merchants seen at least min_count times then."""
    recurring = (
        select(expenses.c.merchant_key)
        .where(
            expenses.c.user_id == user_id,
            expenses.c.spent_on >= since,
            expenses.c.deleted.is_(False),
            expenses.c.merchant_key != "",
        )
        .group_by(expenses.c.merchant_key)
        .having(func.count() >= min_count)
    )
    query = select(
        expenses.c.expense_id,
        expenses.c.spent_on,
        expenses.c.merchant,
        expenses.c.amount_minor,
        expenses.c.currency,
    ).where(
        expenses.c.user_id == user_id,
        expenses.c.spent_on >= since,
        expenses.c.deleted.is_(False),
        expenses.c.merchant_key.in_(recurring.scalar_subquery()),
    )
    return list(await connection.execute(query))


async def live_expenses(connection: Queryable, user_id: str) -> list[ExpenseLine]:
    query = select(expenses).where(expenses.c.user_id == user_id, expenses.c.deleted.is_(False))
    return [expense_line(row) for row in await connection.execute(query)]


async def clear_spending(session: AsyncSession, user_ids: Collection[str] | None) -> None:
    """Drops copies and rollups (of these users, or everyone's) before a rebuild."""
    for table in (expenses, daily_spend):
        statement = delete(table)
        if user_ids is not None:
            statement = statement.where(table.c.user_id.in_(sorted(user_ids)))
        await session.execute(statement)


# ---------------------------------------------------------------- categories and profiles


async def category_tree(connection: Queryable, user_id: str) -> CategoryTree:
    return (await category_trees(connection, [user_id]))[user_id]


async def category_trees(connection: Queryable, user_ids: Collection[str]) -> dict[str, CategoryTree]:
    """Each user's tree (empty for a user without categories), in one query."""
    infos: dict[str, list[CategoryInfo]] = {user_id: [] for user_id in user_ids}
    if infos:
        query = select(categories).where(categories.c.user_id.in_(sorted(infos)))
        for row in await connection.execute(query):
            infos[row.user_id].append(
                CategoryInfo(row.category_id, row.name, row.parent_id, row.deleted, row.reassigned_to)
            )
    return {user_id: CategoryTree(found) for user_id, found in infos.items()}


async def save_categories(session: AsyncSession, user_id: str, infos: Iterable[CategoryInfo]) -> None:
    dialect = _dialect(session)
    for info in infos:
        values = {
            "user_id": user_id,
            "category_id": info.category_id,
            "name": info.name,
            "parent_id": info.parent_id,
            "deleted": info.deleted,
            "reassigned_to": info.reassigned_to,
        }
        statement = dialect.insert(categories).values(**values)
        statement = statement.on_conflict_do_update(
            index_elements=["user_id", "category_id"],
            set_={name: values[name] for name in ("name", "parent_id", "deleted", "reassigned_to")},
        )
        await session.execute(statement)


@dataclass(frozen=True)
class Calendar:
    time_zone: str
    first_day_of_week: str


async def load_calendars(
    connection: Queryable, user_ids: Collection[str], *, lock: bool = False
) -> dict[str, Calendar]:
    """`lock` holds the rows (PostgreSQL) until the transaction ends, so the calendar read is
    still the one a following save_calendar replaces (SQLite serialises transactions)."""
    if not user_ids:
        return {}
    query = select(profiles).where(profiles.c.user_id.in_(sorted(user_ids)))
    rows = await connection.execute(query.with_for_update() if lock else query)
    return {row.user_id: Calendar(row.time_zone, row.first_day_of_week) for row in rows}


async def save_calendar(session: AsyncSession, user_id: str, calendar: Calendar, version: int) -> bool:
    """The calendar of profile `version`, unless the copy holds this version or a newer one;
    True when saved."""
    values = {"time_zone": calendar.time_zone, "first_day_of_week": calendar.first_day_of_week}
    row = {"user_id": user_id, "version": version, **values}
    return await upsert_if_newer(session, profiles, row, values, "version")


# ---------------------------------------------------------------- bills


def _bill(row: Any) -> Bill:
    return Bill(
        bill_id=row.bill_id,
        user_id=row.user_id,
        payee=row.payee,
        amount_minor=row.amount_minor,
        currency=row.currency,
        category_id=row.category_id,
        recurrence=row.recurrence,
        first_due=row.first_due,
        remind_days_before=row.remind_days_before,
        autopay=row.autopay,
        version=row.version,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def load_bills(
    connection: Queryable, user_id: str, *, after: str = "", limit: int | None = None, lock: bool = False
) -> list[Bill]:
    query = select(bills).where(bills.c.user_id == user_id, bills.c.bill_id > after).order_by(bills.c.bill_id)
    if limit is not None:
        query = query.limit(limit)
    if lock:
        query = query.with_for_update()
    return [_bill(row) for row in await connection.execute(query)]


async def load_bill(connection: Queryable, user_id: str, bill_id: str, *, lock: bool = False) -> Bill | None:
    query = select(bills).where(bills.c.user_id == user_id, bills.c.bill_id == bill_id)
    if lock:
        query = query.with_for_update()
    rows = list(await connection.execute(query))
    return _bill(rows[0]) if rows else None


async def bills_after(connection: Queryable, after: str, limit: int) -> list[Bill]:
    """Everyone's bills in id order, a page at a time (the scheduler's walk)."""
    query = select(bills).where(bills.c.bill_id > after).order_by(bills.c.bill_id).limit(limit)
    return [_bill(row) for row in await connection.execute(query)]


async def count_bills(session: AsyncSession, user_id: str) -> int:
    query = select(func.count()).select_from(bills).where(bills.c.user_id == user_id)
    return int((await session.execute(query)).scalar_one())


async def save_bill(session: AsyncSession, bill: Bill, payee_key: str, *, new: bool) -> None:
    row = {
        "bill_id": bill.bill_id,
        "user_id": bill.user_id,
        "payee": bill.payee,
        "payee_key": payee_key,
        "amount_minor": bill.amount_minor,
        "currency": bill.currency,
        "category_id": bill.category_id,
        "recurrence": bill.recurrence,
        "first_due": bill.first_due,
        "remind_days_before": bill.remind_days_before,
        "autopay": bill.autopay,
        "version": bill.version,
        "created_at": bill.created_at,
        "updated_at": bill.updated_at,
    }
    if new:
        await session.execute(bills.insert().values(**row))
    else:
        await session.execute(update(bills).where(bills.c.bill_id == bill.bill_id).values(**row))


async def delete_bill(session: AsyncSession, bill_id: str) -> None:
    await session.execute(delete(bill_settlements).where(bill_settlements.c.bill_id == bill_id))
    await session.execute(delete(bills).where(bills.c.bill_id == bill_id))


async def load_settlements(
    connection: Queryable, bill_ids: Collection[str], start: date, end: date
) -> dict[tuple[str, date], Settlement]:
    if not bill_ids:
        return {}
    query = select(bill_settlements).where(
        bill_settlements.c.bill_id.in_(sorted(bill_ids)), bill_settlements.c.due_on.between(start, end)
    )
    return {
        (row.bill_id, row.due_on): Settlement(row.due_on, row.status, row.expense_id, row.amount_minor)
        for row in await connection.execute(query)
    }


async def settled_since_first_due(connection: Queryable, bill_ids: Collection[str]) -> dict[str, set[date]]:
    """Each bill's settled due dates from its first_due on (those before it, left by an
    edit of first_due, are no occurrence), in one query whatever the bills: what
    next_due walks. A date per paid or skipped occurrence, read by the primary key."""
    found: dict[str, set[date]] = {bill_id: set() for bill_id in bill_ids}
    if not bill_ids:
        return found
    query = (
        select(bill_settlements.c.bill_id, bill_settlements.c.due_on)
        .join(bills, bills.c.bill_id == bill_settlements.c.bill_id)
        .where(bill_settlements.c.bill_id.in_(sorted(bill_ids)))
        .where(bill_settlements.c.due_on >= bills.c.first_due)
    )
    for row in await connection.execute(query):
        found[row.bill_id].add(row.due_on)
    return found


async def settled_by(session: AsyncSession, bill_ids: Collection[str], expense_id: str) -> bool:
    query = select(bill_settlements.c.bill_id).where(
        bill_settlements.c.bill_id.in_(sorted(bill_ids)), bill_settlements.c.expense_id == expense_id
    )
    return (await session.execute(query.limit(1))).first() is not None


async def settle(session: AsyncSession, bill_id: str, settlement: Settlement, now: datetime) -> bool:
    """Records a paid or skipped occurrence; False when it was already settled."""
    return await insert_ignore(
        session,
        bill_settlements,
        {
            "bill_id": bill_id,
            "due_on": settlement.due_on,
            "status": settlement.status,
            "expense_id": settlement.expense_id,
            "amount_minor": settlement.amount_minor,
            "settled_at": now,
        },
    )


async def last_paid(session: AsyncSession, bill_id: str, before: date) -> Settlement | None:
    query = (
        select(bill_settlements)
        .where(
            bill_settlements.c.bill_id == bill_id,
            bill_settlements.c.status == "paid",
            bill_settlements.c.due_on < before,
        )
        .order_by(bill_settlements.c.due_on.desc())
        .limit(1)
    )
    row = (await session.execute(query)).first()
    return Settlement(row.due_on, row.status, row.expense_id, row.amount_minor) if row else None


# ---------------------------------------------------------------- alerts


async def insert_alerts(session: AsyncSession, new: Sequence[Alert]) -> set[str]:
    """The ids of those stored: an alert whose dedupe key exists is not (its rule already
    fired for that occurrence). One statement whatever their number (a scheduler page's
    may be thousands), keys in order (racing writers lock alike)."""
    rows = [
        {
            "alert_id": alert.alert_id,
            "user_id": alert.user_id,
            "type": alert.type,
            "severity": alert.severity,
            "title": alert.title,
            "details": json.dumps(alert.details, sort_keys=True),
            "dedupe_key": alert.dedupe_key,
            "created_at": alert.created_at,
            "acknowledged_at": None,
        }
        for alert in sorted(new, key=lambda alert: alert.dedupe_key)
    ]
    return await insert_ignore_many(session, alerts, rows, "alert_id")


def _alert(row: Any) -> Alert:
    return Alert(
        alert_id=row.alert_id,
        user_id=row.user_id,
        type=row.type,
        severity=row.severity,
        title=row.title,
        details=json.loads(row.details),
        dedupe_key=row.dedupe_key,
        created_at=row.created_at,
        acknowledged_at=row.acknowledged_at,
    )


async def list_alerts(
    connection: Queryable, user_id: str, before: str, limit: int, unacknowledged_only: bool
) -> list[Alert]:
    """Newest first (alert ids are UUIDv7), those older than `before` when set."""
    query = select(alerts).where(alerts.c.user_id == user_id)
    if before:
        query = query.where(alerts.c.alert_id < before)
    if unacknowledged_only:
        query = query.where(alerts.c.acknowledged_at.is_(None))
    query = query.order_by(alerts.c.alert_id.desc()).limit(limit)
    return [_alert(row) for row in await connection.execute(query)]


async def acknowledge_alert(
    session: AsyncSession, user_id: str, alert_id: str, now: datetime
) -> Alert | None:
    await session.execute(
        update(alerts)
        .where(alerts.c.user_id == user_id, alerts.c.alert_id == alert_id, alerts.c.acknowledged_at.is_(None))
        .values(acknowledged_at=now)
    )
    row = (
        await session.execute(
            select(alerts).where(alerts.c.user_id == user_id, alerts.c.alert_id == alert_id)
        )
    ).first()
    return _alert(row) if row else None


async def muted_rules(connection: Queryable, user_id: str) -> set[str]:
    return (await muted_rules_of(connection, [user_id]))[user_id]


async def muted_rules_of(connection: Queryable, user_ids: Collection[str]) -> dict[str, set[str]]:
    """Each user's muted rule types, in one query."""
    muted: dict[str, set[str]] = {user_id: set() for user_id in user_ids}
    if muted:
        query = select(alert_mutes).where(alert_mutes.c.user_id.in_(sorted(muted)))
        for row in await connection.execute(query):
            muted[row.user_id].add(row.rule_type)
    return muted


async def set_muted_rules(session: AsyncSession, user_id: str, rule_types: Collection[str]) -> None:
    await session.execute(delete(alert_mutes).where(alert_mutes.c.user_id == user_id))
    if rule_types:
        await session.execute(
            alert_mutes.insert(), [{"user_id": user_id, "rule_type": rule} for rule in sorted(rule_types)]
        )


# ---------------------------------------------------------------- leases


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


async def expense_version(connection: Queryable, user_id: str, expense_id: str) -> int | None:
    """The ledger version of this service's copy of an expense (a tombstone's too); None
    when it has none (read-your-writes, services/kit/consistency.py)."""
    query = select(expenses.c.version).where(
        expenses.c.user_id == user_id, expenses.c.expense_id == expense_id
    )
    return (await connection.execute(query)).scalar()
