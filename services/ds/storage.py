"""The ds service's tables and the queries on them.

- `profiles`: each user's consent (sms_auto_import, allowed senders) and calendar, from
  user.profile_updated. No row, no consent.
- `sms_messages`: what ingest kept of a message, one row per transaction (unique
  dedupe key per user): its state (booked, pending review, accepted, rejected, refund,
  credit), the parse as JSON, the expense it made or a refund's linked expense. The raw
  sender and body go when consent is turned off.
- `merchant_rules`: what a user's corrections taught (merchant key -> category and name).
- `categories`, `expenses` and `daily_spend`: copies of the ledger's categories and
  expenses (ledger/replica.py rules) and their rollup per (user, day, category,
  currency), which the insights read."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, NamedTuple

from sqlalchemy import (
    JSON,
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
    UniqueConstraint,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from services.ds.domain import Consent, Direction, Outcome, ParsedSms, SpendCopy
from services.kit.db.engine import Queryable, UtcDateTime
from services.kit.db.erasure import erased_users_table
from services.kit.db.sql import upsert_if_newer
from services.kit.events.tables import add_event_tables
from services.ledger.replica import CategoryInfo

Id = String(64)
CHUNK = 500

metadata = MetaData()
outbox_table, inbox_table = add_event_tables(metadata)
erased_users = erased_users_table(metadata)
Index("ix_erased_users_erased_at", erased_users.c.erased_at)

profiles = Table(
    "profiles",
    metadata,
    Column("user_id", Id, primary_key=True),
    Column("sms_auto_import", Boolean, nullable=False),
    Column("sms_allowed_senders", JSON, nullable=False),
    Column("time_zone", String(64), nullable=False),
    Column("first_day_of_week", String(9), nullable=False),
    Column("locale", String(35), nullable=False),
    # ProfileUpdated.version of the event applied: an event not above it is an older one
    # redelivered, and ignored (0: none applied, or from a user service without versions).
    Column("version", BigInteger, nullable=False, server_default="0"),
)

sms_messages = Table(
    "sms_messages",
    metadata,
    Column("message_id", Id, primary_key=True),
    Column("user_id", Id, nullable=False),
    Column("dedupe_key", String(300), nullable=False),
    # "booked", "pending", "accepted", "rejected", "refund", "credit".
    Column("state", String(10), nullable=False),
    # NULL once consent is withdrawn.
    Column("sender", String(32), nullable=True),
    Column("body", Text, nullable=True),
    Column("received_at", UtcDateTime, nullable=False),
    Column("parsed", Text, nullable=False),
    Column("expense_id", Id, nullable=False),
    Column("linked_expense_id", Id, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    UniqueConstraint("user_id", "dedupe_key", name="uq_sms_messages_user_key"),
    Index("ix_sms_messages_user_state", "user_id", "state", "message_id"),
)

merchant_rules = Table(
    "merchant_rules",
    metadata,
    Column("user_id", Id, nullable=False),
    Column("merchant_key", String(100), nullable=False),
    Column("merchant", String(200), nullable=False),
    Column("category_id", Id, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    PrimaryKeyConstraint("user_id", "merchant_key"),
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
    Column("merchant_key", String(100), nullable=False),
    Column("source", String(16), nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("deleted", Boolean, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    PrimaryKeyConstraint("user_id", "expense_id"),
    Index("ix_expenses_user_merchant_day", "user_id", "merchant_key", "spent_on"),
)

# Charges per (user, merchant, month): which merchants are charged few enough times to be
# a subscription, without reading a heavy user's every expense (services/ds/insights.py).
merchant_months = Table(
    "merchant_months",
    metadata,
    Column("user_id", Id, nullable=False),
    Column("merchant_key", String(100), nullable=False),
    Column("month", Date, nullable=False),
    Column("count", Integer, nullable=False),
    PrimaryKeyConstraint("user_id", "merchant_key", "month"),
)

digests = Table(
    "digests",
    metadata,
    Column("user_id", Id, nullable=False),
    # The first day of the user's week the digest was for.
    Column("week_start", Date, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    PrimaryKeyConstraint("user_id", "week_start"),
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


def _dialect(session: AsyncSession) -> Any:
    return postgresql if session.bind.dialect.name == "postgresql" else sqlite


# ---------------------------------------------------------------- profiles


@dataclass(frozen=True)
class Calendar:
    time_zone: str
    first_day_of_week: str
    locale: str


async def load_consent(connection: Queryable, user_id: str, *, lock: bool = False) -> Consent:
    """`lock` holds the row (PostgreSQL) until the transaction ends, so the consent read is
    still the one a following save_profile replaces (SQLite serialises transactions)."""
    query = select(profiles).where(profiles.c.user_id == user_id)
    row = (await connection.execute(query.with_for_update() if lock else query)).first()
    if row is None:
        return Consent()
    return Consent(bool(row.sms_auto_import), frozenset(row.sms_allowed_senders or ()))


async def load_calendar(connection: Queryable, user_id: str, default: Calendar) -> Calendar:
    row = (await connection.execute(select(profiles).where(profiles.c.user_id == user_id))).first()
    return default if row is None else Calendar(row.time_zone, row.first_day_of_week, row.locale)


async def save_profile(
    session: AsyncSession, user_id: str, consent: Consent, calendar: Calendar, version: int
) -> bool:
    """The profile at `version`, unless the copy holds this version or a newer one; True when saved."""
    values = {
        "sms_auto_import": consent.auto_import,
        "sms_allowed_senders": sorted(consent.allowed_senders),
        "time_zone": calendar.time_zone,
        "first_day_of_week": calendar.first_day_of_week,
        "locale": calendar.locale,
    }
    row = {"user_id": user_id, "version": version, **values}
    return await upsert_if_newer(session, profiles, row, values, "version")


async def forget_raw_messages(session: AsyncSession, user_id: str) -> None:
    """Consent withdrawn: pending reviews (nothing but the message) go, the others keep
    only what dedupes a later message and links an expense."""
    await session.execute(
        delete(sms_messages).where(sms_messages.c.user_id == user_id, sms_messages.c.state == "pending")
    )
    await session.execute(
        update(sms_messages).where(sms_messages.c.user_id == user_id).values(sender=None, body=None)
    )


# ---------------------------------------------------------------- messages


def parsed_json(parsed: ParsedSms) -> str:
    return json.dumps({name: _plain(value) for name, value in parsed.__dict__.items()}, sort_keys=True)


def _plain(value: object) -> object:
    if isinstance(value, Decimal | date):
        return str(value)
    if isinstance(value, Outcome | Direction):
        return value.value
    return value


def parsed_from_json(text: str) -> ParsedSms:
    values: dict[str, Any] = json.loads(text)
    decimals = ("amount", "foreign_amount", "balance", "available_limit", "confidence")
    for name in decimals:
        values[name] = Decimal(values[name]) if values.get(name) is not None else None
    values["confidence"] = values["confidence"] or Decimal(0)
    values["outcome"] = Outcome(values["outcome"])
    values["direction"] = Direction(values["direction"]) if values.get("direction") else None
    values["txn_date"] = date.fromisoformat(values["txn_date"]) if values.get("txn_date") else None
    return ParsedSms(**values)


@dataclass(frozen=True)
class StoredMessage:
    message_id: str
    user_id: str
    dedupe_key: str
    state: str
    sender: str
    body: str
    received_at: datetime
    parsed: ParsedSms
    expense_id: str
    linked_expense_id: str
    created_at: datetime


def _message(row: Any) -> StoredMessage:
    return StoredMessage(
        message_id=row.message_id,
        user_id=row.user_id,
        dedupe_key=row.dedupe_key,
        state=row.state,
        sender=row.sender or "",
        body=row.body or "",
        received_at=row.received_at,
        parsed=parsed_from_json(row.parsed),
        expense_id=row.expense_id,
        linked_expense_id=row.linked_expense_id,
        created_at=row.created_at,
    )


async def find_message_by_key(connection: Queryable, user_id: str, dedupe_key: str) -> StoredMessage | None:
    query = select(sms_messages).where(
        sms_messages.c.user_id == user_id, sms_messages.c.dedupe_key == dedupe_key
    )
    row = (await connection.execute(query)).first()
    return None if row is None else _message(row)


async def find_message(
    connection: Queryable, user_id: str, message_id: str, *, lock: bool = False
) -> StoredMessage | None:
    query = select(sms_messages).where(
        sms_messages.c.user_id == user_id, sms_messages.c.message_id == message_id
    )
    if lock:
        query = query.with_for_update()
    row = (await connection.execute(query)).first()
    return None if row is None else _message(row)


async def add_message(session: AsyncSession, message: StoredMessage) -> bool:
    """False when the user already has a message of this transaction (a racing twin)."""
    row = {
        "message_id": message.message_id,
        "user_id": message.user_id,
        "dedupe_key": message.dedupe_key,
        "state": message.state,
        "sender": message.sender,
        "body": message.body,
        "received_at": message.received_at,
        "parsed": parsed_json(message.parsed),
        "expense_id": message.expense_id,
        "linked_expense_id": message.linked_expense_id,
        "created_at": message.created_at,
        "updated_at": message.created_at,
    }
    statement = _dialect(session).insert(sms_messages).values(**row).on_conflict_do_nothing()
    result = await session.execute(statement.returning(sms_messages.c.message_id))
    return result.first() is not None


async def settle_message(
    session: AsyncSession, message_id: str, state: str, expense_id: str, parsed: ParsedSms, now: datetime
) -> None:
    await session.execute(
        update(sms_messages)
        .where(sms_messages.c.message_id == message_id)
        .values(state=state, expense_id=expense_id, parsed=parsed_json(parsed), updated_at=now)
    )


async def pending_reviews(connection: Queryable, user_id: str, after: str, limit: int) -> list[StoredMessage]:
    query = (
        select(sms_messages)
        .where(
            sms_messages.c.user_id == user_id,
            sms_messages.c.state == "pending",
            sms_messages.c.message_id > after,
        )
        .order_by(sms_messages.c.message_id)
        .limit(limit)
    )
    return [_message(row) for row in await connection.execute(query)]


# ---------------------------------------------------------------- merchant rules and categories


async def merchant_rules_of(
    connection: Queryable, user_id: str, keys: Collection[str]
) -> dict[str, tuple[str, str]]:
    """{merchant key: (category id, merchant name)} the user's corrections taught."""
    if not keys:
        return {}
    query = select(merchant_rules).where(
        merchant_rules.c.user_id == user_id, merchant_rules.c.merchant_key.in_(sorted(keys))
    )
    return {row.merchant_key: (row.category_id, row.merchant) for row in await connection.execute(query)}


async def learn_merchant(
    session: AsyncSession, user_id: str, key: str, merchant: str, category_id: str, now: datetime
) -> None:
    values = {"merchant": merchant, "category_id": category_id, "updated_at": now}
    statement = _dialect(session).insert(merchant_rules).values(user_id=user_id, merchant_key=key, **values)
    await session.execute(
        statement.on_conflict_do_update(index_elements=["user_id", "merchant_key"], set_=values)
    )


async def usual_categories(connection: Queryable, user_id: str, keys: Collection[str]) -> dict[str, str]:
    """{merchant key: the category the user's expenses there were most often in}."""
    if not keys:
        return {}
    query = (
        select(expenses.c.merchant_key, expenses.c.category_id, func.count().label("n"))
        .where(
            expenses.c.user_id == user_id,
            expenses.c.merchant_key.in_(sorted(keys)),
            expenses.c.deleted.is_(False),
            expenses.c.category_id != "",
        )
        .group_by(expenses.c.merchant_key, expenses.c.category_id)
    )
    best: dict[str, tuple[int, str]] = {}
    for row in await connection.execute(query):
        if row.n > best.get(row.merchant_key, (0, ""))[0]:
            best[row.merchant_key] = (row.n, row.category_id)
    return {key: category for key, (_, category) in best.items()}


async def category_names(connection: Queryable, user_id: str) -> dict[str, str]:
    """{category id: name} of the user's live categories."""
    query = select(categories.c.category_id, categories.c.name).where(
        categories.c.user_id == user_id, categories.c.deleted.is_(False)
    )
    return {row.category_id: row.name for row in await connection.execute(query)}


async def save_categories(session: AsyncSession, user_id: str, infos: Iterable[CategoryInfo]) -> None:
    dialect = _dialect(session)
    for info in infos:
        values = {
            "name": info.name,
            "parent_id": info.parent_id,
            "deleted": info.deleted,
            "reassigned_to": info.reassigned_to,
        }
        statement = dialect.insert(categories).values(user_id=user_id, category_id=info.category_id, **values)
        await session.execute(
            statement.on_conflict_do_update(index_elements=["user_id", "category_id"], set_=values)
        )


# ---------------------------------------------------------------- expense copies and rollup


# (user, day, category, currency) -> (sum delta, count delta)
SpendDeltas = Mapping[tuple[str, date, str, str], tuple[int, int]]


async def apply_spend_deltas(session: AsyncSession, deltas: SpendDeltas) -> None:
    dialect = _dialect(session)
    for (user_id, day, category_id, currency), (amount, count) in sorted(deltas.items()):
        if amount == 0 and count == 0:
            continue
        statement = dialect.insert(daily_spend).values(
            user_id=user_id,
            day=day,
            category_id=category_id,
            currency=currency,
            sum_minor=amount,
            count=count,
        )
        await session.execute(
            statement.on_conflict_do_update(
                index_elements=["user_id", "day", "category_id", "currency"],
                set_={
                    "sum_minor": daily_spend.c.sum_minor + statement.excluded.sum_minor,
                    "count": daily_spend.c.count + statement.excluded.count,
                },
            )
        )


# (user, merchant key, first day of month) -> count delta
MerchantDeltas = Mapping[tuple[str, str, date], int]


async def apply_merchant_deltas(session: AsyncSession, deltas: MerchantDeltas) -> None:
    dialect = _dialect(session)
    for (user_id, key, month), count in sorted(deltas.items()):
        statement = dialect.insert(merchant_months).values(
            user_id=user_id, merchant_key=key, month=month, count=count
        )
        await session.execute(
            statement.on_conflict_do_update(
                index_elements=["user_id", "merchant_key", "month"],
                set_={"count": merchant_months.c.count + statement.excluded["count"]},
            )
        )


class DailyRow(NamedTuple):
    """A day's spending in one category and currency (a tuple: a heavy user's insights
    read thousands of them per request)."""

    day: date
    category_id: str
    currency: str
    sum_minor: int


async def daily_rows(connection: Queryable, user_id: str, start: date, end: date) -> list[DailyRow]:
    query = select(
        daily_spend.c.day, daily_spend.c.category_id, daily_spend.c.currency, daily_spend.c.sum_minor
    ).where(daily_spend.c.user_id == user_id, daily_spend.c.day.between(start, end), daily_spend.c.count > 0)
    return [DailyRow._make(row) for row in await connection.execute(query)]


async def refund_candidates(
    connection: Queryable, user_id: str, key: str, currency: str, start: date, end: date
) -> list[SpendCopy]:
    query = select(expenses).where(
        expenses.c.user_id == user_id,
        expenses.c.merchant_key == key,
        expenses.c.currency == currency,
        expenses.c.spent_on.between(start, end),
        expenses.c.deleted.is_(False),
    )
    return [
        SpendCopy(row.expense_id, row.amount_minor, row.currency, row.spent_on, row.merchant, row.category_id)
        for row in await connection.execute(query)
    ]


async def recurring_charges(
    connection: Queryable, user_id: str, since: date, min_count: int, max_count: int
) -> list[Any]:
    """Live expenses since a day of merchants charged between min_count and max_count times
    in the months since (more often is a grocer, not a subscription): the subscription
    detector's input. The merchants come from the monthly counts, the charges by index."""
    merchants = (
        select(merchant_months.c.merchant_key)
        .where(
            merchant_months.c.user_id == user_id,
            merchant_months.c.month >= since.replace(day=1),
            merchant_months.c.merchant_key != "",
        )
        .group_by(merchant_months.c.merchant_key)
        .having(func.sum(merchant_months.c.count).between(min_count, max_count))
    )
    keys = [row.merchant_key for row in await connection.execute(merchants)]
    if not keys:
        return []
    query = select(
        expenses.c.expense_id,
        expenses.c.spent_on,
        expenses.c.merchant,
        expenses.c.amount_minor,
        expenses.c.currency,
    ).where(
        expenses.c.user_id == user_id,
        expenses.c.merchant_key.in_(keys),
        expenses.c.spent_on >= since,
        expenses.c.deleted.is_(False),
    )
    return list(await connection.execute(query))


async def active_users(connection: Queryable, since: date, after: str, limit: int) -> list[str]:
    """Users with spending since a day, in id order after `after`."""
    query = (
        select(daily_spend.c.user_id)
        .where(daily_spend.c.day >= since, daily_spend.c.count > 0, daily_spend.c.user_id > after)
        .group_by(daily_spend.c.user_id)
        .order_by(daily_spend.c.user_id)
        .limit(limit)
    )
    return [row.user_id for row in await connection.execute(query)]


async def digest_sent(connection: Queryable, user_id: str, week_start: date) -> bool:
    query = select(digests.c.user_id).where(digests.c.user_id == user_id, digests.c.week_start == week_start)
    return (await connection.execute(query)).first() is not None


async def claim_digest(session: AsyncSession, user_id: str, week_start: date, now: datetime) -> bool:
    """False when the week's digest exists already (the primary key decides a race)."""
    statement = (
        _dialect(session).insert(digests).values(user_id=user_id, week_start=week_start, created_at=now)
    )
    result = await session.execute(statement.on_conflict_do_nothing().returning(digests.c.user_id))
    return result.first() is not None


async def clear_copies(session: AsyncSession, user_id: str) -> None:
    """Drops a user's copies and rollup before a rebuild (merchant rules and messages stay)."""
    for table in (expenses, daily_spend, merchant_months, categories):
        await session.execute(delete(table).where(table.c.user_id == user_id))


async def expense_version(connection: Queryable, user_id: str, expense_id: str) -> int | None:
    """The ledger version of this service's copy of an expense (a tombstone's too); None
    when it has none (read-your-writes, services/kit/consistency.py)."""
    query = select(expenses.c.version).where(
        expenses.c.user_id == user_id, expenses.c.expense_id == expense_id
    )
    return (await connection.execute(query)).scalar()
