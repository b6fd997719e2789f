"""Tables of the ledger service and the queries on them.

Every query takes the owner's user id and filters by it, so no function here
can read or change another user's rows. Amounts are BIGINT minor units with a
CHAR(3) currency; `amount_value` holds the same amount at a fixed 4 decimal
places so amounts of different currencies order and filter as exact decimals.
Expenses are soft-deleted (delete_time), so their audit trail stays meaningful;
the partial indexes cover the live rows every list reads."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from functools import cache
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
    bindparam,
    cast,
    delete,
    exists,
    func,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from services.kit.db.engine import Queryable, UtcDateTime
from services.kit.db.idempotency import idempotency_table
from services.kit.db.reads import PLAN_EACH_TIME
from services.kit.db.sql import BigIntId, Query, insert_ignore, insert_many, wanted_keys, wanted_values
from services.kit.events.tables import add_event_tables
from services.ledger.domain import (
    Category,
    Count,
    Cursor,
    Expense,
    ExpenseFilter,
    LedgerEntry,
    Ordering,
    tag_key,
)

metadata = MetaData()
outbox, inbox = add_event_tables(metadata)
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

# A user being erased (user.deleted): the append-only triggers let that user's entries be
# deleted while the user's row exists here, only within the erasure's transaction.
erasure_permits = Table("erasure_permits", metadata, Column("erased_user_id", String(36), primary_key=True))


async def permit_erasure(session: AsyncSession, user_id: str) -> None:
    await session.execute(erasure_permits.insert().values(erased_user_id=user_id))


async def end_erasure(session: AsyncSession, user_id: str) -> None:
    await session.execute(delete(erasure_permits).where(erasure_permits.c.erased_user_id == user_id))


# Append-only: the migration adds triggers that refuse UPDATE and DELETE (but for an erasure).
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
# LIKE's escape character in the `q` filter.
LIKE_ESCAPE = "/"


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


# What reads select of an expense, in the order of Expense's fields. Tags arrive as
# JSON text, parsed by _tags: most expenses have none, and "[]" needs no parser.
_EXPENSE_ROW = (
    expenses.c.id,
    expenses.c.user_id,
    expenses.c.amount_minor,
    expenses.c.currency,
    expenses.c.spent_on,
    expenses.c.category_id,
    expenses.c.merchant,
    expenses.c.note,
    cast(expenses.c.tags, Text).label("tags"),
    expenses.c.source,
    expenses.c.version,
    expenses.c.create_time,
    expenses.c.update_time,
    expenses.c.delete_time,
)
_EXPENSE_WIDTH = len(_EXPENSE_ROW)
_TAGS_AT = [column.name for column in _EXPENSE_ROW].index("tags")


def _tags(stored: str) -> tuple[str, ...]:
    return () if stored == "[]" else tuple(json.loads(stored))


def _expense(row: Row[Any]) -> Expense:
    """An expense from a row that starts with the _EXPENSE_ROW columns, which are
    Expense's fields in order (by position: a list page converts tens of rows per call)."""
    values = row[:_EXPENSE_WIDTH]
    return Expense(*values[:_TAGS_AT], _tags(values[_TAGS_AT]), *values[_TAGS_AT + 1 :])


async def insert_expenses(session: AsyncSession, rows: Sequence[Expense]) -> None:
    """Multi-row INSERTs, however many expenses."""
    if not rows:
        return
    await insert_many(session, expenses, [_expense_columns(expense) for expense in rows])
    await insert_many(session, expense_tags, [tag for expense in rows for tag in _tag_rows(expense)])


_find_expense = select(*_EXPENSE_ROW).where(
    expenses.c.id == bindparam("expense_id"), expenses.c.user_id == bindparam("user_id"), _live
)
_find_expense_for_update = _find_expense.with_for_update()


async def find_expense(
    db: Queryable, user_id: str, expense_id: str, *, for_update: bool = False
) -> Expense | None:
    """A live expense of this user. for_update locks the row (PostgreSQL) so that
    concurrent writers queue; SQLite transactions are serialised already."""
    query = _find_expense_for_update if for_update else _find_expense
    row = (await db.execute(query, {"expense_id": expense_id, "user_id": user_id})).first()
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


# List statements are built once per shape of query (which filters are set, the
# ordering, first page or not: at most 2^7 x 4 x 2) and bound to each call's values.
# Building one per call, and computing its compiled-cache key, cost ~0.35 ms of CPU:
# a third of a whole list call.


async def _filter_values_of(db: Queryable, user_id: str, where: ExpenseFilter) -> dict[str, Any]:
    """_filter_values, with the ids of the categories whose name `q` names."""
    values = _filter_values(user_id, where)
    if where.text and (named := await _named_categories(db, user_id, where.text)):
        values["named_category_ids"] = named
    return values


def _filter_values(user_id: str, where: ExpenseFilter) -> dict[str, Any]:
    """The bound values of a list filter; the names present select the statement."""
    values = {
        "user_id": user_id,
        "from_date": where.from_date,
        "to_date": where.to_date,
        "category_ids": where.category_ids,
        "text": _like_escaped(where.text) if where.text else None,
        "min_value": where.min_value,
        "max_value": where.max_value,
        "tag_key": where.tag_key or None,
        "currency": where.currency or None,
    }
    return {name: value for name, value in values.items() if value is not None}


def _like_escaped(text: str) -> str:
    """text matched literally by LIKE ... ESCAPE LIKE_ESCAPE (as autoescape=True does)."""
    return (
        text.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2)
        .replace("%", LIKE_ESCAPE + "%")
        .replace("_", LIKE_ESCAPE + "_")
    )


def _matching(names: frozenset[str]) -> ColumnElement[bool]:
    """The user's live rows that pass the filters named, bound by _filter_values."""
    conditions: list[ColumnElement[bool]] = [expenses.c.user_id == bindparam("user_id"), _live]
    if "from_date" in names:
        conditions.append(expenses.c.spent_on >= bindparam("from_date"))
    if "to_date" in names:
        conditions.append(expenses.c.spent_on <= bindparam("to_date"))
    if "category_ids" in names:
        conditions.append(expenses.c.category_id.in_(bindparam("category_ids", expanding=True)))
    if "currency" in names:
        conditions.append(expenses.c.currency == bindparam("currency"))
    if "text" in names:
        conditions.append(_text_matches(names))
    if "min_value" in names:
        conditions.append(expenses.c.amount_value >= bindparam("min_value"))
    if "max_value" in names:
        conditions.append(expenses.c.amount_value <= bindparam("max_value"))
    if "tag_key" in names:
        conditions.append(
            exists().where(
                expense_tags.c.expense_id == expenses.c.id,
                expense_tags.c.user_id == bindparam("user_id"),
                expense_tags.c.tag_key == bindparam("tag_key"),
            )
        )
    return and_(*conditions)


def _text_matches(names: frozenset[str]) -> ColumnElement[bool]:
    """`q`: in the merchant, note or tags (search_text, trigram-indexed on PostgreSQL), or
    the name of the expense's category, whose ids _named_categories found first: with the
    ids known (or none: the condition is search_text's alone) the planner weighs the
    trigram index against walking the user's rows in order from real estimates; a
    subquery in their place was always guessed to match thousands, so a rare word walked
    every row. All lower-cased, matched as a literal substring. Statements with it are
    planned at each execution (_planned), for their own pattern and user."""
    in_text = expenses.c.search_text.contains(bindparam("text"), escape=LIKE_ESCAPE)
    if "named_category_ids" not in names:
        return in_text
    return or_(in_text, expenses.c.category_id.in_(bindparam("named_category_ids", expanding=True)))


async def _named_categories(db: Queryable, user_id: str, text: str) -> list[str]:
    """The user's categories whose name holds the text (of at most max_categories)."""
    query = select(categories.c.id).where(
        categories.c.user_id == user_id,
        func.lower(categories.c.name).contains(_like_escaped(text), escape=LIKE_ESCAPE),
    )
    return list((await db.execute(query)).scalars())


def _order_column(ordering: Ordering) -> Any:
    return expenses.c.spent_on if ordering.field == "spent_on" else expenses.c.amount_value


def _planned(statement: Select[Any], names: frozenset[str]) -> Select[Any]:
    """A text search is planned for its own pattern and user at each execution, never from
    a prepared statement's generic plan: that one, made for no pattern and an average user,
    walked all 100,000 rows of a heavy user for a word found nowhere (~450 ms, under 1 ms
    planned for the word), or bitmap-scanned a common word for a light user's plan."""
    return statement.execution_options(**{PLAN_EACH_TIME: True}) if "text" in names else statement


@cache
def _count_statement(names: frozenset[str]) -> Select[Any]:
    """Matching rows, counted up to the bound limit (beyond it a count would cost a full scan)."""
    matching = select(expenses.c.id).where(_matching(names)).limit(bindparam("cap", type_=Integer))
    return _planned(select(func.count()).select_from(matching.subquery()), names)


@cache
def _page_statement(names: frozenset[str], ordering: Ordering, after: bool, counted: bool) -> Select[Any]:
    """A page in keyset order; counted, each row carries the capped count of all matching
    rows: one round trip, and page and count see the same snapshot."""
    column = _order_column(ordering)
    query = select(*_EXPENSE_ROW).where(_matching(names))
    if counted:
        query = query.add_columns(_count_statement(names).scalar_subquery().label("total"))
    if after:
        position = tuple_(column, expenses.c.id)
        bound = tuple_(bindparam("after_key", type_=column.type), bindparam("after_id", type_=String))
        query = query.where(position < bound if ordering.descending else position > bound)
    if ordering.descending:
        query = query.order_by(column.desc(), expenses.c.id.desc())
    else:
        query = query.order_by(column.asc(), expenses.c.id.asc())
    return _planned(query.limit(bindparam("limit", type_=Integer)), names)


async def list_expenses(
    db: Queryable,
    user_id: str,
    where: ExpenseFilter,
    ordering: Ordering,
    after: Cursor | None,
    limit: int,
    cap: int | None,
) -> tuple[list[Expense], Count | None]:
    """One page in keyset order (order key, then id): a page starts strictly after
    the previous page's last row, so inserts never shift or repeat rows. With it, unless
    cap is None, how many rows match the filter, counted up to cap (the count is most of
    a common word's cost: it reads up to cap rows where the page reads limit)."""
    values = await _filter_values_of(db, user_id, where)
    params = {**values, "limit": limit}
    if cap is not None:
        params["cap"] = cap + 1  # the row past the cap tells an exact count from a capped one
    if after is not None:
        params.update(after_key=after.key_value(ordering), after_id=after.expense_id)
    statement = _page_statement(frozenset(values), ordering, after is not None, cap is not None)
    rows = (await db.execute(statement, params)).all()
    page = [_expense(row) for row in rows]
    if cap is None:
        return page, None
    if rows:
        return page, Count.of(rows[0].total, cap)
    # No row carried the count: nothing matches, unless the page starts past the last row.
    return [], Count(0, False) if after is None else await count_expenses(db, user_id, where, cap)


async def count_expenses(db: Queryable, user_id: str, where: ExpenseFilter, cap: int) -> Count:
    """Matching rows, counted up to cap."""
    values = await _filter_values_of(db, user_id, where)
    statement = _count_statement(frozenset(values))
    return Count.of(int((await db.execute(statement, {**values, "cap": cap + 1})).scalar_one()), cap)


async def expenses_in_categories(
    session: AsyncSession, user_id: str, category_ids: Iterable[str], *, for_update: bool = False
) -> list[Expense]:
    query = select(*_EXPENSE_ROW).where(
        expenses.c.user_id == user_id, expenses.c.category_id.in_(list(category_ids)), _live
    )
    if for_update:
        query = query.with_for_update()
    return [_expense(row) for row in (await session.execute(query.order_by(expenses.c.id))).all()]


async def live_expense_ids(session: AsyncSession, user_id: str, candidates: Sequence[str]) -> set[str]:
    """Which of these ids are live expenses of the user (a thousand at a time)."""
    found: set[str] = set()
    for start in range(0, len(candidates), 1000):
        chunk = [value for value in candidates[start : start + 1000] if len(value) <= 36]
        query = select(expenses.c.id).where(expenses.c.user_id == user_id, expenses.c.id.in_(chunk), _live)
        found.update((await session.execute(query)).scalars())
    return found


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
    db: Queryable,
    user_id: str,
    after: tuple[date, str] | None,
    limit: int,
    between: tuple[date | None, date | None] = (None, None),
) -> list[Expense]:
    """A batch of one user's live expenses in (spent_on, id) order, spent within the
    inclusive `between` dates (None: unbounded)."""
    query = select(*_EXPENSE_ROW).where(expenses.c.user_id == user_id, _live)
    first, last = between
    if first is not None:
        query = query.where(expenses.c.spent_on >= first)
    if last is not None:
        query = query.where(expenses.c.spent_on <= last)
    if after is not None:
        query = query.where(tuple_(expenses.c.spent_on, expenses.c.id) > after)
    query = query.order_by(expenses.c.spent_on, expenses.c.id).limit(limit)
    return [_expense(row) for row in (await db.execute(query)).all()]


async def stream_all_expenses(db: Queryable, after: str, limit: int) -> list[Expense]:
    """A batch of everyone's live expenses in id order."""
    query = select(*_EXPENSE_ROW).where(expenses.c.id > after, _live).order_by(expenses.c.id).limit(limit)
    return [_expense(row) for row in (await db.execute(query)).all()]


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


async def entries_of(db: Queryable, user_id: str, expense_id: str) -> list[LedgerEntry]:
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
        for row in (await db.execute(query)).all()
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


async def user_categories(db: Queryable, user_id: str) -> list[Category]:
    query = select(categories).where(categories.c.user_id == user_id).order_by(categories.c.name_key)
    return [_category(row) for row in (await db.execute(query)).all()]


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


def owned_categories_query(dialect_name: str, pairs: Iterable[tuple[str, str]]) -> Query:
    """Which (user_id, category_id) pairs name a category of that user (creates of
    several users at once), share-locked as find_categories(share_lock=True) does;
    owned_in() reads its rows. A read to send with others (fetch_together)."""
    wanted = sorted(set(pairs))
    if dialect_name != "postgresql":
        return _owned_categories_in, {"pairs": wanted}
    return _owned_categories_unnested, wanted_values(_CATEGORY_KEY, wanted)


def owned_in(rows: Iterable[Any]) -> set[tuple[str, str]]:
    return {(row.user_id, row.id) for row in rows}


# Built once, not per call: they run in every batch of creates.
_CATEGORY_KEY = ("user_id", "id")
_owned_categories_in = (
    select(categories.c.user_id, categories.c.id)
    .where(tuple_(categories.c.user_id, categories.c.id).in_(bindparam("pairs", expanding=True)))
    .with_for_update(read=True)
)
_wanted_categories = wanted_keys(*_CATEGORY_KEY)
_owned_categories_unnested = (
    select(categories.c.user_id, categories.c.id)
    .join_from(
        _wanted_categories,
        categories,
        and_(*(categories.c[name] == _wanted_categories.c[name] for name in _CATEGORY_KEY)),
    )
    .with_for_update(read=True, of=categories)
)


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


async def stream_categories(db: Queryable, user_id: str | None, after: str, limit: int) -> list[Category]:
    """A batch of one user's (or everyone's) categories in id order."""
    conditions = [categories.c.id > after]
    if user_id is not None:
        conditions.append(categories.c.user_id == user_id)
    query = select(categories).where(*conditions).order_by(categories.c.id).limit(limit)
    return [_category(row) for row in (await db.execute(query)).all()]
