"""Password reset and email verification: single-use tokens mailed by the notification
service. Auth stores only each token's SHA-256; the raw token leaves in the event
(auth.password_reset_requested, auth.email_verification_requested), which only
notification may consume, and whose outbox row is deleted as soon as it is published
(`prune_secret_outbox_forever`).

A reset request is answered before anything depends on the account: the handler only
validates, throttles and queues the email; a worker looks the account up and issues the
token. The answer (empty) and its timing are therefore the same for every email."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from expense.events.v1 import events_pb2
from services.auth import storage
from services.auth.domain import (
    ONE_TIME_TOKEN_MAX_LENGTH,
    Account,
    OneTimeToken,
    RevokeReason,
    TokenPurpose,
    link_with_token,
    new_one_time_token,
    one_time_token_hash,
)
from services.auth.passwords import Passwords
from services.auth.settings import AuthSettings
from services.kit.cache import Cache
from services.kit.db.unit_of_work import UnitOfWork, UnitsOfWork
from services.kit.domain.errors import FailedPrecondition, InvalidArgument, ResourceExhausted
from services.kit.domain.timestamps import rfc3339, utcnow
from services.kit.events.bus import subject_for
from services.kit.events.registry import event_type_of
from services.kit.identity.tokens import Identity

log = logging.getLogger(__name__)

INVALID_TOKEN = "is invalid, already used or expired"
# Event types whose payload carries a raw token: their outbox rows go once published.
SECRET_EVENTS = (events_pb2.PasswordResetRequested, events_pb2.EmailVerificationRequested)


def _digest(value: str) -> str:
    # Throttle keys: bounded length, and no email address in Redis.
    return hashlib.sha256(value.encode()).hexdigest()[:32]


async def issue_email_verification(unit: UnitOfWork, settings: AuthSettings, account: Account) -> None:
    """In the caller's unit of work (signup, resend): a new token, the older ones void."""
    token = new_one_time_token()
    now = utcnow()
    record = OneTimeToken(
        account.user_id,
        TokenPurpose.EMAIL_VERIFICATION,
        now + timedelta(hours=settings.email_verification_ttl_hours),
    )
    await storage.replace_one_time_token(unit.session, record, one_time_token_hash(token), now)
    await unit.publish(
        account.user_id,
        events_pb2.EmailVerificationRequested(
            user_id=account.user_id,
            email=account.email,
            display_name=account.display_name,
            token=token,
            verify_url=link_with_token(settings.email_verification_url, token),
            expire_time=rfc3339(record.expires_at),
        ),
    )


class Recovery:
    def __init__(
        self,
        settings: AuthSettings,
        units: UnitsOfWork,
        cache: Cache,
        passwords: Passwords,
        forget_sessions: Callable[[list[str]], Awaitable[None]],
    ) -> None:
        self.settings = settings
        self.units = units
        self.db = units.db
        self.cache = cache
        self.passwords = passwords
        self.forget_sessions = forget_sessions
        self.reset_requests: asyncio.Queue[str] = asyncio.Queue(settings.password_reset_queue)

    # --- password reset -----------------------------------------------------------

    async def request_password_reset(self, email: str, client_ip: str) -> None:
        """Answers alike for every email; only too many requests from one address are refused
        (that says nothing about the email). Over the per-email limit nothing is mailed."""
        ip_key = f"throttle:reset:ip:{client_ip}"
        window = self.settings.password_reset_window_seconds
        if await self.cache.count(ip_key, window) > self.settings.password_resets_per_ip:
            raise ResourceExhausted(
                "too many password reset requests from this address; try again later",
                float(max(1, int(await self.cache.seconds_left(ip_key)))),
            )
        if await self.cache.count(f"throttle:reset:email:{_digest(email)}", window) > (
            self.settings.password_resets_per_email
        ):
            log.info("password reset over the per-email limit; nothing mailed", extra={"ip": client_ip})
            return
        try:
            self.reset_requests.put_nowait(email)
        except asyncio.QueueFull:
            log.warning("password reset queue full; request dropped", extra={"ip": client_ip})

    async def issue_resets_forever(self) -> None:
        """Background job: the queued reset requests, one at a time."""
        while True:
            email = await self.reset_requests.get()
            try:
                await self.issue_reset(email)
            except Exception as error:  # the database was away: the user asks again
                log.warning("password reset not issued", extra={"error": repr(error)})

    async def issue_reset(self, email: str) -> bool:
        """True when the email has an account (and a token went out)."""
        token = new_one_time_token()
        token_hash = one_time_token_hash(token)
        now = utcnow()
        expires_at = now + timedelta(minutes=self.settings.password_reset_ttl_minutes)
        async with self.units.begin() as unit:
            account = await storage.account_by_email(unit.session, email)
            if account is None:
                return False
            record = OneTimeToken(account.user_id, TokenPurpose.PASSWORD_RESET, expires_at)
            await storage.replace_one_time_token(unit.session, record, token_hash, now)
            await unit.publish(
                account.user_id,
                events_pb2.PasswordResetRequested(
                    user_id=account.user_id,
                    email=account.email,
                    display_name=account.display_name,
                    token=token,
                    reset_url=link_with_token(self.settings.password_reset_url, token),
                    expire_time=rfc3339(expires_at),
                ),
            )
        log.info("password reset issued", extra={"user_id": account.user_id})
        return True

    async def reset_password(self, token: str, new_password: str) -> int:
        """Sets the password, ends every session; the token works once. A reset also
        proves the mailbox is the user's, so the email counts as verified."""
        token_hash = _checked_hash(token)
        async with self.db.transaction() as db:
            found = await storage.find_one_time_token(db, token_hash, TokenPurpose.PASSWORD_RESET)
        if found is None or not found[0].usable(utcnow()):
            raise InvalidArgument.of("token", INVALID_TOKEN)
        account = found[1]
        weakness = await self.passwords.weakness(new_password, [account.email, account.display_name])
        if weakness:
            raise InvalidArgument.of("new_password", weakness)
        new_hash = await self.passwords.hash(new_password)
        async with self.units.begin() as unit:
            now = utcnow()
            if not await storage.use_one_time_token(
                unit.session, token_hash, TokenPurpose.PASSWORD_RESET, now
            ):
                raise InvalidArgument.of("token", INVALID_TOKEN)  # used meanwhile, or just expired
            await storage.set_password_hash(unit.session, account.user_id, new_hash, changed_at=now)
            await storage.mark_email_verified(unit.session, account.user_id, now)
            revoked = await storage.revoke_sessions(
                unit.session, account.user_id, RevokeReason.PASSWORD_RESET, now
            )
            await unit.publish(
                account.user_id,
                events_pb2.SecurityEvent(
                    user_id=account.user_id,
                    email=account.email,
                    kind=events_pb2.SecurityEvent.KIND_PASSWORD_CHANGED,
                    occur_time=rfc3339(now),
                    cause="reset",
                    revoked_sessions=len(revoked),
                ),
            )
        await self.forget_sessions(revoked)
        log.info("password reset", extra={"user_id": account.user_id, "sessions_ended": len(revoked)})
        return len(revoked)

    # --- email verification -----------------------------------------------------------

    async def verify_email(self, token: str) -> Account:
        token_hash = _checked_hash(token)
        async with self.units.begin() as unit:
            found = await storage.find_one_time_token(
                unit.session, token_hash, TokenPurpose.EMAIL_VERIFICATION
            )
            now = utcnow()
            if found is None or not await storage.use_one_time_token(
                unit.session, token_hash, TokenPurpose.EMAIL_VERIFICATION, now
            ):
                raise InvalidArgument.of("token", INVALID_TOKEN)
            await storage.mark_email_verified(unit.session, found[1].user_id, now)
        log.info("email verified", extra={"user_id": found[1].user_id})
        return found[1]

    async def resend_verification(self, identity: Identity) -> None:
        key = f"throttle:verify:{identity.user_id}"
        if await self.cache.count(key, self.settings.verification_resend_window_seconds) > (
            self.settings.verification_resends_per_user
        ):
            raise ResourceExhausted(
                "too many verification emails; try again later",
                float(max(1, int(await self.cache.seconds_left(key)))),
            )
        async with self.units.begin() as unit:
            account = await storage.account_by_id(unit.session, identity.user_id)
            if account is None:
                raise FailedPrecondition("the account no longer exists")
            if account.email_verified:
                raise FailedPrecondition("the email is already verified")
            await issue_email_verification(unit, self.settings, account)

    # --- housekeeping -----------------------------------------------------------------

    async def prune_secret_outbox(self, prefix: str) -> int:
        """Deletes published outbox rows carrying a raw token, and unpublished ones older
        than any token they could carry (NATS was away that long: the token is dead)."""
        subjects = [subject_for(prefix, event_type_of(payload).name) for payload in SECRET_EVENTS]
        longest = max(
            timedelta(minutes=self.settings.password_reset_ttl_minutes),
            timedelta(hours=self.settings.email_verification_ttl_hours),
        )
        async with self.units.begin() as unit:
            deleted = await storage.delete_published_rows(unit.session, subjects, utcnow() - longest)
            await storage.purge_one_time_tokens(unit.session, utcnow() - timedelta(days=1))
        return deleted

    async def prune_secret_outbox_forever(self, prefix: str) -> None:
        while True:
            try:
                await self.prune_secret_outbox(prefix)
            except Exception as error:
                log.warning("secret outbox prune failed", extra={"error": repr(error)})
            await asyncio.sleep(self.settings.secret_outbox_prune_seconds)


def _checked_hash(token: str) -> str:
    if not token:
        raise InvalidArgument.of("token", "is required")
    if len(token) > ONE_TIME_TOKEN_MAX_LENGTH:
        raise InvalidArgument.of("token", INVALID_TOKEN)
    return one_time_token_hash(token)
