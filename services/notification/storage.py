"""notification's tables and the queries on them.

- `notifications`: one per source event and user (UNIQUE event_id): what the event
  said (template, variables, severity) and its in-app rendering, read or not.
- `deliveries`: one per event and channel (UNIQUE(event_id, channel): a redelivered
  event, a second replica or a replayed job never makes a second message), its
  status (moving forward only), attempts, provider message id, error and template.
- `preferences`, `contact_points`: the user's choices and addresses.
- `inbox`: the kit's record of applied events."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, time
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    bindparam,
    delete,
    func,
    literal,
    or_,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from services.kit.db.engine import Queryable, UtcDateTime
from services.kit.db.erasure import erased_users_table
from services.kit.db.sql import insert_ignore, insert_ignore_many, upsert_if_newer
from services.kit.events.consumer import inbox_table as kit_inbox_table
from services.notification.domain import QUEUED, STATUS_RANK, Preferences, can_move

metadata = MetaData()
inbox_table = kit_inbox_table(metadata)
ID = String(36)

notifications = Table(
    "notifications",
    metadata,
    Column("notification_id", ID, primary_key=True),
    Column("user_id", ID, nullable=False),
    Column("event_id", String(100), nullable=False, unique=True),
    Column("source", String(100), nullable=False),
    Column("template_key", String(100), nullable=False),
    Column("variables", Text, nullable=False),
    Column("severity", String(16), nullable=False),
    Column("title", Text, nullable=False),
    Column("body", Text, nullable=False),
    # Set once its in-app delivery is done: the inbox lists only those.
    Column("shown", Boolean, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("read_at", UtcDateTime, nullable=True),
    Index("ix_notifications_user", "user_id", "notification_id"),
)
deliveries = Table(
    "deliveries",
    metadata,
    Column("delivery_id", ID, primary_key=True),
    Column("notification_id", ID, nullable=False),
    Column("user_id", ID, nullable=False),
    Column("event_id", String(100), nullable=False),
    Column("channel", String(16), nullable=False),
    Column("address", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("provider_message_id", String(200), nullable=True),
    Column("error", Text, nullable=False),
    Column("template", String(120), nullable=False),
    Column("deferred_until", UtcDateTime, nullable=True),
    Column("in_digest", Boolean, nullable=False),
    Column("digest_delivery_id", ID, nullable=True),
    # A worker is sending it until then (another job for it waits); NULL: nobody.
    Column("claimed_until", UtcDateTime, nullable=True),
    # When its job was last put on the work queue; NULL: not queued (new, deferred, replayed).
    Column("enqueued_at", UtcDateTime, nullable=True),
    Column("dead_lettered_at", UtcDateTime, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("sent_at", UtcDateTime, nullable=True),
    UniqueConstraint("event_id", "channel", name="uq_deliveries_event_channel"),
    Index("ix_deliveries_notification", "notification_id"),
    Index("ix_deliveries_provider_message", "provider_message_id"),
    # A daily cap's count: what was sent in the window, and (sent_at NULL) what is being
    # sent now, a range of claimed_until instead of every unsent delivery of a backlog.
    Index("ix_deliveries_user_sent", "user_id", "channel", "sent_at", "claimed_until"),
    Index("ix_deliveries_unqueued", "status", "enqueued_at"),
)
preferences = Table(
    "preferences",
    metadata,
    Column("user_id", ID, primary_key=True),
    Column("rules", Text, nullable=False),
    Column("quiet_start", String(5), nullable=False),
    Column("quiet_end", String(5), nullable=False),
    Column("time_zone", String(64), nullable=False),
    Column("digest", Boolean, nullable=False),
    Column("digest_time", String(5), nullable=False),
    Column("daily_caps", Text, nullable=False),
    Column("locale", String(35), nullable=False),
    Column("display_name", String(200), nullable=False, server_default=""),
    Column("updated_at", UtcDateTime, nullable=False),
    # ProfileUpdated.version behind time_zone and locale (the profile copy): an event not
    # above it is an older one redelivered, and ignored (0: none applied yet).
    Column("profile_version", BigInteger, nullable=False, server_default="0"),
)
contact_points = Table(
    "contact_points",
    metadata,
    Column("contact_point_id", ID, primary_key=True),
    Column("user_id", ID, nullable=False),
    Column("channel", String(16), nullable=False),
    Column("address", Text, nullable=False),
    Column("verified_at", UtcDateTime, nullable=True),
    Column("code_digest", String(64), nullable=False),
    Column("code_expires_at", UtcDateTime, nullable=True),
    Column("code_attempts", Integer, nullable=False),
    # Webhooks: the signing secret (needed to sign every message).
    Column("secret", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("user_id", "channel", "address", name="uq_contact_points_address"),
)
# Users erased lately: their late source events (a reset requested just before the
# deletion) make no message and bring no row back.
erased_users = erased_users_table(metadata)
Index("ix_erased_users_erased_at", erased_users.c.erased_at)


@dataclass(frozen=True)
class NotificationRow:
    notification_id: str
    user_id: str
    event_id: str
    source: str
    template_key: str
    variables: dict[str, Any]
    severity: str
    title: str
    body: str
    shown: bool
    created_at: datetime
    read_at: datetime | None


@dataclass(frozen=True)
class DeliveryRow:
    delivery_id: str
    notification_id: str
    user_id: str
    event_id: str
    channel: str
    address: str
    status: str
    attempts: int
    provider_message_id: str | None
    error: str
    template: str
    deferred_until: datetime | None
    in_digest: bool
    digest_delivery_id: str | None
    claimed_until: datetime | None
    enqueued_at: datetime | None
    dead_lettered_at: datetime | None
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None


@dataclass(frozen=True)
class ContactPointRow:
    contact_point_id: str
    user_id: str
    channel: str
    address: str
    verified_at: datetime | None
    code_digest: str
    code_expires_at: datetime | None
    code_attempts: int
    secret: str
    created_at: datetime


def _notification(row: Any) -> NotificationRow:
    values = row._asdict()
    values["variables"] = json.loads(values["variables"])
    return NotificationRow(**values)


def _delivery(row: Any) -> DeliveryRow:
    return DeliveryRow(**row._asdict())


def _contact(row: Any) -> ContactPointRow:
    return ContactPointRow(**row._asdict())


# ---------------------------------------------------------------- notifications


async def add_notification(session: AsyncSession, row: NotificationRow) -> bool:
    """False when the event already has its notification."""
    values = {**row.__dict__, "variables": json.dumps(row.variables, sort_keys=True)}
    return await insert_ignore(session, notifications, values)


async def add_notifications(session: AsyncSession, rows: Sequence[NotificationRow]) -> set[str]:
    """One multi-row INSERT; the event ids that had no notification yet (the others' rows
    are not inserted)."""
    values = [{**row.__dict__, "variables": json.dumps(row.variables, sort_keys=True)} for row in rows]
    return await insert_ignore_many(session, notifications, values, "event_id")


async def notifications_of_events(
    session: AsyncSession, event_ids: Iterable[str]
) -> dict[str, NotificationRow]:
    wanted = set(event_ids)
    if not wanted:
        return {}
    rows = await session.execute(select(notifications).where(notifications.c.event_id.in_(wanted)))
    return {row.event_id: _notification(row) for row in rows}


async def notifications_by_ids(db: Queryable, notification_ids: Iterable[str]) -> dict[str, NotificationRow]:
    wanted = set(notification_ids)
    if not wanted:
        return {}
    rows = await db.execute(select(notifications).where(notifications.c.notification_id.in_(wanted)))
    return {row.notification_id: _notification(row) for row in rows}


async def show_many(session: AsyncSession, shown: Sequence[tuple[str, str, str]]) -> None:
    """(notification id, title, body) each: one executemany."""
    if not shown:
        return
    statement = (
        update(notifications)
        .where(notifications.c.notification_id == bindparam("b_id"))
        .values(shown=True, title=bindparam("b_title"), body=bindparam("b_body"))
    )
    await session.execute(
        statement, [{"b_id": nid, "b_title": title, "b_body": body} for nid, title, body in shown]
    )


async def notification_of_event(session: AsyncSession, event_id: str) -> NotificationRow | None:
    row = (await session.execute(select(notifications).where(notifications.c.event_id == event_id))).first()
    return _notification(row) if row else None


async def list_notifications(
    db: Queryable, user_id: str, after: str, limit: int, unread_only: bool
) -> list[NotificationRow]:
    """Newest first (ids are UUIDv7), those older than `after` when set."""
    query = select(notifications).where(notifications.c.user_id == user_id, notifications.c.shown.is_(True))
    if after:
        query = query.where(notifications.c.notification_id < after)
    if unread_only:
        query = query.where(notifications.c.read_at.is_(None))
    query = query.order_by(notifications.c.notification_id.desc()).limit(limit)
    return [_notification(row) for row in await db.execute(query)]


async def unread_count(db: Queryable, user_id: str) -> int:
    query = select(func.count()).where(
        notifications.c.user_id == user_id, notifications.c.shown.is_(True), notifications.c.read_at.is_(None)
    )
    return int((await db.execute(query)).scalar_one())


async def get_notification(db: Queryable, user_id: str, notification_id: str) -> NotificationRow | None:
    query = select(notifications).where(
        notifications.c.user_id == user_id, notifications.c.notification_id == notification_id
    )
    row = (await db.execute(query)).first()
    return _notification(row) if row else None


async def mark_read(session: AsyncSession, user_id: str, notification_id: str, now: datetime) -> None:
    await session.execute(
        update(notifications)
        .where(
            notifications.c.user_id == user_id,
            notifications.c.notification_id == notification_id,
            notifications.c.read_at.is_(None),
        )
        .values(read_at=now)
    )


async def mark_all_read(session: AsyncSession, user_id: str, now: datetime) -> int:
    result = await session.execute(
        update(notifications)
        .where(
            notifications.c.user_id == user_id,
            notifications.c.shown.is_(True),
            notifications.c.read_at.is_(None),
        )
        .values(read_at=now)
        .returning(notifications.c.notification_id)
    )
    return len(result.all())


async def show(session: AsyncSession, notification_id: str, title: str, body: str) -> None:
    await session.execute(
        update(notifications)
        .where(notifications.c.notification_id == notification_id)
        .values(shown=True, title=title, body=body)
    )


async def notification_by_id(db: Queryable, notification_id: str) -> NotificationRow | None:
    row = (
        await db.execute(select(notifications).where(notifications.c.notification_id == notification_id))
    ).first()
    return _notification(row) if row else None


# ---------------------------------------------------------------- deliveries


async def add_delivery(session: AsyncSession, row: DeliveryRow) -> bool:
    """False when the event already has a delivery on this channel."""
    return await insert_ignore(session, deliveries, dict(row.__dict__))


async def add_deliveries(session: AsyncSession, rows: Sequence[DeliveryRow]) -> set[str]:
    """One multi-row INSERT; the ids of the rows inserted (an (event, channel) that had its
    delivery already keeps it)."""
    return await insert_ignore_many(session, deliveries, [dict(row.__dict__) for row in rows], "delivery_id")


async def deliveries_by_ids(db: Queryable, delivery_ids: Iterable[str]) -> list[DeliveryRow]:
    wanted = set(delivery_ids)
    if not wanted:
        return []
    return [
        _delivery(row)
        for row in await db.execute(select(deliveries).where(deliveries.c.delivery_id.in_(wanted)))
    ]


async def deliveries_of(db: Queryable, notification_id: str) -> list[DeliveryRow]:
    query = select(deliveries).where(deliveries.c.notification_id == notification_id)
    return [_delivery(row) for row in await db.execute(query.order_by(deliveries.c.channel))]


async def get_delivery(db: Queryable, delivery_id: str) -> DeliveryRow | None:
    row = (await db.execute(select(deliveries).where(deliveries.c.delivery_id == delivery_id))).first()
    return _delivery(row) if row else None


async def start_attempts(
    session: AsyncSession, delivery_ids: Iterable[str], now: datetime, claim_until: datetime
) -> list[DeliveryRow]:
    """Counts an attempt and claims each delivery before anything is sent, in one UPDATE:
    those claimed (the others are no longer to be sent: done, dead-lettered, held back,
    or another worker has them)."""
    wanted = set(delivery_ids)
    if not wanted:
        return []
    result = await session.execute(
        update(deliveries)
        .where(deliveries.c.delivery_id.in_(wanted), *_claimable(now))
        .values(
            attempts=deliveries.c.attempts + 1, updated_at=now, deferred_until=None, claimed_until=claim_until
        )
        .returning(*deliveries.c)
    )
    return [_delivery(row) for row in result]


def _claimable(now: datetime) -> list[Any]:
    return [
        deliveries.c.status == QUEUED,
        deliveries.c.dead_lettered_at.is_(None),
        deliveries.c.in_digest.is_(False),
        or_(deliveries.c.deferred_until.is_(None), deliveries.c.deferred_until <= now),
        or_(deliveries.c.claimed_until.is_(None), deliveries.c.claimed_until <= now),
    ]


async def release(
    session: AsyncSession, delivery_id: str, until: datetime, now: datetime, reason: str
) -> None:
    """A claim held back after all (quiet hours, the daily cap): deferred as if it had
    never been claimed (its attempt uncounted), for the sweep to queue again at `until`."""
    await session.execute(
        update(deliveries)
        .where(deliveries.c.delivery_id == delivery_id, deliveries.c.status == QUEUED)
        .values(
            attempts=deliveries.c.attempts - 1, deferred_until=until, enqueued_at=None, error=reason,
            updated_at=now, claimed_until=None,
        )
    )  # fmt: skip


@dataclass(frozen=True)
class Result:
    """A delivery's result to record: its status and what the send said."""

    delivery_id: str
    status: str
    provider_message_id: str | None = None
    template: str | None = None
    error: str | None = None


async def advance_each(session: AsyncSession, results: Sequence[Result], now: datetime) -> int:
    """advance() of deliveries with values of their own: one executemany per status
    (all columns set: an absent value keeps the row's); how many moved."""
    moved = 0
    by_status: dict[str, list[Result]] = {}
    for result in results:
        by_status.setdefault(result.status, []).append(result)
    for status, group in by_status.items():
        lower = [current for current in STATUS_RANK if can_move(current, status)]
        values: dict[str, Any] = {
            "status": status,
            "updated_at": now,
            "claimed_until": None,
            "provider_message_id": func.coalesce(
                bindparam("b_pmid", type_=String), deliveries.c.provider_message_id
            ),
            "template": func.coalesce(bindparam("b_template", type_=String), deliveries.c.template),
            "error": func.coalesce(bindparam("b_error", type_=Text), deliveries.c.error),
        }
        if status != QUEUED:
            values["sent_at"] = func.coalesce(deliveries.c.sent_at, now)
        statement = (
            update(deliveries)
            # Literals, not an expanding IN: executemany takes plain parameters only.
            .where(
                deliveries.c.delivery_id == bindparam("b_id"),
                deliveries.c.status.in_([literal(current) for current in lower]),
            )
            .values(**values)
        )
        params = [
            {
                "b_id": o.delivery_id,
                "b_pmid": o.provider_message_id,
                "b_template": o.template,
                "b_error": o.error,
            }
            for o in group
        ]
        updated = await session.execute(statement, params)
        moved += max(updated.rowcount, 0)
    return moved


async def advance(
    session: AsyncSession,
    delivery_ids: list[str],
    status: str,
    now: datetime,
    *,
    provider_message_id: str | None = None,
    template: str | None = None,
    error: str | None = None,
) -> int:
    """Moves deliveries to `status` where it is a step forward; how many moved."""
    lower = [current for current, rank in STATUS_RANK.items() if can_move(current, status)]
    values: dict[str, Any] = {"status": status, "updated_at": now}
    if provider_message_id is not None:
        values["provider_message_id"] = provider_message_id
    if template is not None:
        values["template"] = template
    if error is not None:
        values["error"] = error
    values["claimed_until"] = None
    if status != QUEUED:
        values["sent_at"] = func.coalesce(deliveries.c.sent_at, now)
    result = await session.execute(
        update(deliveries)
        .where(deliveries.c.delivery_id.in_(delivery_ids), deliveries.c.status.in_(lower))
        .values(**values)
        .returning(deliveries.c.delivery_id)
    )
    return len(result.all())


async def delivery_ids_of_provider_message(session: AsyncSession, provider_message_id: str) -> list[str]:
    query = select(deliveries.c.delivery_id).where(deliveries.c.provider_message_id == provider_message_id)
    return [row.delivery_id for row in await session.execute(query)]


async def note_errors(session: AsyncSession, errors: Sequence[tuple[str, str]], now: datetime) -> None:
    """(delivery id, error) pairs: their claims end, their errors noted (a statement per
    distinct error: a batch's retries mostly share one)."""
    for error, ids in _grouped(errors).items():
        await session.execute(
            update(deliveries)
            .where(deliveries.c.delivery_id.in_(ids))
            .values(error=error, updated_at=now, claimed_until=None)
        )


def _grouped(pairs: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for delivery_id, error in pairs:
        groups.setdefault(error, []).append(delivery_id)
    return groups


async def hold_for_digest(session: AsyncSession, delivery_id: str, until: datetime, now: datetime) -> None:
    await session.execute(
        update(deliveries)
        .where(deliveries.c.delivery_id == delivery_id, deliveries.c.status == QUEUED)
        .values(in_digest=True, deferred_until=until, enqueued_at=None, updated_at=now)
    )


async def lock_daily_caps(session: AsyncSession, groups: Sequence[tuple[str, str]]) -> None:
    """Serialises the cap's count-then-claim of each (user, channel) until the transaction
    ends (PostgreSQL: transaction advisory locks, taken in one statement in sorted order,
    so two workers' batches never wait on each other crosswise). SQLite needs none: the
    claim before takes its database-wide write lock."""
    if session.bind.dialect.name != "postgresql" or not groups:
        return
    keys = [f"notification-cap:{user_id}:{channel}" for user_id, channel in sorted(set(groups))]
    await session.execute(_LOCK_IN_ORDER, {"keys": keys})


_LOCK_IN_ORDER = text(
    "SELECT pg_advisory_xact_lock(hashtextextended(k, 0))"
    " FROM unnest(CAST(:keys AS text[])) WITH ORDINALITY AS t(k, n) ORDER BY n"
).bindparams(bindparam("keys", type_=ARRAY(Text)))


@dataclass(frozen=True)
class CapWindow:
    user_id: str
    channel: str
    start: datetime
    end: datetime


async def used_today_many(
    session: AsyncSession, windows: Sequence[CapWindow], now: datetime
) -> dict[tuple[str, str], int]:
    """Messages each (user, channel) carried in its own day [start, end) (a digest counts
    once), plus those being sent now (claimed by a worker: a cap counts them before they
    land), in one statement, each count a range of ix_deliveries_user_sent."""
    if not windows:
        return {}
    if session.bind.dialect.name == "postgresql":
        rows = await session.execute(_USED_PER_WINDOW, _window_arrays(windows, now))
    else:  # SQLite: no multi-array unnest; a UNION ALL of the counts
        counts = [
            select(literal(index + 1), _used(literal(w.user_id), literal(w.channel), w.start, w.end, now))
            for index, w in enumerate(windows)
        ]
        rows = await session.execute(union_all(*counts))
    used = {int(row[0]): int(row[1]) for row in rows}
    return {(w.user_id, w.channel): used[index + 1] for index, w in enumerate(windows)}


def _used(user_id: Any, channel: Any, start: Any, end: Any, now: Any) -> Any:
    sent = and_(deliveries.c.sent_at >= start, deliveries.c.sent_at < end)
    # Both halves are ranges of ix_deliveries_user_sent.
    in_flight = and_(
        deliveries.c.sent_at.is_(None), deliveries.c.status == QUEUED, deliveries.c.claimed_until > now
    )
    counted = func.count(
        func.distinct(func.coalesce(deliveries.c.digest_delivery_id, deliveries.c.delivery_id))
    )
    query = select(counted).where(
        deliveries.c.user_id == user_id, deliveries.c.channel == channel, or_(sent, in_flight)
    )
    return query.scalar_subquery()


def _used_per_window() -> Any:
    """PostgreSQL: the windows as arrays unnested side by side: one statement of one shape
    (compiled once) however many windows."""
    arrays = [
        bindparam("user_ids", type_=ARRAY(String)),
        bindparam("channels", type_=ARRAY(String)),
        bindparam("starts", type_=ARRAY(DateTime(timezone=True))),
        bindparam("ends", type_=ARRAY(DateTime(timezone=True))),
    ]
    window = (
        func.unnest(*arrays)
        .table_valued("user_id", "channel", "start", "end", with_ordinality="n")
        .render_derived(name="w")
    )
    now = bindparam("now", type_=DateTime(timezone=True))
    used = _used(window.c.user_id, window.c.channel, window.c.start, window.c.end, now)
    return select(window.c.n, used)


_USED_PER_WINDOW = _used_per_window()


def _window_arrays(windows: Sequence[CapWindow], now: datetime) -> dict[str, Any]:
    return {
        "user_ids": [w.user_id for w in windows],
        "channels": [w.channel for w in windows],
        "starts": [w.start for w in windows],
        "ends": [w.end for w in windows],
        "now": now,
    }


async def due_for_queue(
    session: AsyncSession,
    now: datetime,
    unqueued_before: datetime,
    limit: int,
    lost_before: datetime | None = None,
) -> list[DeliveryRow]:
    """Deliveries to (re)queue, not in a digest, not dead-lettered: never queued since
    committed (a crash in between), deferred until now, or queued before `lost_before`,
    unclaimed and still waiting (a job lost with its worker). Marked queued at once."""
    due = and_(
        deliveries.c.enqueued_at.is_(None),
        or_(
            and_(deliveries.c.deferred_until.is_(None), deliveries.c.created_at < unqueued_before),
            deliveries.c.deferred_until <= now,
        ),
    )
    if lost_before is not None:
        lost = and_(
            deliveries.c.enqueued_at < lost_before,
            or_(deliveries.c.claimed_until.is_(None), deliveries.c.claimed_until <= now),
        )
        due = or_(due, lost)
    query = (
        select(deliveries)
        .where(
            deliveries.c.status == QUEUED,
            deliveries.c.in_digest.is_(False),
            deliveries.c.dead_lettered_at.is_(None),
            due,
        )
        .limit(limit)
    )
    if session.bind.dialect.name == "postgresql":
        # Two replicas' sweeps take different rows.
        query = query.with_for_update(skip_locked=True)
    rows = [_delivery(row) for row in await session.execute(query)]
    if rows:
        await mark_enqueued(session, [row.delivery_id for row in rows], now)
    return rows


async def mark_enqueued(session: AsyncSession, delivery_ids: list[str], now: datetime) -> None:
    await session.execute(
        update(deliveries).where(deliveries.c.delivery_id.in_(delivery_ids)).values(enqueued_at=now)
    )


async def digests_due(session: AsyncSession, now: datetime, limit: int) -> list[DeliveryRow]:
    """Deliveries held for a digest whose time has come, oldest first."""
    query = (
        select(deliveries)
        .where(
            deliveries.c.status == QUEUED,
            deliveries.c.in_digest.is_(True),
            deliveries.c.digest_delivery_id.is_(None),
            deliveries.c.deferred_until <= now,
        )
        .order_by(deliveries.c.user_id, deliveries.c.channel, deliveries.c.delivery_id)
        .limit(limit)
    )
    if session.bind.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return [_delivery(row) for row in await session.execute(query)]


async def attach_to_digest(session: AsyncSession, delivery_ids: list[str], digest_delivery_id: str) -> None:
    await session.execute(
        update(deliveries)
        .where(deliveries.c.delivery_id.in_(delivery_ids))
        .values(digest_delivery_id=digest_delivery_id)
    )


async def digest_members(session: AsyncSession, digest_delivery_id: str) -> list[str]:
    query = select(deliveries.c.delivery_id).where(deliveries.c.digest_delivery_id == digest_delivery_id)
    return [row.delivery_id for row in await session.execute(query)]


async def mark_dead(session: AsyncSession, dead: Sequence[tuple[str, str]], now: datetime) -> None:
    """(delivery id, reason) pairs: dead-lettered, their claims ended."""
    for error, ids in _grouped(dead).items():
        await session.execute(
            update(deliveries)
            .where(deliveries.c.delivery_id.in_(ids))
            .values(dead_lettered_at=now, error=error, updated_at=now, claimed_until=None)
        )


async def revive(session: AsyncSession, delivery_id: str, now: datetime) -> bool:
    """A replayed dead letter: queued again (enqueued now by the replay itself)."""
    result = await session.execute(
        update(deliveries)
        .where(deliveries.c.delivery_id == delivery_id, deliveries.c.dead_lettered_at.is_not(None))
        .values(dead_lettered_at=None, enqueued_at=now, updated_at=now)
        .returning(deliveries.c.delivery_id)
    )
    return result.first() is not None


# ---------------------------------------------------------------- preferences


def _clock(value: str) -> time | None:
    return time.fromisoformat(value) if value else None


async def get_preferences(db: Queryable, user_id: str, default: Preferences) -> Preferences:
    row = (await db.execute(select(preferences).where(preferences.c.user_id == user_id))).first()
    return default if row is None else _preferences(row, default)


async def preferences_of(
    db: Queryable, user_ids: Iterable[str], default: Preferences
) -> dict[str, Preferences]:
    """Each user's preferences (`default` for those without a row), in one query."""
    wanted = set(user_ids)
    if not wanted:
        return {}
    rows = await db.execute(select(preferences).where(preferences.c.user_id.in_(wanted)))
    found = {row.user_id: _preferences(row, default) for row in rows}
    return {user_id: found.get(user_id, default) for user_id in wanted}


def _preferences(row: Any, default: Preferences) -> Preferences:
    return Preferences(
        rules={source: tuple(channels) for source, channels in json.loads(row.rules).items()},
        quiet_start=_clock(row.quiet_start),
        quiet_end=_clock(row.quiet_end),
        time_zone=row.time_zone,
        digest=row.digest,
        digest_time=_clock(row.digest_time) or default.digest_time,
        daily_caps=json.loads(row.daily_caps),
        locale=row.locale,
        display_name=row.display_name,
    )


async def save_preferences(session: AsyncSession, user_id: str, prefs: Preferences, now: datetime) -> None:
    """The user's choices. The profile copy (time zone, locale) only on a new row: its one
    writer is save_profile_copy, so a save that read the copy before a newer profile event
    committed never puts the older one back. The display name likewise (set_display_name),
    so a save racing the signup never erases it."""
    changed = (
        update(preferences).where(preferences.c.user_id == user_id).values(**_preference_values(prefs, now))
    )
    if (await session.execute(changed.returning(preferences.c.user_id))).first() is not None:
        return
    if not await _insert_preferences(session, user_id, prefs, now):
        # Another transaction made the row first (the signup's name): these choices win.
        await session.execute(changed)


@dataclass(frozen=True)
class ProfileCopy:
    """What notification keeps of the user's profile (user.profile_updated); "" unknown."""

    time_zone: str
    locale: str
    version: int


async def save_profile_copy(
    session: AsyncSession, user_id: str, copy: ProfileCopy, default: Preferences, now: datetime
) -> bool:
    """The time zone and locale of profile `copy.version` (an empty one keeps what the row
    has), unless the row holds this version or a newer one; a new row gets `default`'s
    choices. True when saved."""
    changes = {
        name: value for name, value in (("time_zone", copy.time_zone), ("locale", copy.locale)) if value
    }
    prefs = replace(default, **changes)
    row = {
        "user_id": user_id,
        "display_name": prefs.display_name,
        **_preference_values(prefs, now),
        **_profile_values(prefs),
        "profile_version": copy.version,
    }
    return await upsert_if_newer(session, preferences, row, {**changes, "updated_at": now}, "profile_version")


def _preference_values(prefs: Preferences, now: datetime) -> dict[str, Any]:
    return {
        "rules": json.dumps(
            {source: list(channels) for source, channels in prefs.rules.items()}, sort_keys=True
        ),
        "quiet_start": prefs.quiet_start.strftime("%H:%M") if prefs.quiet_start else "",
        "quiet_end": prefs.quiet_end.strftime("%H:%M") if prefs.quiet_end else "",
        "digest": prefs.digest,
        "digest_time": prefs.digest_time.strftime("%H:%M"),
        "daily_caps": json.dumps(prefs.daily_caps, sort_keys=True),
        "updated_at": now,
    }


def _profile_values(prefs: Preferences) -> dict[str, Any]:
    return {"time_zone": prefs.time_zone, "locale": prefs.locale}


async def _insert_preferences(session: AsyncSession, user_id: str, prefs: Preferences, now: datetime) -> bool:
    values = {
        "user_id": user_id,
        "display_name": prefs.display_name,
        **_preference_values(prefs, now),
        **_profile_values(prefs),
    }
    return await insert_ignore(session, preferences, values)


async def set_display_name(
    session: AsyncSession, user_id: str, name: str, default: Preferences, now: datetime
) -> None:
    """Only the name changes: the user's own choices saved meanwhile stay."""
    changed = update(preferences).where(preferences.c.user_id == user_id).values(display_name=name)
    if (await session.execute(changed.returning(preferences.c.user_id))).first() is not None:
        return
    if not await _insert_preferences(session, user_id, replace(default, display_name=name), now):
        # Another transaction made the row first (it waited for its commit): name it now.
        await session.execute(changed)


# ---------------------------------------------------------------- contact points


async def contact_points_of(db: Queryable, user_id: str) -> list[ContactPointRow]:
    query = select(contact_points).where(contact_points.c.user_id == user_id)
    return [_contact(row) for row in await db.execute(query.order_by(contact_points.c.contact_point_id))]


async def get_contact_point(db: Queryable, user_id: str, contact_point_id: str) -> ContactPointRow | None:
    query = select(contact_points).where(
        contact_points.c.user_id == user_id, contact_points.c.contact_point_id == contact_point_id
    )
    row = (await db.execute(query)).first()
    return _contact(row) if row else None


async def verified_address(db: Queryable, user_id: str, channel: str) -> ContactPointRow | None:
    """The user's newest verified contact point of a channel."""
    query = (
        select(contact_points)
        .where(
            contact_points.c.user_id == user_id,
            contact_points.c.channel == channel,
            contact_points.c.verified_at.is_not(None),
        )
        .order_by(contact_points.c.verified_at.desc(), contact_points.c.contact_point_id.desc())
        .limit(1)
    )
    row = (await db.execute(query)).first()
    return _contact(row) if row else None


async def verified_addresses(
    db: Queryable, user_ids: Iterable[str], channel: str
) -> dict[str, ContactPointRow]:
    """verified_address() of several users in one query."""
    wanted = set(user_ids)
    if not wanted:
        return {}
    query = (
        select(contact_points)
        .where(
            contact_points.c.user_id.in_(wanted),
            contact_points.c.channel == channel,
            contact_points.c.verified_at.is_not(None),
        )
        .order_by(contact_points.c.verified_at, contact_points.c.contact_point_id)
    )
    # Oldest first: the newest of each user is written last.
    return {row.user_id: _contact(row) for row in await db.execute(query)}


async def add_contact_point(session: AsyncSession, row: ContactPointRow) -> bool:
    return await insert_ignore(session, contact_points, dict(row.__dict__))


async def find_contact_point(
    session: AsyncSession, user_id: str, channel: str, address: str
) -> ContactPointRow | None:
    query = select(contact_points).where(
        contact_points.c.user_id == user_id,
        contact_points.c.channel == channel,
        contact_points.c.address == address,
    )
    row = (await session.execute(query)).first()
    return _contact(row) if row else None


async def count_contact_points(session: AsyncSession, user_id: str) -> int:
    query = select(func.count()).where(contact_points.c.user_id == user_id)
    return int((await session.execute(query)).scalar_one())


async def update_contact_point(session: AsyncSession, contact_point_id: str, **values: Any) -> None:
    await session.execute(
        update(contact_points).where(contact_points.c.contact_point_id == contact_point_id).values(**values)
    )


async def delete_contact_point(session: AsyncSession, user_id: str, contact_point_id: str) -> bool:
    result = await session.execute(
        delete(contact_points)
        .where(contact_points.c.user_id == user_id, contact_points.c.contact_point_id == contact_point_id)
        .returning(contact_points.c.contact_point_id)
    )
    return result.first() is not None
