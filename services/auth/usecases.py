"""The auth use cases: sign up, log in, refresh, log out, change password,
sessions and session checks. Orchestrates domain rules, storage, password
hashing, throttling, tokens, the session-check cache and the broadcast of ended
sessions. Each write is one unit of work (with its events); password hashing and
throttling happen outside it, so no transaction waits on them."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from expense.events.v1 import events_pb2
from services.auth import storage
from services.auth.domain import (
    Account,
    ClientInfo,
    IssuedTokens,
    RefreshVerdict,
    RevokeReason,
    SessionRecord,
    device_key,
    new_refresh_token,
    refresh_token_hash,
    refresh_verdict,
    session_expiry,
)
from services.auth.passwords import Passwords
from services.auth.recovery import issue_email_verification
from services.auth.settings import AuthMeshSettings
from services.auth.throttle import LoginThrottle, SignupThrottle, client_network
from services.auth.tokens import AccessTokens
from services.kit.cache import Cache
from services.kit.db.unit_of_work import UnitOfWork, UnitsOfWork
from services.kit.domain.errors import AlreadyExists, InvalidArgument, NotFound, Unauthenticated
from services.kit.domain.ids import is_uuid, new_id
from services.kit.domain.timestamps import rfc3339, utcnow
from services.kit.identity.revocation import SessionFeed
from services.kit.identity.tokens import Identity

log = logging.getLogger(__name__)

INVALID_CREDENTIALS = "invalid email or password"
INVALID_REFRESH_TOKEN = "invalid refresh token"
# A revoked session stays marked in the cache long after any CheckSession that read
# the database before the revocation could still try to cache "active" (see check_session).
REVOKED_MARKER_SECONDS = 3600
PURGE_INTERVAL_SECONDS = 3600
# Ended sessions are kept this long (ListSessions hides them) before they are deleted.
ENDED_SESSION_RETENTION = timedelta(days=7)


def _session_cache_key(session_id: str) -> str:
    return f"session:{session_id}"


class Accounts:
    def __init__(
        self,
        settings: AuthMeshSettings,
        units: UnitsOfWork,
        cache: Cache,
        passwords: Passwords,
        throttle: LoginThrottle,
        signup_throttle: SignupThrottle,
        access_tokens: AccessTokens,
        session_feed: SessionFeed,
    ) -> None:
        self.settings = settings
        self.units = units
        self.db = units.db  # reads: no unit of work
        self.cache = cache
        self.passwords = passwords
        self.throttle = throttle
        self.signup_throttle = signup_throttle
        self.access_tokens = access_tokens
        self.session_feed = session_feed

    # --- accounts and sessions -------------------------------------------------

    async def sign_up(self, email: str, password: str, display_name: str, client: ClientInfo) -> IssuedTokens:
        """email and display_name arrive normalised; the password passed the length rules.
        Throttled first: a refused signup costs no strength check and no hash."""
        await self.signup_throttle.admit(client.ip_address)
        weakness = await self.passwords.weakness(password, [email, display_name])
        if weakness:
            raise InvalidArgument.of("password", weakness)
        async with self.db.transaction() as db:
            if await storage.email_taken(db, email):
                raise _email_taken()
        password_hash = await self.passwords.hash(password)
        account = Account(user_id=new_id(), email=email, display_name=display_name)
        try:
            async with self.units.begin() as unit:
                await storage.insert_user(unit.session, account, password_hash, utcnow())
                await unit.publish(account.user_id, user_registered(account))
                await issue_email_verification(unit, self.settings.auth, account)
                await storage.remember_device(unit.session, account.user_id, _device(client), utcnow())
                session_id, refresh_token = await self._start_session(unit.session, account.user_id, client)
        except IntegrityError:
            raise _email_taken() from None  # a concurrent signup with the same email won
        log.info("signed up", extra={"user_id": account.user_id, "ip": client.ip_address})
        return self._tokens(account, session_id, refresh_token)

    async def log_in(self, email: str, password: str, client: ClientInfo) -> IssuedTokens:
        await self.throttle.admit(client.ip_address, email)
        async with self.db.transaction() as db:
            found = await storage.credentials_by_email(db, email)
        verification = await self.passwords.verify(found[1] if found else None, password)
        if found is None or not verification.ok:
            await self.throttle.failed(email, client.ip_address)
            log.info("login failed", extra={"ip": client.ip_address})
            raise Unauthenticated(INVALID_CREDENTIALS)
        account = found[0]
        await self.throttle.succeeded(email, client.ip_address)
        async with self.units.begin() as unit:
            if verification.upgraded_hash:
                await storage.set_password_hash(unit.session, account.user_id, verification.upgraded_hash)
            now = utcnow()
            if await storage.remember_device(unit.session, account.user_id, _device(client), now):
                await unit.publish(
                    account.user_id,
                    security_event(account, events_pb2.SecurityEvent.KIND_NEW_DEVICE_SIGN_IN, now, client),
                )
            session_id, refresh_token = await self._start_session(unit.session, account.user_id, client)
        log.info("logged in", extra={"user_id": account.user_id, "session_id": session_id})
        return self._tokens(account, session_id, refresh_token)

    async def refresh(self, refresh_token: str) -> IssuedTokens:
        token_hash = refresh_token_hash(refresh_token)
        successor = new_refresh_token()
        async with self.units.begin() as unit:
            record = await storage.find_refresh_token(unit.session, token_hash)
            now = utcnow()
            verdict = refresh_verdict(record, now) if record else RefreshVerdict.ENDED
            if record is None or verdict is RefreshVerdict.ENDED:
                raise Unauthenticated(INVALID_REFRESH_TOKEN)
            session_id = record.session.session_id
            # mark_rotated fails when a concurrent refresh of the same token won: reuse too.
            reused = verdict is RefreshVerdict.REUSED or not await storage.mark_rotated(
                unit.session, token_hash, now
            )
            if reused:
                await storage.revoke_sessions(
                    unit.session, record.account.user_id, RevokeReason.REFRESH_REUSE, now, only=session_id
                )
            else:
                await storage.insert_refresh_token(
                    unit.session, refresh_token_hash(successor), session_id, now
                )
                await storage.touch_session(unit.session, session_id, now)
        if reused:
            await self.forget_sessions([session_id])
            log.warning(
                "refresh token reused; session revoked",
                extra={"user_id": record.account.user_id, "session_id": session_id},
            )
            raise Unauthenticated("refresh token already used; the session has been ended")
        return self._tokens(record.account, session_id, successor)

    async def log_out(self, refresh_token: str, all_sessions: bool) -> int:
        """Like token revocation (RFC 7009): an unknown or dead token is no error, there
        is just nothing left to end. Only a live, unrotated token may end every session."""
        token_hash = refresh_token_hash(refresh_token)
        async with self.units.begin() as unit:
            record = await storage.find_refresh_token(unit.session, token_hash)
            now = utcnow()
            if record is None:
                return 0
            verdict = refresh_verdict(record, now)
            if verdict is RefreshVerdict.ENDED:
                return 0
            user_id = record.account.user_id
            if verdict is RefreshVerdict.REUSED:
                reason, only = RevokeReason.REFRESH_REUSE, record.session.session_id
            elif all_sessions:
                reason, only = RevokeReason.LOGOUT_ALL, None
            else:
                reason, only = RevokeReason.LOGOUT, record.session.session_id
            revoked = await storage.revoke_sessions(unit.session, user_id, reason, now, only=only)
            if reason is RevokeReason.LOGOUT_ALL:
                await self._publish_all_revoked(unit, record.account, now, len(revoked))
        await self.forget_sessions(revoked)
        log.info("logged out", extra={"user_id": user_id, "sessions": len(revoked), "reason": reason.value})
        return len(revoked)

    async def log_out_session(self, identity: Identity, all_sessions: bool, client: ClientInfo) -> int:
        """Logout with only a valid access token (verified by the caller): its session, or
        every session of its user. No refresh token needed, e.g. after losing it."""
        async with self.units.begin() as unit:
            now = utcnow()
            if all_sessions:
                reason, only = RevokeReason.LOGOUT_ALL, None
            else:
                reason, only = RevokeReason.LOGOUT, identity.session_id
            revoked = await storage.revoke_sessions(unit.session, identity.user_id, reason, now, only=only)
            account = await storage.account_by_id(unit.session, identity.user_id)
            if all_sessions and account is not None:
                await self._publish_all_revoked(unit, account, now, len(revoked), client)
        await self.forget_sessions(revoked)
        log.info(
            "logged out",
            extra={"user_id": identity.user_id, "sessions": len(revoked), "reason": reason.value},
        )
        return len(revoked)

    @staticmethod
    async def _publish_all_revoked(
        unit: UnitOfWork, account: Account, now: datetime, revoked: int, client: ClientInfo | None = None
    ) -> None:
        event = security_event(account, events_pb2.SecurityEvent.KIND_ALL_SESSIONS_REVOKED, now, client)
        event.revoked_sessions = revoked
        await unit.publish(account.user_id, event)

    async def delete_account(self, identity: Identity, password: str, client: ClientInfo) -> None:
        """The password re-entered (throttled like a password change). Auth's rows go at once,
        with user.deleted in the same transaction; every other service erases the user's
        data when that event reaches it."""
        throttle_subject = f"user:{identity.user_id}"
        await self.throttle.admit(client.ip_address, throttle_subject)
        async with self.db.transaction() as db:
            found = await storage.credentials_by_id(db, identity.user_id)
        if found is None:
            raise Unauthenticated("account not found")
        if not (await self.passwords.verify(found[1], password)).ok:
            await self.throttle.failed(throttle_subject, client.ip_address)
            raise InvalidArgument.of("password", "does not match the current password")
        await self.throttle.succeeded(throttle_subject, client.ip_address)
        async with self.units.begin() as unit:
            session_ids = await storage.session_ids_of(unit.session, identity.user_id)
            await storage.delete_account(unit.session, identity.user_id)
            await unit.publish(
                identity.user_id,
                events_pb2.UserDeleted(user_id=identity.user_id, delete_time=rfc3339(utcnow())),
            )
        await self.forget_sessions(session_ids)
        log.info("account deleted", extra={"user_id": identity.user_id})

    async def change_password(
        self, identity: Identity, current_password: str, new_password: str, client: ClientInfo
    ) -> int:
        """Ends every other session of the user (ASVS 7.4.3); the caller's own stays."""
        throttle_subject = f"user:{identity.user_id}"
        await self.throttle.admit(client.ip_address, throttle_subject)
        async with self.db.transaction() as db:
            found = await storage.credentials_by_id(db, identity.user_id)
        if found is None:
            raise Unauthenticated("account not found")
        account, stored_hash = found
        weakness = await self.passwords.weakness(new_password, [account.email, account.display_name])
        if weakness:
            raise InvalidArgument.of("new_password", weakness)
        if not (await self.passwords.verify(stored_hash, current_password)).ok:
            await self.throttle.failed(throttle_subject, client.ip_address)
            raise InvalidArgument.of("current_password", "does not match the current password")
        await self.throttle.succeeded(throttle_subject, client.ip_address)
        if new_password == current_password:
            raise InvalidArgument.of("new_password", "must differ from the current password")
        new_hash = await self.passwords.hash(new_password)
        async with self.units.begin() as unit:
            now = utcnow()
            await storage.set_password_hash(unit.session, account.user_id, new_hash, changed_at=now)
            revoked = await storage.revoke_sessions(
                unit.session, account.user_id, RevokeReason.PASSWORD_CHANGE, now, keep=identity.session_id
            )
            event = security_event(account, events_pb2.SecurityEvent.KIND_PASSWORD_CHANGED, now, client)
            event.cause, event.revoked_sessions = "change", len(revoked)
            await unit.publish(account.user_id, event)
        await self.forget_sessions(revoked)
        log.info("password changed", extra={"user_id": account.user_id, "sessions_ended": len(revoked)})
        return len(revoked)

    async def list_sessions(self, identity: Identity) -> list[SessionRecord]:
        async with self.db.transaction() as db:
            return await storage.active_sessions(db, identity.user_id, utcnow())

    async def delete_session(self, identity: Identity, session_id: str) -> None:
        """Another user's session answers exactly like an unknown one."""
        revoked: list[str] = []
        if is_uuid(session_id):
            async with self.units.begin() as unit:
                revoked = await storage.revoke_sessions(
                    unit.session, identity.user_id, RevokeReason.DELETED, utcnow(), only=session_id
                )
        if not revoked:
            raise NotFound("session", session_id)
        await self.forget_sessions(revoked)

    async def get_account(self, user_id: str) -> Account:
        account = None
        if is_uuid(user_id):
            async with self.db.transaction() as db:
                account = await storage.account_by_id(db, user_id)
        if account is None:
            raise NotFound("account", user_id)
        return account

    # --- session checks (every service, every request, cached) -----------------

    async def check_session(self, session_id: str, user_id: str) -> bool:
        """False for revoked, expired or unknown sessions and for another user's.

        With Redis, answers are cached per session: "active" only with SET NX, and a
        revocation overwrites the entry with "revoked". A check that read the database
        just before a revocation therefore cannot cache a stale "active" over it."""
        if not is_uuid(session_id):
            return False
        key = _session_cache_key(session_id)
        cached = await self.cache.get(key)
        if cached is not None:
            return cached == f"active:{user_id}".encode()
        async with self.db.transaction() as db:
            record = await storage.session_by_id(db, session_id)
        now = utcnow()
        if record is None or not record.active(now):
            await self.cache.set(key, b"revoked", REVOKED_MARKER_SECONDS)
            return False
        ttl = min(self.settings.auth.session_cache_seconds, (record.expires_at - now).total_seconds())
        await self.cache.set(key, f"active:{record.user_id}".encode(), ttl, only_if_absent=True)
        return record.user_id == user_id

    async def forget_sessions(self, session_ids: list[str]) -> None:
        """After the commit: checks answer "ended" and verifiers caching "active" hear it."""
        await asyncio.gather(
            self.session_feed.announce(session_ids),
            *(
                self.cache.set(_session_cache_key(sid), b"revoked", REVOKED_MARKER_SECONDS)
                for sid in session_ids
            ),
        )

    # --- helpers ----------------------------------------------------------------

    async def _start_session(
        self, session: AsyncSession, user_id: str, client: ClientInfo
    ) -> tuple[str, str]:
        now = utcnow()
        record = SessionRecord(
            session_id=new_id(),
            user_id=user_id,
            created_at=now,
            last_used_at=now,
            expires_at=session_expiry(now, self.settings.jwt.refresh_ttl_days),
            revoked_at=None,
            user_agent=client.user_agent,
            ip_address=client.ip_address,
        )
        await storage.insert_session(session, record)
        refresh_token = new_refresh_token()
        await storage.insert_refresh_token(session, refresh_token_hash(refresh_token), record.session_id, now)
        return record.session_id, refresh_token

    def _tokens(self, account: Account, session_id: str, refresh_token: str) -> IssuedTokens:
        return IssuedTokens(
            access_token=self.access_tokens.issue(account.user_id, session_id),
            refresh_token=refresh_token,
            expires_in=self.access_tokens.ttl_seconds,
            account=account,
            session_id=session_id,
        )

    async def purge_forever(self) -> None:
        """Background job: deletes sessions (and their token families) long over."""
        while True:
            try:
                async with self.units.begin() as unit:
                    purged = await storage.purge_sessions(unit.session, utcnow() - ENDED_SESSION_RETENTION)
                    unused = utcnow() - timedelta(days=self.settings.auth.device_memory_days)
                    forgotten = await storage.forget_devices(unit.session, unused)
                if purged or forgotten:
                    log.info("purged ended sessions", extra={"count": purged, "devices": forgotten})
            except Exception as error:
                log.warning("session purge failed", extra={"error": repr(error)})
            await asyncio.sleep(PURGE_INTERVAL_SECONDS)


def user_registered(account: Account) -> events_pb2.UserRegistered:
    return events_pb2.UserRegistered(
        user_id=account.user_id, email=account.email, display_name=account.display_name
    )


def security_event(
    account: Account, kind: events_pb2.SecurityEvent.Kind.ValueType, now: datetime, client: ClientInfo | None
) -> events_pb2.SecurityEvent:
    return events_pb2.SecurityEvent(
        user_id=account.user_id,
        email=account.email,
        kind=kind,
        occur_time=rfc3339(now),
        user_agent=client.user_agent if client else "",
        ip_address=client.ip_address if client else "",
    )


def _device(client: ClientInfo) -> str:
    return device_key(client.user_agent, client_network(client.ip_address))


def _email_taken() -> AlreadyExists:
    return AlreadyExists("an account with this email already exists")
