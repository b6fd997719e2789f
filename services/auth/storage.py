"""Tables and repository functions of the auth service."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Column,
    ForeignKey,
    Index,
    MetaData,
    Row,
    String,
    Table,
    delete,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from services.auth.domain import (
    Account,
    OneTimeToken,
    RefreshTokenRecord,
    RevokeReason,
    SessionRecord,
    TokenPurpose,
)
from services.kit.db.engine import UtcDateTime
from services.kit.db.sql import insert_ignore
from services.kit.events.tables import add_event_tables

metadata = MetaData()
outbox, inbox = add_event_tables(metadata)

users = Table(
    "users",
    metadata,
    Column("id", String(36), primary_key=True),
    # Stored lowercased, so this also makes emails unique case-insensitively.
    Column("email", String(254), nullable=False, unique=True),
    Column("display_name", String(100), nullable=False),
    Column("password_hash", String(255), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("password_changed_at", UtcDateTime, nullable=False),
    Column("email_verified_at", UtcDateTime, nullable=True),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("user_id", String(36), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("last_used_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
    Column("revoke_reason", String(32), nullable=True),
    Column("user_agent", String(256), nullable=False),
    Column("ip_address", String(45), nullable=False),
    Index("ix_sessions_user_id", "user_id"),
    # For the purge of sessions long over.
    Index("ix_sessions_expires_at", "expires_at"),
    Index("ix_sessions_revoked_at", "revoked_at"),
)

# One row per refresh token ever issued; the rows of one session are its token family.
refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("session_id", String(36), ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("rotated_at", UtcDateTime, nullable=True),
    Index("ix_refresh_tokens_session_id", "session_id"),
)

# Password reset and email verification tokens: only the SHA-256 of each is stored.
one_time_tokens = Table(
    "one_time_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("user_id", String(36), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("purpose", String(32), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("used_at", UtcDateTime, nullable=True),
    Index("ix_one_time_tokens_user_purpose", "user_id", "purpose"),
    Index("ix_one_time_tokens_expires_at", "expires_at"),
)

# The devices (domain.device_key) each account signed in from: a login from another
# one is a new-device security event.
known_devices = Table(
    "known_devices",
    metadata,
    Column("user_id", String(36), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("device_key", String(64), primary_key=True),
    Column("first_seen_at", UtcDateTime, nullable=False),
    Column("last_seen_at", UtcDateTime, nullable=False),
)

_SESSION_COLUMNS = (
    sessions.c.id,
    sessions.c.user_id,
    sessions.c.created_at,
    sessions.c.last_used_at,
    sessions.c.expires_at,
    sessions.c.revoked_at,
    sessions.c.user_agent,
    sessions.c.ip_address,
)


def _account(row: Row[Any]) -> Account:
    return Account(
        user_id=row.user_id,
        email=row.email,
        display_name=row.display_name,
        email_verified=row.email_verified_at is not None,
    )


_ACCOUNT_COLUMNS = (
    users.c.id.label("user_id"),
    users.c.email,
    users.c.display_name,
    users.c.email_verified_at,
)


def _session(row: Row[Any]) -> SessionRecord:
    return SessionRecord(
        session_id=row.id,
        user_id=row.user_id,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        user_agent=row.user_agent,
        ip_address=row.ip_address,
    )


async def insert_user(db: AsyncSession, account: Account, password_hash: str, now: datetime) -> None:
    await db.execute(
        users.insert().values(
            id=account.user_id,
            email=account.email,
            display_name=account.display_name,
            password_hash=password_hash,
            created_at=now,
            password_changed_at=now,
        )
    )


async def email_taken(db: AsyncSession, email: str) -> bool:
    return (await db.execute(select(users.c.id).where(users.c.email == email))).first() is not None


async def credentials_by_email(db: AsyncSession, email: str) -> tuple[Account, str] | None:
    """The account and its password hash."""
    query = select(*_ACCOUNT_COLUMNS, users.c.password_hash).where(users.c.email == email)
    row = (await db.execute(query)).first()
    return (_account(row), row.password_hash) if row else None


async def credentials_by_id(db: AsyncSession, user_id: str) -> tuple[Account, str] | None:
    query = select(*_ACCOUNT_COLUMNS, users.c.password_hash).where(users.c.id == user_id)
    row = (await db.execute(query)).first()
    return (_account(row), row.password_hash) if row else None


async def set_password_hash(
    db: AsyncSession, user_id: str, password_hash: str, changed_at: datetime | None = None
) -> None:
    """changed_at is None for a rehash with stronger parameters (same password)."""
    values: dict[str, Any] = {"password_hash": password_hash}
    if changed_at is not None:
        values["password_changed_at"] = changed_at
    await db.execute(update(users).where(users.c.id == user_id).values(**values))


async def insert_session(db: AsyncSession, record: SessionRecord) -> None:
    await db.execute(
        sessions.insert().values(
            id=record.session_id,
            user_id=record.user_id,
            created_at=record.created_at,
            last_used_at=record.last_used_at,
            expires_at=record.expires_at,
            user_agent=record.user_agent,
            ip_address=record.ip_address,
        )
    )


async def insert_refresh_token(db: AsyncSession, token_hash: str, session_id: str, now: datetime) -> None:
    await db.execute(
        refresh_tokens.insert().values(token_hash=token_hash, session_id=session_id, created_at=now)
    )


async def find_refresh_token(db: AsyncSession, token_hash: str) -> RefreshTokenRecord | None:
    query = (
        select(
            refresh_tokens.c.token_hash,
            refresh_tokens.c.rotated_at.label("token_rotated_at"),
            *_SESSION_COLUMNS,
            users.c.email,
            users.c.display_name,
            users.c.email_verified_at,
        )
        .join(sessions, sessions.c.id == refresh_tokens.c.session_id)
        .join(users, users.c.id == sessions.c.user_id)
        .where(refresh_tokens.c.token_hash == token_hash)
    )
    row = (await db.execute(query)).first()
    if row is None:
        return None
    return RefreshTokenRecord(
        token_hash=row.token_hash,
        rotated_at=row.token_rotated_at,
        session=_session(row),
        account=_account(row),
    )


async def mark_rotated(db: AsyncSession, token_hash: str, now: datetime) -> bool:
    """False when a concurrent refresh rotated it first (the row lock makes this atomic)."""
    result = await db.execute(
        update(refresh_tokens)
        .where(refresh_tokens.c.token_hash == token_hash, refresh_tokens.c.rotated_at.is_(None))
        .values(rotated_at=now)
    )
    return bool(result.rowcount)


async def touch_session(db: AsyncSession, session_id: str, now: datetime) -> None:
    await db.execute(update(sessions).where(sessions.c.id == session_id).values(last_used_at=now))


async def session_by_id(db: AsyncSession, session_id: str) -> SessionRecord | None:
    row = (await db.execute(select(*_SESSION_COLUMNS).where(sessions.c.id == session_id))).first()
    return _session(row) if row else None


async def active_sessions(db: AsyncSession, user_id: str, now: datetime) -> list[SessionRecord]:
    query = (
        select(*_SESSION_COLUMNS)
        .where(sessions.c.user_id == user_id, sessions.c.revoked_at.is_(None), sessions.c.expires_at > now)
        .order_by(sessions.c.last_used_at.desc(), sessions.c.id.desc())
    )
    return [_session(row) for row in (await db.execute(query)).all()]


async def revoke_sessions(
    db: AsyncSession,
    user_id: str,
    reason: RevokeReason,
    now: datetime,
    *,
    only: str | None = None,
    keep: str | None = None,
) -> list[str]:
    """Ends the user's active sessions (`only` that one, or all but `keep`); returns their ids."""
    conditions = [sessions.c.user_id == user_id, sessions.c.revoked_at.is_(None), sessions.c.expires_at > now]
    if only is not None:
        conditions.append(sessions.c.id == only)
    if keep is not None:
        conditions.append(sessions.c.id != keep)
    statement = (
        update(sessions)
        .where(*conditions)
        .values(revoked_at=now, revoke_reason=reason.value)
        .returning(sessions.c.id)
    )
    return list((await db.execute(statement)).scalars())


async def account_by_id(db: AsyncSession, user_id: str) -> Account | None:
    query = select(*_ACCOUNT_COLUMNS).where(users.c.id == user_id)
    row = (await db.execute(query)).first()
    return _account(row) if row else None


async def purge_sessions(db: AsyncSession, ended_before: datetime) -> int:
    """Deletes sessions (and, by cascade, their refresh tokens) over since before the cutoff."""
    result = await db.execute(
        delete(sessions).where(
            or_(sessions.c.expires_at < ended_before, sessions.c.revoked_at < ended_before)
        )
    )
    return int(result.rowcount)


async def account_by_email(db: AsyncSession, email: str) -> Account | None:
    row = (await db.execute(select(*_ACCOUNT_COLUMNS).where(users.c.email == email))).first()
    return _account(row) if row else None


# --- one-time tokens ------------------------------------------------------------------


async def replace_one_time_token(
    db: AsyncSession, token: OneTimeToken, token_hash: str, now: datetime
) -> None:
    """Stores the token's hash; the user's earlier unused tokens of that purpose stop working."""
    await db.execute(
        delete(one_time_tokens).where(
            one_time_tokens.c.user_id == token.user_id,
            one_time_tokens.c.purpose == token.purpose.value,
            one_time_tokens.c.used_at.is_(None),
        )
    )
    await db.execute(
        one_time_tokens.insert().values(
            token_hash=token_hash,
            user_id=token.user_id,
            purpose=token.purpose.value,
            created_at=now,
            expires_at=token.expires_at,
        )
    )


async def find_one_time_token(
    db: AsyncSession, token_hash: str, purpose: TokenPurpose
) -> tuple[OneTimeToken, Account] | None:
    query = (
        select(
            one_time_tokens.c.user_id,
            one_time_tokens.c.expires_at,
            one_time_tokens.c.used_at,
            users.c.email,
            users.c.display_name,
            users.c.email_verified_at,
        )
        .join(users, users.c.id == one_time_tokens.c.user_id)
        .where(one_time_tokens.c.token_hash == token_hash, one_time_tokens.c.purpose == purpose.value)
    )
    row = (await db.execute(query)).first()
    if row is None:
        return None
    token = OneTimeToken(row.user_id, purpose, row.expires_at, row.used_at)
    return token, _account(row)


async def use_one_time_token(db: AsyncSession, token_hash: str, purpose: TokenPurpose, now: datetime) -> bool:
    """Marks a live token used; False when it was used (a concurrent use won), expired or unknown."""
    result = await db.execute(
        update(one_time_tokens)
        .where(
            one_time_tokens.c.token_hash == token_hash,
            one_time_tokens.c.purpose == purpose.value,
            one_time_tokens.c.used_at.is_(None),
            one_time_tokens.c.expires_at > now,
        )
        .values(used_at=now)
    )
    return bool(result.rowcount)


async def purge_one_time_tokens(db: AsyncSession, expired_before: datetime) -> int:
    result = await db.execute(delete(one_time_tokens).where(one_time_tokens.c.expires_at < expired_before))
    return int(result.rowcount)


async def mark_email_verified(db: AsyncSession, user_id: str, now: datetime) -> None:
    await db.execute(
        update(users)
        .where(users.c.id == user_id, users.c.email_verified_at.is_(None))
        .values(email_verified_at=now)
    )


# --- devices ----------------------------------------------------------------------------


async def remember_device(db: AsyncSession, user_id: str, device_key: str, now: datetime) -> bool:
    """True when the account signed in from other devices before, never from this one.
    An account with no device on record (older than this table, or seeded) learns its
    first one silently: no notice for every account on the first login after an upgrade."""
    added = await insert_ignore(
        db,
        known_devices,
        {"user_id": user_id, "device_key": device_key, "first_seen_at": now, "last_seen_at": now},
    )
    if not added:
        await db.execute(
            update(known_devices)
            .where(known_devices.c.user_id == user_id, known_devices.c.device_key == device_key)
            .values(last_seen_at=now)
        )
        return False
    others = select(known_devices.c.device_key).where(
        known_devices.c.user_id == user_id, known_devices.c.device_key != device_key
    )
    return (await db.execute(others.limit(1))).first() is not None


async def forget_devices(db: AsyncSession, last_seen_before: datetime) -> int:
    result = await db.execute(delete(known_devices).where(known_devices.c.last_seen_at < last_seen_before))
    return int(result.rowcount)


# --- account deletion -------------------------------------------------------------------


async def session_ids_of(db: AsyncSession, user_id: str) -> list[str]:
    return list((await db.execute(select(sessions.c.id).where(sessions.c.user_id == user_id))).scalars())


async def delete_account(db: AsyncSession, user_id: str) -> None:
    """Every row of the user, children first (no reliance on the database's cascades)."""
    session_ids = select(sessions.c.id).where(sessions.c.user_id == user_id)
    await db.execute(delete(refresh_tokens).where(refresh_tokens.c.session_id.in_(session_ids)))
    for table in (sessions, one_time_tokens, known_devices):
        await db.execute(delete(table).where(table.c.user_id == user_id))
    await db.execute(delete(users).where(users.c.id == user_id))


async def delete_published_rows(db: AsyncSession, subjects: list[str], unpublished_before: datetime) -> int:
    """Outbox rows of these subjects once published (or, unpublished, created before the
    cutoff: their tokens have expired anyway)."""
    result = await db.execute(
        delete(outbox).where(
            outbox.c.subject.in_(subjects),
            or_(outbox.c.published_at.is_not(None), outbox.c.created_at < unpublished_before),
        )
    )
    return int(result.rowcount)
