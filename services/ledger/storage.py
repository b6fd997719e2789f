"""Tables of the ledger service and the queries on them.

Every query takes the owner's user id and filters by it, so no function here
can read or change another user's rows. Amounts are BIGINT minor units with a
CHAR(3) currency; `amount_value` holds the same amount at a fixed 4 decimal
places so amounts of different currencies order and filter as exact decimals.
Expenses are soft-deleted (delete_time), so their audit trail stays meaningful;
the partial indexes cover the live rows every list reads."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    CHAR,
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    ColumnElement,
    Date,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Select,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    delete,
    exists,
    func,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from services.kit.db import UtcDateTime
from services.kit.idempotency import idempotency_table
from services.kit.runtime import add_kit_tables
from services.kit.sqlutil import BigIntId, insert_ignore, insert_many
from services.ledger.domain import (
    Category,
    Cursor,
    Expense,
    ExpenseFilter,
    LedgerEntry,
    Ordering,
    tag_key,
)

metadata = MetaData()
outbox, inbox = add_kit_tables(metadata)
idempotency_keys = idempotency_table(metadata)

LIVE = "delete_time IS NULL"

expenses = Table(
    "expenses",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("user_id", String(36), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", CHAR(3), nullable=False),
    # The amount at 4 decimal places, whatever the currency: for ordering and amount filters.
    Column("amount_value", BigInteger, nullable=False),
    Column("spent_on", Date, nullable=False),
    Column("category_id", String(36), nullable=True),
    Column("merchant", Text, nullable=False),
    Column("note", Text, nullable=False),
    Column("tags", JSON, nullable=False),
    # Lower-cased merchant and note, what `q` searches (trigram-indexed on PostgreSQL).
    Column("search_text", Text, nullable=False),
    Column("source", String(16), nullable=False),
    Column("version", Integer, nullable=False),
    Column("create_time", UtcDateTime, nullable=False),
    Column("update_time", UtcDateTime, nullable=False),
    Column("delete_time", UtcDateTime, nullable=True),
    CheckConstraint("amount_minor > 0", name="ck_expenses_amount_positive"),
    Index(
        "ix_expenses_user_spent_on",
        "user_id",
        "spent_on",
        "id",
        postgresql_where=text(LIVE),
        sqlite_where=text(LIVE),
    ),
    Index(
        "ix_expenses_user_category",
        "user_id",
        "category_id",
        "spent_on",
        "id",
        postgresql_where=text(LIVE),
        sqlite_where=text(LIVE),
    ),
    Index(
        "ix_expenses_user_amount",
        "user_id",
        "amount_value",
        "id",
        postgresql_where=text(LIVE),
        sqlite_where=text(LIVE),
    ),
)

# One row per (expense, tag) for the tag filter; tag_key is the case-folded tag.
expense_tags = Table(
    "expense_tags",
    metadata,
    Column("expense_id", String(36), nullable=False),
    Column("tag_key", String(200), nullable=False),
    Column("user_id", String(36), nullable=False),
    PrimaryKeyConstraint("expense_id", "tag_key"),
    Index("ix_expense_tags_user_tag", "user_id", "tag_key", "expense_id"),
)

categories = Table(
    "categories",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("user_id", String(36), nullable=False),
    Column("name", String(200), nullable=False),
    Column("name_key", String(200), nullable=False),
    Column("parent_id", String(36), nullable=True),
    Column("color", String(7), nullable=False),
    Column("icon", String(40), nullable=False),
    Column("create_time", UtcDateTime, nullable=False),
    Column("update_time", UtcDateTime, nullable=False),
    UniqueConstraint("user_id", "name_key", name="uq_categories_user_name"),
    Index("ix_categories_user_parent", "user_id", "parent_id"),
)

# One row per user whose default categories exist; locked to serialise changes to
# one user's category tree (cycle and depth checks read the whole tree).
category_owners = Table(
    "category_owners",
    metadata,
    Column("user_id", String(36), primary_key=True),
    Column("seed_time", UtcDateTime, nullable=False),
)

# Append-only: the migration adds triggers that refuse UPDATE and DELETE.
ledger_entries = Table(
    "ledger_entries",
    metadata,
    Column("id", BigIntId, primary_key=True, autoincrement=True),
    Column("expense_id", String(36), nullable=False),
    Column("user_id", String(36), nullable=False),
    Column("version", Integer, nullable=False),
    Column("action", String(10), nullable=False),
    Column("actor", String(36), nullable=False),
    Column("time", UtcDateTime, nullable=False),
    Column("before", JSON(none_as_null=True), nullable=True),
    Column("after", JSON(none_as_null=True), nullable=True),
    UniqueConstraint("expense_id", "version", name="uq_ledger_entries_expense_version"),
    Index("ix_ledger_entries_user_expense", "user_id", "expense_id", "version"),
)

_live = expenses.c.delete_time.is_(None)


# ------------------------------------------------------------------ expenses


def _expense_columns(expense: Expense) -> dict[str, Any]:
    return {
        "id": expense.expense_id,
        "user_id": expense.user_id,
        "amount_minor": expense.amount_minor,
        "currency": expense.currency,
        "amount_value": expense.amount_value,
        "spent_on": expense.spent_on,
        "category_id": expense.category_id,
        "merchant": expense.merchant,
        "note": expense.note,
        "tags": list(expense.tags),
        "search_text": expense.search_text,
        "source": expense.source,
        "version": expense.version,
        "create_time": expense.create_time,
        "update_time": expense.update_time,
        "delete_time": expense.delete_time,
    }


def _tag_rows(expense: Expense) -> list[dict[str, str]]:
    keys = dict.fromkeys(tag_key(tag) for tag in expense.tags)
    return [{"expense_id": expense.expense_id, "tag_key": key, "user_id": expense.user_id} for key in keys]


def _expense(row: Row[Any]) -> Expense:
    return Expense(
        expense_id=row.id,
        user_id=row.user_id,
        amount_minor=row.amount_minor,
        currency=row.currency,
        spent_on=row.spent_on,
        category_id=row.category_id,
        merchant=row.merchant,
        note=row.note,
        tags=tuple(row.tags),
        source=row.source,
        version=row.version,
        create_time=row.create_time,
        update_time=row.update_time,
        delete_time=row.delete_time,
    )


async def insert_expenses(session: AsyncSession, rows: Sequence[Expense]) -> None:
    """Multi-row INSERTs, however many expenses."""
    if not rows:
        return
    await insert_many(session, expenses, [_expense_columns(expense) for expense in rows])
    await insert_many(session, expense_tags, [tag for expense in rows for tag in _tag_rows(expense)])


async def find_expense(
    session: AsyncSession, user_id: str, expense_id: str, *, for_update: bool = False
) -> Expense | None:
    """A live expense of this user. for_update locks the row (PostgreSQL) so that
    concurrent writers queue; SQLite transactions are serialised already."""
    query = select(expenses).where(expenses.c.id == expense_id, expenses.c.user_id == user_id, _live)
    if for_update:
        query = query.with_for_update()
    row = (await session.execute(query)).first()
    return None if row is None else _expense(row)


async def save_expense(session: AsyncSession, expense: Expense, expected_version: int) -> bool:
    """Writes the new state only if nobody changed the row since expected_version."""
    values = _expense_columns(expense)
    for key in ("id", "user_id", "create_time"):
        values.pop(key)
    result = await session.execute(
        update(expenses)
        .where(
            expenses.c.id == expense.expense_id,
            expenses.c.user_id == expense.user_id,
            expenses.c.version == expected_version,
            _live,
        )
        .values(**values)
    )
    if result.rowcount != 1:
        return False
    await session.execute(delete(expense_tags).where(expense_tags.c.expense_id == expense.expense_id))
    await insert_many(session, expense_tags, _tag_rows(expense))
    return True


def _filtered(query: Select[Any], user_id: str, where: ExpenseFilter) -> Select[Any]:
    conditions: list[ColumnElement[bool]] = [expenses.c.user_id == user_id, _live]
    if where.from_date is not None:
        conditions.append(expenses.c.spent_on >= where.from_date)
    if where.to_date is not None:
        conditions.append(expenses.c.spent_on <= where.to_date)
    if where.category_ids is not None:
        conditions.append(expenses.c.category_id.in_(where.category_ids))
    if where.text:
        conditions.append(expenses.c.search_text.contains(where.text, autoescape=True))
    if where.min_value is not None:
        conditions.append(expenses.c.amount_value >= where.min_value)
    if where.max_value is not None:
        conditions.append(expenses.c.amount_value <= where.max_value)
    if where.tag_key:
        conditions.append(
            exists().where(
                expense_tags.c.expense_id == expenses.c.id,
                expense_tags.c.user_id == user_id,
                expense_tags.c.tag_key == where.tag_key,
            )
        )
    return query.where(and_(*conditions))


def _order_column(ordering: Ordering) -> Any:
    return expenses.c.spent_on if ordering.field == "spent_on" else expenses.c.amount_value


async def list_expenses(
    session: AsyncSession,
    user_id: str,
    where: ExpenseFilter,
    ordering: Ordering,
    after: Cursor | None,
    limit: int,
) -> list[Expense]:
    """One page in keyset order (order key, then id): a page starts strictly after
    the previous page's last row, so inserts never shift or repeat rows."""
    column = _order_column(ordering)
    query = _filtered(select(expenses), user_id, where)
    if after is not None:
        position = tuple_(column, expenses.c.id)
        bound = (after.key_value(ordering), after.expense_id)
        query = query.where(position < bound if ordering.descending else position > bound)
    if ordering.descending:
        query = query.order_by(column.desc(), expenses.c.id.desc())
    else:
        query = query.order_by(column.asc(), expenses.c.id.asc())
    rows = (await session.execute(query.limit(limit))).all()
    return [_expense(row) for row in rows]


async def count_expenses(session: AsyncSession, user_id: str, where: ExpenseFilter, cap: int) -> int:
    """Matching rows, counted up to cap (beyond it the count would cost a full scan)."""
    matching = _filtered(select(expenses.c.id), user_id, where).limit(cap).subquery()
    return int((await session.execute(select(func.count()).select_from(matching))).scalar_one())


async def expenses_in_categories(
    session: AsyncSession, user_id: str, category_ids: Iterable[str], *, for_update: bool = False
) -> list[Expense]:
    query = select(expenses).where(
        expenses.c.user_id == user_id, expenses.c.category_id.in_(list(category_ids)), _live
    )
    if for_update:
        query = query.with_for_update()
    return [_expense(row) for row in (await session.execute(query.order_by(expenses.c.id))).all()]


async def has_live_expenses(session: AsyncSession, user_id: str, category_id: str) -> bool:
    query = select(expenses.c.id).where(
        expenses.c.user_id == user_id, expenses.c.category_id == category_id, _live
    )
    return (await session.execute(query.limit(1))).first() is not None


async def move_expenses(
    session: AsyncSession, user_id: str, from_ids: Sequence[str], to_id: str, now: datetime
) -> None:
    """Moves the live expenses of these categories (locked by the caller) to another."""
    await session.execute(
        update(expenses)
        .where(expenses.c.user_id == user_id, expenses.c.category_id.in_(list(from_ids)), _live)
        .values(category_id=to_id, version=expenses.c.version + 1, update_time=now)
    )


async def stream_expenses(
    session: AsyncSession, user_id: str, after: tuple[date, str] | None, limit: int
) -> list[Expense]:
    """A batch of one user's live expenses in (spent_on, id) order."""
    query = select(expenses).where(expenses.c.user_id == user_id, _live)
    if after is not None:
        query = query.where(tuple_(expenses.c.spent_on, expenses.c.id) > after)
    query = query.order_by(expenses.c.spent_on, expenses.c.id).limit(limit)
    return [_expense(row) for row in (await session.execute(query)).all()]


async def stream_all_expenses(session: AsyncSession, after: str, limit: int) -> list[Expense]:
    """A batch of everyone's live expenses in id order."""
    query = select(expenses).where(expenses.c.id > after, _live).order_by(expenses.c.id).limit(limit)
    return [_expense(row) for row in (await session.execute(query)).all()]


# ------------------------------------------------------------ audit trail


async def add_entries(session: AsyncSession, entries: Sequence[LedgerEntry]) -> None:
    await insert_many(
        session,
        ledger_entries,
        [
            {
                "expense_id": entry.expense_id,
                "user_id": entry.user_id,
                "version": entry.version,
                "action": entry.action,
                "actor": entry.actor,
                "time": entry.time,
                "before": entry.before,
                "after": entry.after,
            }
            for entry in entries
        ],
    )


async def entries_of(session: AsyncSession, user_id: str, expense_id: str) -> list[LedgerEntry]:
    query = (
        select(ledger_entries)
        .where(ledger_entries.c.user_id == user_id, ledger_entries.c.expense_id == expense_id)
        .order_by(ledger_entries.c.version)
    )
    return [
        LedgerEntry(
            expense_id=row.expense_id,
            user_id=row.user_id,
            version=row.version,
            action=row.action,
            actor=row.actor,
            time=row.time,
            before=row.before,
            after=row.after,
        )
        for row in (await session.execute(query)).all()
    ]


# ------------------------------------------------------------- categories


def _category(row: Row[Any]) -> Category:
    return Category(
        category_id=row.id,
        user_id=row.user_id,
        name=row.name,
        parent_id=row.parent_id,
        color=row.color,
        icon=row.icon,
        create_time=row.create_time,
        update_time=row.update_time,
    )


def _category_columns(category: Category) -> dict[str, Any]:
    return {
        "id": category.category_id,
        "user_id": category.user_id,
        "name": category.name,
        "name_key": category.name_key,
        "parent_id": category.parent_id,
        "color": category.color,
        "icon": category.icon,
        "create_time": category.create_time,
        "update_time": category.update_time,
    }


async def is_category_owner(session: AsyncSession, user_id: str) -> bool:
    query = select(category_owners.c.user_id).where(category_owners.c.user_id == user_id)
    return (await session.execute(query)).first() is not None


async def claim_category_owner(session: AsyncSession, user_id: str, now: datetime) -> bool:
    """True for the one transaction that registers the user (and so seeds the defaults)."""
    return await insert_ignore(session, category_owners, {"user_id": user_id, "seed_time": now})


async def lock_category_tree(session: AsyncSession, user_id: str) -> None:
    """Serialises structural changes to one user's categories (PostgreSQL row lock)."""
    query = select(category_owners.c.user_id).where(category_owners.c.user_id == user_id).with_for_update()
    await session.execute(query)


async def user_categories(session: AsyncSession, user_id: str) -> list[Category]:
    query = select(categories).where(categories.c.user_id == user_id).order_by(categories.c.name_key)
    return [_category(row) for row in (await session.execute(query)).all()]


async def find_categories(
    session: AsyncSession, user_id: str, category_ids: Iterable[str], *, share_lock: bool = False
) -> set[str]:
    """Which of these ids are this user's categories. share_lock keeps them from
    being deleted until the caller commits (PostgreSQL FOR SHARE)."""
    wanted = sorted(set(category_ids))
    if not wanted:
        return set()
    query = select(categories.c.id).where(categories.c.user_id == user_id, categories.c.id.in_(wanted))
    if share_lock:
        query = query.with_for_update(read=True)
    return {row.id for row in (await session.execute(query)).all()}


async def lock_category(session: AsyncSession, user_id: str, category_id: str) -> None:
    """FOR UPDATE: waits for transactions adding expenses to it, and makes later ones wait."""
    query = (
        select(categories.c.id)
        .where(categories.c.id == category_id, categories.c.user_id == user_id)
        .with_for_update()
    )
    await session.execute(query)


async def insert_categories(session: AsyncSession, rows: Sequence[Category]) -> None:
    await insert_many(session, categories, [_category_columns(category) for category in rows])


async def save_category(session: AsyncSession, category: Category) -> None:
    values = _category_columns(category)
    for key in ("id", "user_id", "create_time"):
        values.pop(key)
    await session.execute(
        update(categories)
        .where(categories.c.id == category.category_id, categories.c.user_id == category.user_id)
        .values(**values)
    )


async def delete_category(session: AsyncSession, user_id: str, category_id: str) -> None:
    await session.execute(
        delete(categories).where(categories.c.id == category_id, categories.c.user_id == user_id)
    )


async def stream_categories(
    session: AsyncSession, user_id: str | None, after: str, limit: int
) -> list[Category]:
    """A batch of one user's (or everyone's) categories in id order."""
    conditions = [categories.c.id > after]
    if user_id is not None:
        conditions.append(categories.c.user_id == user_id)
    query = select(categories).where(*conditions).order_by(categories.c.id).limit(limit)
    return [_category(row) for row in (await session.execute(query)).all()]
