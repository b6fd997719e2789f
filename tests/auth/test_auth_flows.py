"""Account flows over real gRPC on PostgreSQL + Redis with real NATS: password reset
(reset, reuse, expiry, an unknown email answered like a known one, the token's outbox
row pruned), email verification and resend, security events, logout of every session
with only an access token, and account deletion."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import grpc
import nats
import pytest
from google.protobuf.message import Message
from sqlalchemy import func, select, update

from expense.auth.v1 import auth_pb2
from expense.events.v1 import events_pb2
from services.auth import storage
from services.kit.db.engine import Database
from services.kit.events.bus import stream_name, subject_for
from services.kit.events.registry import event_type_of
from services.kit.grpc.status import field_violations
from tests.auth.harness import STRONG_PASSWORD, AuthUnderTest, Login, from_ip, random_email, running_auth
from tests.auth.test_auth_service import assert_token_refused, rpc_error
from tests.infra import NATS_URL, REDIS_URL

EVENT_TIMEOUT_SECONDS = 15.0
NEW_PASSWORD = "copper-lantern-meadow-97"


@pytest.fixture(scope="module")
async def auth_service(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[AuthUnderTest]:
    async with running_auth("postgresql", tmp_path_factory.mktemp("auth"), redis_url=REDIS_URL) as service:
        yield service


@pytest.fixture
async def db(auth_service: AuthUnderTest) -> AsyncIterator[Database]:
    database = Database.for_service(auth_service.settings, "auth", pool_size=2)
    yield database
    await database.dispose()


class EventTap:
    """Reads the auth service's events of one type from JetStream (an ephemeral consumer)."""

    def __init__(self, service: AuthUnderTest, payload: type[Message]) -> None:
        self.prefix = service.settings.event_prefix
        self.payload = payload
        self.name = event_type_of(payload).name

    async def find(self, user_id: str, timeout: float = EVENT_TIMEOUT_SECONDS) -> list[Message]:
        """Every event of the type for user_id in the stream, once at least one arrived."""
        nc = await nats.connect(NATS_URL)
        try:
            subscription = await nc.jetstream().pull_subscribe(
                subject_for(self.prefix, self.name), stream=stream_name(self.prefix)
            )
            found: list[Message] = []
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    messages = await subscription.fetch(100, timeout=0.5)
                except (nats.errors.TimeoutError, TimeoutError):
                    if found:
                        return found
                    continue
                for message in messages:
                    envelope = events_pb2.EventEnvelope.FromString(message.data)
                    if envelope.user_id == user_id:
                        assert envelope.producer == "auth" and envelope.type == self.name
                        payload = self.payload()
                        assert envelope.payload.Unpack(payload)
                        found.append(payload)
            return found
        finally:
            await nc.close()


async def _reset_token(service: AuthUnderTest, login: Login) -> events_pb2.PasswordResetRequested:
    await service.auth.RequestPasswordReset(
        auth_pb2.RequestPasswordResetRequest(email=login.email), metadata=from_ip(login.ip)
    )
    [event] = await EventTap(service, events_pb2.PasswordResetRequested).find(login.user_id)
    return event  # type: ignore[return-value]


async def _reset_rows(db: Database, user_id: str) -> int:
    async with db.transaction() as session:
        query = select(func.count()).where(
            storage.one_time_tokens.c.user_id == user_id,
            storage.one_time_tokens.c.purpose == "password_reset",
        )
        return int((await session.execute(query)).scalar_one())


# --- password reset ------------------------------------------------------------------


async def test_reset_sets_the_password_ends_every_session_and_works_once(
    auth_service: AuthUnderTest, db: Database
) -> None:
    login = await auth_service.sign_up(display_name="Reset Person")
    second = await auth_service.log_in(login.email, login.password)
    event = await _reset_token(auth_service, login)

    assert (event.user_id, event.email, event.display_name) == (login.user_id, login.email, "Reset Person")
    assert event.reset_url == f"https://app.example.com/reset-password?token={event.token}"
    expires = datetime.fromisoformat(event.expire_time)
    assert timedelta(minutes=29) < expires - datetime.now(UTC) <= timedelta(minutes=30)
    async with db.transaction() as session:
        stored = (await session.execute(select(storage.one_time_tokens.c.token_hash))).scalars().all()
    assert event.token not in stored  # only its hash

    answer = await auth_service.auth.ResetPassword(
        auth_pb2.ResetPasswordRequest(token=event.token, new_password=NEW_PASSWORD)
    )
    assert answer.revoked_sessions == 2
    await assert_token_refused(auth_service, login)
    await assert_token_refused(auth_service, second)
    await rpc_error(auth_service.log_in(login.email, login.password), grpc.StatusCode.UNAUTHENTICATED)
    relogin = await auth_service.log_in(login.email, NEW_PASSWORD)
    assert relogin.tokens.user.email_verified  # the reset proved the mailbox

    reused = await rpc_error(
        auth_service.auth.ResetPassword(
            auth_pb2.ResetPasswordRequest(token=event.token, new_password=f"{NEW_PASSWORD}-again")
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert list(field_violations(reused)) == ["token"]
    await auth_service.log_in(login.email, NEW_PASSWORD)  # the refused reuse changed nothing

    security = await EventTap(auth_service, events_pb2.SecurityEvent).find(login.user_id)
    # Each login of the test came from another network: new devices, besides the one change.
    kinds = [event.kind for event in security]  # type: ignore[attr-defined]
    assert set(kinds) == {
        events_pb2.SecurityEvent.KIND_NEW_DEVICE_SIGN_IN,
        events_pb2.SecurityEvent.KIND_PASSWORD_CHANGED,
    }
    [changed] = [event for event in security if event.kind == events_pb2.SecurityEvent.KIND_PASSWORD_CHANGED]  # type: ignore[attr-defined]
    assert (changed.cause, changed.revoked_sessions) == ("reset", 2)  # type: ignore[attr-defined]


async def test_an_expired_reset_token_is_refused(auth_service: AuthUnderTest, db: Database) -> None:
    login = await auth_service.sign_up()
    event = await _reset_token(auth_service, login)
    async with db.transaction() as session:
        await session.execute(
            update(storage.one_time_tokens)
            .where(storage.one_time_tokens.c.user_id == login.user_id)
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    refused = await rpc_error(
        auth_service.auth.ResetPassword(
            auth_pb2.ResetPasswordRequest(token=event.token, new_password=NEW_PASSWORD)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert list(field_violations(refused)) == ["token"]
    await auth_service.log_in(login.email, login.password)  # unchanged


async def test_a_weak_new_password_is_refused_and_the_token_still_works(auth_service: AuthUnderTest) -> None:
    login = await auth_service.sign_up()
    event = await _reset_token(auth_service, login)
    weak = await rpc_error(
        auth_service.auth.ResetPassword(
            auth_pb2.ResetPasswordRequest(token=event.token, new_password="password1")
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert list(field_violations(weak)) == ["new_password"]
    await auth_service.auth.ResetPassword(
        auth_pb2.ResetPasswordRequest(token=event.token, new_password=NEW_PASSWORD)
    )


async def test_an_unknown_email_is_answered_exactly_like_a_known_one(
    auth_service: AuthUnderTest, db: Database
) -> None:
    known = await auth_service.sign_up()
    unknown = random_email("nobody")

    async def ask(email: str) -> tuple[bytes, float]:
        started = time.perf_counter()
        answer = await auth_service.auth.RequestPasswordReset(
            auth_pb2.RequestPasswordResetRequest(email=email), metadata=from_ip(known.ip)
        )
        return answer.SerializeToString(), time.perf_counter() - started

    # Alternated, within the per-email limit (3): the same bytes, and no slower for an account.
    answers = [await ask(email) for _ in range(3) for email in (known.email, unknown)]
    assert {body for body, _ in answers} == {b""}
    known_times = [seconds for (_, seconds), i in zip(answers, range(6), strict=True) if i % 2 == 0]
    unknown_times = [seconds for (_, seconds), i in zip(answers, range(6), strict=True) if i % 2 == 1]
    # The handler never touches the account (a worker does, after answering): any gap is noise.
    assert abs(statistics.median(known_times) - statistics.median(unknown_times)) < 0.05

    events = await EventTap(auth_service, events_pb2.PasswordResetRequested).find(known.user_id)
    assert len(events) == 3
    await asyncio.sleep(0.5)
    assert await _reset_rows(db, known.user_id) == 1  # each request voided the one before
    async with db.transaction() as session:
        assert await storage.account_by_email(session, unknown) is None


async def test_reset_requests_over_the_email_limit_are_answered_alike_and_mail_nothing(
    auth_service: AuthUnderTest,
) -> None:
    login = await auth_service.sign_up()
    limit = auth_service.settings.auth.password_resets_per_email
    for _ in range(limit + 2):
        answer = await auth_service.auth.RequestPasswordReset(
            auth_pb2.RequestPasswordResetRequest(email=login.email), metadata=from_ip(login.ip)
        )
        assert answer == auth_pb2.RequestPasswordResetResponse()
    events = await EventTap(auth_service, events_pb2.PasswordResetRequested).find(login.user_id)
    assert len(events) == limit


async def test_the_token_bearing_outbox_row_is_deleted_once_published(
    auth_service: AuthUnderTest, db: Database
) -> None:
    login = await auth_service.sign_up()
    await _reset_token(auth_service, login)
    subject = subject_for(auth_service.settings.event_prefix, "auth.password_reset_requested")
    deadline = time.monotonic() + 10 + auth_service.settings.auth.secret_outbox_prune_seconds
    while True:
        async with db.transaction() as session:
            rows = (
                await session.execute(select(func.count()).where(storage.outbox.c.subject == subject))
            ).scalar_one()
        if rows == 0:
            break
        assert time.monotonic() < deadline, f"{rows} reset rows still in the outbox"
        await asyncio.sleep(0.5)


# --- email verification ------------------------------------------------------------------


async def test_signup_mails_a_verification_token_that_verifies_the_email_once(
    auth_service: AuthUnderTest,
) -> None:
    login = await auth_service.sign_up(display_name="Verify Person")
    assert not login.tokens.user.email_verified
    [event] = await EventTap(auth_service, events_pb2.EmailVerificationRequested).find(login.user_id)
    assert (event.email, event.display_name) == (login.email, "Verify Person")  # type: ignore[attr-defined]
    assert event.verify_url.endswith(event.token)  # type: ignore[attr-defined]

    answer = await auth_service.auth.VerifyEmail(auth_pb2.VerifyEmailRequest(token=event.token))  # type: ignore[attr-defined]
    assert answer.email == login.email
    account = await auth_service.identity.GetAccount(
        auth_pb2.GetAccountRequest(user_id=login.user_id), metadata=await auth_service.internal()
    )
    assert account.email_verified
    await rpc_error(
        auth_service.auth.VerifyEmail(auth_pb2.VerifyEmailRequest(token=event.token)),  # type: ignore[attr-defined]
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    already = await rpc_error(
        auth_service.auth.ResendEmailVerification(
            auth_pb2.ResendEmailVerificationRequest(), metadata=login.bearer
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert "already verified" in (already.details() or "")


async def test_a_resend_voids_the_earlier_verification_token(auth_service: AuthUnderTest) -> None:
    login = await auth_service.sign_up()
    tap = EventTap(auth_service, events_pb2.EmailVerificationRequested)
    [first] = await tap.find(login.user_id)
    await auth_service.auth.ResendEmailVerification(
        auth_pb2.ResendEmailVerificationRequest(), metadata=login.bearer
    )
    deadline = time.monotonic() + EVENT_TIMEOUT_SECONDS
    while len(events := await tap.find(login.user_id)) < 2:
        assert time.monotonic() < deadline
    second = events[-1]
    await rpc_error(
        auth_service.auth.VerifyEmail(auth_pb2.VerifyEmailRequest(token=first.token)),  # type: ignore[attr-defined]
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    await auth_service.auth.VerifyEmail(auth_pb2.VerifyEmailRequest(token=second.token))  # type: ignore[attr-defined]


# --- security events, logout, deletion ---------------------------------------------------


async def test_a_login_from_a_new_device_is_a_security_event_and_a_known_one_is_not(
    auth_service: AuthUnderTest,
) -> None:
    login = await auth_service.sign_up()
    await auth_service.log_in(login.email, login.password, ip=login.ip)  # same agent and network
    elsewhere = "203.0.113.9"
    await auth_service.log_in(login.email, login.password, ip=elsewhere)
    await auth_service.log_in(login.email, login.password, ip="203.0.113.77")  # same /24: known
    [event] = await EventTap(auth_service, events_pb2.SecurityEvent).find(login.user_id)
    assert event.kind == events_pb2.SecurityEvent.KIND_NEW_DEVICE_SIGN_IN  # type: ignore[attr-defined]
    assert event.ip_address == elsewhere  # type: ignore[attr-defined]


async def test_devices_unused_for_long_are_forgotten(auth_service: AuthUnderTest, db: Database) -> None:
    login = await auth_service.sign_up()
    await auth_service.log_in(login.email, login.password, ip="203.0.113.10")
    async with db.transaction() as session:
        await session.execute(
            update(storage.known_devices)
            .where(storage.known_devices.c.user_id == login.user_id)
            .values(last_seen_at=datetime.now(UTC) - timedelta(days=181))
        )
        await storage.remember_device(session, login.user_id, "recent", datetime.now(UTC))
        cutoff = datetime.now(UTC) - timedelta(days=auth_service.settings.auth.device_memory_days)
        assert await storage.forget_devices(session, cutoff) >= 2
        kept = select(storage.known_devices.c.device_key).where(
            storage.known_devices.c.user_id == login.user_id
        )
        assert (await session.execute(kept)).scalars().all() == ["recent"]


async def test_logout_with_only_an_access_token_ends_every_session(auth_service: AuthUnderTest) -> None:
    login = await auth_service.sign_up()
    other = await auth_service.log_in(login.email, login.password, ip=login.ip)
    answer = await auth_service.auth.LogOut(auth_pb2.LogOutRequest(all_sessions=True), metadata=login.bearer)
    assert answer.revoked_sessions == 2
    await assert_token_refused(auth_service, login)
    await assert_token_refused(auth_service, other)
    await rpc_error(auth_service.refresh(other.tokens.refresh_token), grpc.StatusCode.UNAUTHENTICATED)
    [event] = await EventTap(auth_service, events_pb2.SecurityEvent).find(login.user_id)
    assert event.kind == events_pb2.SecurityEvent.KIND_ALL_SESSIONS_REVOKED  # type: ignore[attr-defined]
    assert event.revoked_sessions == 2  # type: ignore[attr-defined]
    # A revoked token, and none at all, are refused.
    await rpc_error(
        auth_service.auth.LogOut(auth_pb2.LogOutRequest(), metadata=login.bearer),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    await rpc_error(auth_service.auth.LogOut(auth_pb2.LogOutRequest()), grpc.StatusCode.INVALID_ARGUMENT)


async def test_logout_with_an_access_token_ends_only_its_session(auth_service: AuthUnderTest) -> None:
    login = await auth_service.sign_up()
    other = await auth_service.log_in(login.email, login.password, ip=login.ip)
    answer = await auth_service.auth.LogOut(auth_pb2.LogOutRequest(), metadata=login.bearer)
    assert answer.revoked_sessions == 1
    await assert_token_refused(auth_service, login)
    assert await auth_service.session_active(other)


async def test_account_deletion_needs_the_password_and_leaves_no_row(
    auth_service: AuthUnderTest, db: Database
) -> None:
    login = await auth_service.sign_up()
    wrong = await rpc_error(
        auth_service.auth.DeleteAccount(
            auth_pb2.DeleteAccountRequest(password=f"{STRONG_PASSWORD}-wrong"), metadata=login.bearer
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert list(field_violations(wrong)) == ["password"]
    await auth_service.auth.DeleteAccount(
        auth_pb2.DeleteAccountRequest(password=login.password), metadata=login.bearer
    )
    await assert_token_refused(auth_service, login)
    await rpc_error(auth_service.log_in(login.email, login.password), grpc.StatusCode.UNAUTHENTICATED)
    async with db.transaction() as session:
        for table in (storage.users, storage.sessions, storage.one_time_tokens, storage.known_devices):
            column = table.c.id if table is storage.users else table.c.user_id
            count = (await session.execute(select(func.count()).where(column == login.user_id))).scalar_one()
            assert count == 0, table.name
    [deleted] = await EventTap(auth_service, events_pb2.UserDeleted).find(login.user_id)
    assert deleted.user_id == login.user_id  # type: ignore[attr-defined]
    # The email is free again.
    await auth_service.sign_up(email=login.email)
