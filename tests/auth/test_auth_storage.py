"""Repository functions of the auth service on the migrated schema (SQLite and
PostgreSQL): session revocation scopes and the purge of ended sessions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from services.auth import storage
from services.auth.domain import Account, RevokeReason, SessionRecord, session_expiry
from services.kit.db.engine import Database
from services.kit.domain.ids import new_id
from services.kit.domain.timestamps import utcnow
from tests.auth.harness import AuthUnderTest


@pytest.fixture
async def db(auth_service: AuthUnderTest) -> AsyncIterator[Database]:
    database = Database.for_service(auth_service.settings, "auth", pool_size=2)
    yield database
    await database.dispose()


async def _user_with_sessions(
    db: Database, count: int, age: timedelta = timedelta(0)
) -> tuple[str, list[str]]:
    user_id, now = new_id(), utcnow() - age
    session_ids = [new_id() for _ in range(count)]
    async with db.transaction() as session:
        await storage.insert_user(session, Account(user_id, f"{user_id}@example.org", "S"), "hash", now)
        for session_id in session_ids:
            record = SessionRecord(
                session_id, user_id, now, now, session_expiry(now, 1), None, "ua", "127.0.0.1"
            )
            await storage.insert_session(session, record)
            await storage.insert_refresh_token(
                session, f"{session_id}-token".ljust(64, "0")[:64], session_id, now
            )
    return user_id, session_ids


async def test_revocation_scopes(db: Database) -> None:
    user_id, (first, second, third) = await _user_with_sessions(db, 3)
    other_user, (foreign,) = await _user_with_sessions(db, 1)
    async with db.transaction() as session:
        now = utcnow()
        assert await storage.revoke_sessions(session, user_id, RevokeReason.DELETED, now, only=foreign) == []
        assert await storage.revoke_sessions(session, user_id, RevokeReason.LOGOUT, now, only=first) == [
            first
        ]
        ended = await storage.revoke_sessions(session, user_id, RevokeReason.PASSWORD_CHANGE, now, keep=third)
        assert ended == [second]
        assert await storage.revoke_sessions(session, user_id, RevokeReason.LOGOUT_ALL, now) == [third]
        assert await storage.revoke_sessions(session, user_id, RevokeReason.LOGOUT_ALL, now) == []
        assert [s.session_id for s in await storage.active_sessions(session, other_user, now)] == [foreign]
        reasons = await session.execute(
            select(storage.sessions.c.id, storage.sessions.c.revoke_reason).where(
                storage.sessions.c.user_id == user_id
            )
        )
        assert dict(reasons.all()) == {first: "logout", second: "password_change", third: "logout_all"}


async def test_purge_deletes_long_ended_sessions_and_their_tokens(db: Database) -> None:
    old_user, old_sessions = await _user_with_sessions(db, 2, age=timedelta(days=30))
    live_user, live_sessions = await _user_with_sessions(db, 1)
    async with db.transaction() as session:
        await storage.revoke_sessions(session, live_user, RevokeReason.LOGOUT, utcnow())
        purged = await storage.purge_sessions(session, utcnow() - timedelta(days=7))
    assert purged >= 2
    async with db.transaction() as session:
        remaining = await session.execute(
            select(storage.sessions.c.id).where(storage.sessions.c.id.in_(old_sessions + live_sessions))
        )
        assert list(remaining.scalars()) == live_sessions  # revoked just now: kept for a while
        tokens = await session.execute(
            select(func.count())
            .select_from(storage.refresh_tokens)
            .where(storage.refresh_tokens.c.session_id.in_(old_sessions))
        )
        assert tokens.scalar_one() == 0
        assert await storage.account_by_id(session, old_user) is not None
