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

from services.auth.domain import Account, RefreshTokenRecord, RevokeReason, SessionRecord
from services.kit.db.engine import UtcDateTime
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
    return Account(user_id=row.user_id, email=row.email, display_name=row.display_name)


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
    query = select(
        users.c.id.label("user_id"), users.c.email, users.c.display_name, users.c.password_hash
    ).where(users.c.email == email)
    row = (await db.execute(query)).first()
    return (_account(row), row.password_hash) if row else None


async def credentials_by_id(db: AsyncSession, user_id: str) -> tuple[Account, str] | None:
    query = select(
        users.c.id.label("user_id"), users.c.email, users.c.display_name, users.c.password_hash
    ).where(users.c.id == user_id)
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
    query = select(users.c.id.label("user_id"), users.c.email, users.c.display_name).where(
        users.c.id == user_id
    )
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
