"""The auth service over real gRPC, on SQLite and on PostgreSQL (+ Redis), with
real NATS: signup, login, refresh rotation and reuse detection, logout,
password change, sessions, validation, throttling and the user.registered event."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import grpc
import jwt
import nats
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from expense.auth.v1 import auth_pb2
from expense.events.v1 import events_pb2
from services.auth.tokens import AccessTokens, SigningKeys
from services.kit.cache import Cache
from services.kit.domain.errors import Unauthenticated
from services.kit.domain.ids import new_id
from services.kit.events.bus import stream_name, subject_for
from services.kit.grpc.status import field_violations
from services.kit.identity.tokens import TokenVerifier
from tests.auth.harness import STRONG_PASSWORD, AuthUnderTest, Login, from_ip, random_email, random_ip
from tests.infra import NATS_URL

EVENT_TIMEOUT_SECONDS = 15.0


async def rpc_error(call: Awaitable[Any], code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == code, caught.value.details()
    return caught.value


async def assert_token_refused(auth_service: AuthUnderTest, login: Login) -> None:
    """Refused by another service's verifier and by the auth service's own interceptor."""
    with pytest.raises(Unauthenticated):
        await auth_service.verifier().verify(login.tokens.access_token)
    await rpc_error(
        auth_service.auth.ListSessions(auth_pb2.ListSessionsRequest(), metadata=login.bearer),
        grpc.StatusCode.UNAUTHENTICATED,
    )


# --- signup and the token pair ------------------------------------------------------


async def test_signup_answers_a_verifiable_token_pair(auth_service: AuthUnderTest) -> None:
    email = random_email("Mixed.Case")
    login = await auth_service.sign_up(email=email.upper(), display_name="  Ann Example  ")
    tokens = login.tokens
    assert tokens.token_type == "Bearer"
    assert tokens.expires_in == auth_service.settings.jwt.access_ttl_seconds == 900
    assert tokens.user.email == email.lower()
    assert tokens.user.display_name == "Ann Example"
    assert len(tokens.refresh_token) >= 43  # 32 random bytes, base64url

    header = jwt.get_unverified_header(tokens.access_token)
    assert header["alg"] == "RS256" and header["typ"] == "at+jwt"
    jwks = await auth_service.auth.GetJwks(auth_pb2.GetJwksRequest())
    assert header["kid"] in {key.kid for key in jwks.keys}

    identity = await auth_service.verifier().verify(tokens.access_token)
    assert identity.user_id == tokens.user.user_id
    assert identity.session_id == tokens.session_id
    assert await auth_service.session_active(login)
    account = await auth_service.identity.GetAccount(
        auth_pb2.GetAccountRequest(user_id=login.user_id), metadata=await auth_service.internal()
    )
    assert account == tokens.user


async def test_login_answers_a_new_session(auth_service: AuthUnderTest) -> None:
    signed_up = await auth_service.sign_up()
    login = await auth_service.log_in(signed_up.email.upper(), signed_up.password)
    assert login.user_id == signed_up.user_id
    assert login.session_id != signed_up.session_id
    assert login.tokens.refresh_token != signed_up.tokens.refresh_token
    assert (await auth_service.verifier().verify(login.tokens.access_token)).session_id == login.session_id


async def test_duplicate_email_already_exists(auth_service: AuthUnderTest) -> None:
    first = await auth_service.sign_up()
    error = await rpc_error(auth_service.sign_up(email=first.email.upper()), grpc.StatusCode.ALREADY_EXISTS)
    assert "already exists" in (error.details() or "")


async def test_concurrent_signups_with_one_email_create_one_account(auth_service: AuthUnderTest) -> None:
    email = random_email()
    results = await asyncio.gather(
        *(auth_service.sign_up(email=email) for _ in range(4)), return_exceptions=True
    )
    created = [result for result in results if isinstance(result, Login)]
    refused = [result for result in results if isinstance(result, grpc.aio.AioRpcError)]
    assert len(created) == 1
    assert [error.code() for error in refused] == [grpc.StatusCode.ALREADY_EXISTS] * 3


# --- validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, {"email", "password", "display_name"}),
        ({"email": "not-an-email", "password": STRONG_PASSWORD, "display_name": "A"}, {"email"}),
        ({"email": "a@b.test", "password": STRONG_PASSWORD, "display_name": "A"}, {"email"}),
        ({"email": random_email(), "password": "short1!", "display_name": "A"}, {"password"}),
        ({"email": random_email(), "password": "x" * 129, "display_name": "A"}, {"password"}),
        ({"email": random_email(), "password": STRONG_PASSWORD, "display_name": "   "}, {"display_name"}),
        ({"email": random_email(), "password": STRONG_PASSWORD, "display_name": "n" * 101}, {"display_name"}),
        (
            {"email": random_email(), "password": STRONG_PASSWORD, "display_name": "bad\x00name"},
            {"display_name"},
        ),
    ],
)
async def test_signup_names_each_invalid_field(
    auth_service: AuthUnderTest, fields: dict[str, str], expected: set[str]
) -> None:
    error = await rpc_error(
        auth_service.auth.SignUp(auth_pb2.SignUpRequest(**fields), metadata=from_ip(random_ip())),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert set(field_violations(error)) == expected


@pytest.mark.parametrize("password", ["password", "12345678", "qwertyuiop", "iloveyou1", "Password1"])
async def test_signup_refuses_common_passwords(auth_service: AuthUnderTest, password: str) -> None:
    error = await rpc_error(auth_service.sign_up(password=password), grpc.StatusCode.INVALID_ARGUMENT)
    violations = field_violations(error)
    assert list(violations) == ["password"]
    assert "too easy to guess" in violations["password"]


async def test_signup_refuses_a_password_made_of_the_users_own_details(auth_service: AuthUnderTest) -> None:
    email = random_email("zebulon.quartermaine")
    error = await rpc_error(
        auth_service.sign_up(
            email=email, password="ZebulonQuartermaine", display_name="Zebulon Quartermaine"
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert list(field_violations(error)) == ["password"]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, {"email", "password"}),
        ({"email": "nope", "password": "whatever-it-is"}, {"email"}),
        ({"email": "someone@example.org"}, {"password"}),
    ],
)
async def test_login_names_each_invalid_field(
    auth_service: AuthUnderTest, fields: dict[str, str], expected: set[str]
) -> None:
    error = await rpc_error(
        auth_service.auth.LogIn(auth_pb2.LogInRequest(**fields), metadata=from_ip(random_ip())),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert set(field_violations(error)) == expected


async def test_empty_refresh_and_logout_tokens_are_invalid_arguments(auth_service: AuthUnderTest) -> None:
    for call in (
        auth_service.auth.RefreshToken(auth_pb2.RefreshTokenRequest()),
        auth_service.auth.LogOut(auth_pb2.LogOutRequest(all_sessions=True)),
    ):
        error = await rpc_error(call, grpc.StatusCode.INVALID_ARGUMENT)
        assert set(field_violations(error)) == {"refresh_token"}


# --- credentials ------------------------------------------------------------------------


async def test_unknown_email_and_wrong_password_get_the_same_answer(auth_service: AuthUnderTest) -> None:
    known = await auth_service.sign_up()
    wrong_password = await rpc_error(
        auth_service.log_in(known.email, known.password + "x"), grpc.StatusCode.UNAUTHENTICATED
    )
    unknown_email = await rpc_error(
        auth_service.log_in(random_email("nobody"), known.password), grpc.StatusCode.UNAUTHENTICATED
    )
    assert wrong_password.details() == unknown_email.details() == "invalid email or password"
    assert wrong_password.trailing_metadata() == unknown_email.trailing_metadata()


# --- refresh rotation and reuse detection ----------------------------------------------------


async def test_refresh_rotates_and_reuse_revokes_the_family(auth_service: AuthUnderTest) -> None:
    login = await auth_service.sign_up()
    first = login.tokens.refresh_token
    second = await auth_service.refresh(first)
    assert second.session_id == login.session_id
    assert second.refresh_token != first
    assert second.user == login.tokens.user
    third = await auth_service.refresh(second.refresh_token)
    assert (await auth_service.verifier().verify(third.access_token)).session_id == login.session_id

    # The rotated token is refused, and its reuse ends the session: the newest token too.
    await rpc_error(auth_service.refresh(first), grpc.StatusCode.UNAUTHENTICATED)
    await rpc_error(auth_service.refresh(third.refresh_token), grpc.StatusCode.UNAUTHENTICATED)
    assert not await auth_service.session_active(login)
    await assert_token_refused(auth_service, Login(login.email, login.password, login.ip, third))


async def test_concurrent_refreshes_with_one_token_count_as_reuse(auth_service: AuthUnderTest) -> None:
    """No grace period (see services/auth/domain.py refresh_verdict): at most one refresh
    succeeds, and the session ends, so its successor is refused too."""
    login = await auth_service.sign_up()
    results = await asyncio.gather(
        *(auth_service.refresh(login.tokens.refresh_token) for _ in range(3)), return_exceptions=True
    )
    successes = [result for result in results if isinstance(result, auth_pb2.AuthTokens)]
    assert len(successes) <= 1
    assert all(
        result.code() == grpc.StatusCode.UNAUTHENTICATED
        for result in results
        if isinstance(result, grpc.aio.AioRpcError)
    )
    assert not await auth_service.session_active(login)
    for success in successes:
        await rpc_error(auth_service.refresh(success.refresh_token), grpc.StatusCode.UNAUTHENTICATED)


async def test_unknown_refresh_token_is_unauthenticated(auth_service: AuthUnderTest) -> None:
    await rpc_error(auth_service.refresh("not-a-token-we-issued"), grpc.StatusCode.UNAUTHENTICATED)


# --- logout ------------------------------------------------------------------------------


async def test_logout_ends_the_session_everywhere(auth_service: AuthUnderTest) -> None:
    login = await auth_service.sign_up()
    other = await auth_service.log_in(login.email, login.password)
    answer = await auth_service.auth.LogOut(auth_pb2.LogOutRequest(refresh_token=login.tokens.refresh_token))
    assert answer.revoked_sessions == 1
    assert not await auth_service.session_active(login)
    await assert_token_refused(auth_service, login)
    await rpc_error(auth_service.refresh(login.tokens.refresh_token), grpc.StatusCode.UNAUTHENTICATED)
    # Logging out again is no error (RFC 7009); the other session lives on.
    again = await auth_service.auth.LogOut(auth_pb2.LogOutRequest(refresh_token=login.tokens.refresh_token))
    assert again.revoked_sessions == 0
    assert await auth_service.session_active(other)


async def test_logout_all_sessions(auth_service: AuthUnderTest) -> None:
    login = await auth_service.sign_up()
    others = [await auth_service.log_in(login.email, login.password) for _ in range(2)]
    answer = await auth_service.auth.LogOut(
        auth_pb2.LogOutRequest(refresh_token=others[0].tokens.refresh_token, all_sessions=True)
    )
    assert answer.revoked_sessions == 3
    for session in (login, *others):
        assert not await auth_service.session_active(session)
        await assert_token_refused(auth_service, session)


async def test_logout_with_a_rotated_token_ends_only_that_session(auth_service: AuthUnderTest) -> None:
    login = await auth_service.sign_up()
    other = await auth_service.log_in(login.email, login.password)
    await auth_service.refresh(login.tokens.refresh_token)
    answer = await auth_service.auth.LogOut(
        auth_pb2.LogOutRequest(refresh_token=login.tokens.refresh_token, all_sessions=True)
    )
    assert answer.revoked_sessions == 1
    assert not await auth_service.session_active(login)
    assert await auth_service.session_active(other)


# --- password change -----------------------------------------------------------------------


async def test_password_change_ends_other_sessions_but_not_the_current(auth_service: AuthUnderTest) -> None:
    current = await auth_service.sign_up()
    others = [await auth_service.log_in(current.email, current.password) for _ in range(2)]
    new_password = "amber-lantern-drift-77"
    answer = await auth_service.auth.ChangePassword(
        auth_pb2.ChangePasswordRequest(current_password=current.password, new_password=new_password),
        metadata=current.bearer,
    )
    assert answer.revoked_sessions == 2
    assert await auth_service.session_active(current)
    await auth_service.verifier().verify(current.tokens.access_token)
    for other in others:
        assert not await auth_service.session_active(other)
        await assert_token_refused(auth_service, other)
        await rpc_error(auth_service.refresh(other.tokens.refresh_token), grpc.StatusCode.UNAUTHENTICATED)
    await rpc_error(auth_service.log_in(current.email, current.password), grpc.StatusCode.UNAUTHENTICATED)
    assert (await auth_service.log_in(current.email, new_password)).user_id == current.user_id


@pytest.mark.parametrize(
    ("current", "new", "field"),
    [
        ("wrong-password-here", "amber-lantern-drift-77", "current_password"),
        (None, "password1", "new_password"),
        (None, "short", "new_password"),
        (None, None, "new_password"),  # the same as the current one
        ("", "amber-lantern-drift-77", "current_password"),
    ],
)
async def test_password_change_names_the_wrong_field(
    auth_service: AuthUnderTest, current: str | None, new: str | None, field: str
) -> None:
    login = await auth_service.sign_up()
    request = auth_pb2.ChangePasswordRequest(
        current_password=login.password if current is None else current,
        new_password=login.password if new is None else new,
    )
    error = await rpc_error(
        auth_service.auth.ChangePassword(request, metadata=login.bearer), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert list(field_violations(error)) == [field]
    assert await auth_service.session_active(login)


async def test_password_change_needs_an_access_token(auth_service: AuthUnderTest) -> None:
    request = auth_pb2.ChangePasswordRequest(current_password="a", new_password="b")
    await rpc_error(auth_service.auth.ChangePassword(request), grpc.StatusCode.UNAUTHENTICATED)


# --- sessions --------------------------------------------------------------------------------


async def test_list_sessions_marks_the_current_one(auth_service: AuthUnderTest) -> None:
    login = await auth_service.sign_up()
    other = await auth_service.log_in(login.email, login.password)
    listed = await auth_service.auth.ListSessions(auth_pb2.ListSessionsRequest(), metadata=other.bearer)
    by_id = {session.session_id: session for session in listed.sessions}
    assert set(by_id) == {login.session_id, other.session_id}
    assert by_id[other.session_id].current and not by_id[login.session_id].current
    assert by_id[other.session_id].ip_address == other.ip
    assert by_id[login.session_id].ip_address == login.ip
    assert by_id[login.session_id].user_agent.startswith("grpc-python")
    assert by_id[login.session_id].create_time.endswith("Z")


async def test_delete_session_of_another_user_is_not_found_like_an_unknown_id(
    auth_service: AuthUnderTest,
) -> None:
    mine = await auth_service.sign_up()
    theirs = await auth_service.sign_up()
    errors = [
        await rpc_error(
            auth_service.auth.DeleteSession(
                auth_pb2.DeleteSessionRequest(session_id=session_id), metadata=mine.bearer
            ),
            grpc.StatusCode.NOT_FOUND,
        )
        for session_id in (theirs.session_id, new_id())
    ]
    assert errors[0].details() == errors[1].details() == "session not found"
    details = [rpc_status.from_call(error).details[0] for error in errors]  # type: ignore[arg-type]
    infos = []
    for detail in details:
        info = error_details_pb2.ResourceInfo()
        detail.Unpack(info)
        infos.append((info.resource_type, info.description))
    assert infos[0] == infos[1]
    assert await auth_service.session_active(theirs)


async def test_delete_own_session_ends_it(auth_service: AuthUnderTest) -> None:
    login = await auth_service.sign_up()
    other = await auth_service.log_in(login.email, login.password)
    await auth_service.auth.DeleteSession(
        auth_pb2.DeleteSessionRequest(session_id=other.session_id), metadata=login.bearer
    )
    assert not await auth_service.session_active(other)
    await assert_token_refused(auth_service, other)
    listed = await auth_service.auth.ListSessions(auth_pb2.ListSessionsRequest(), metadata=login.bearer)
    assert [session.session_id for session in listed.sessions] == [login.session_id]
    await rpc_error(
        auth_service.auth.DeleteSession(
            auth_pb2.DeleteSessionRequest(session_id=other.session_id), metadata=login.bearer
        ),
        grpc.StatusCode.NOT_FOUND,
    )


# --- identity service ----------------------------------------------------------------------


async def test_check_session_is_false_for_another_user_or_unknown_session(
    auth_service: AuthUnderTest,
) -> None:
    login = await auth_service.sign_up()
    internal = await auth_service.internal()

    async def check(request: auth_pb2.CheckSessionRequest) -> auth_pb2.CheckSessionResponse:
        return await auth_service.identity.CheckSession(request, metadata=internal)

    assert (
        await check(auth_pb2.CheckSessionRequest(session_id=login.session_id, user_id=login.user_id))
    ).active
    for session_id, user_id in [
        (login.session_id, new_id()),
        (new_id(), login.user_id),
        ("junk", login.user_id),
    ]:
        answer = await check(auth_pb2.CheckSessionRequest(session_id=session_id, user_id=user_id))
        assert not answer.active


async def test_a_token_naming_another_user_is_refused_while_the_owners_answer_is_cached(
    auth_service: AuthUnderTest,
) -> None:
    """Signed with auth's own key, sub=B and A's live session: refused by another
    service's verifier and by auth's own, each holding A's answer."""
    owner, other = await auth_service.sign_up(), await auth_service.sign_up()
    keys = SigningKeys(auth_service.settings)
    await keys.load()
    forged = AccessTokens(auth_service.settings.jwt, keys).issue(other.user_id, owner.session_id)
    forged_bearer = (("authorization", f"Bearer {forged}"),)
    cache_for_a_second = auth_service.settings.jwt.model_copy(update={"session_check_cache_seconds": 1})
    verifier = TokenVerifier(cache_for_a_second, auth_service.remote.jwks, auth_service.remote.session_active)
    assert (await verifier.verify(owner.tokens.access_token)).user_id == owner.user_id
    with pytest.raises(Unauthenticated, match="session ended"):
        await verifier.verify(forged)
    await auth_service.auth.ListSessions(auth_pb2.ListSessionsRequest(), metadata=owner.bearer)
    await rpc_error(
        auth_service.auth.ListSessions(auth_pb2.ListSessionsRequest(), metadata=forged_bearer),
        grpc.StatusCode.UNAUTHENTICATED,
    )


async def test_get_account_of_unknown_user_is_not_found(auth_service: AuthUnderTest) -> None:
    for user_id in (new_id(), "not-a-uuid"):
        await rpc_error(
            auth_service.identity.GetAccount(
                auth_pb2.GetAccountRequest(user_id=user_id), metadata=await auth_service.internal()
            ),
            grpc.StatusCode.NOT_FOUND,
        )


async def test_jwks_lists_rsa_signing_keys(auth_service: AuthUnderTest) -> None:
    jwks = await auth_service.auth.GetJwks(auth_pb2.GetJwksRequest())
    assert jwks.keys
    for key in jwks.keys:
        assert (key.kty, key.alg, key.use, key.e) == ("RSA", "RS256", "sig", "AQAB")
        assert key.kid and len(key.n) > 300  # 2048-bit modulus, base64url


# --- throttling ------------------------------------------------------------------------------


async def test_failed_logins_are_throttled_per_email_and_ip(auth_service: AuthUnderTest) -> None:
    limit = auth_service.settings.auth.login_failures_per_account_ip
    victim = await auth_service.sign_up()
    attacker_ip = random_ip()
    for _ in range(limit):
        await rpc_error(
            auth_service.log_in(victim.email, "not-the-password", ip=attacker_ip),
            grpc.StatusCode.UNAUTHENTICATED,
        )
    error = await rpc_error(
        auth_service.log_in(victim.email, victim.password, ip=attacker_ip), grpc.StatusCode.RESOURCE_EXHAUSTED
    )
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    retry = error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(retry)
    assert 0 < retry.retry_delay.seconds <= auth_service.settings.auth.login_failure_window_seconds
    # The real user, from their own address, is not locked out.
    assert (await auth_service.log_in(victim.email, victim.password, ip=victim.ip)).user_id == victim.user_id


async def test_a_successful_login_resets_the_failure_count(auth_service: AuthUnderTest) -> None:
    limit = auth_service.settings.auth.login_failures_per_account_ip
    user = await auth_service.sign_up()
    ip = random_ip()
    for _ in range(limit - 1):
        await rpc_error(
            auth_service.log_in(user.email, "not-the-password", ip=ip), grpc.StatusCode.UNAUTHENTICATED
        )
    await auth_service.log_in(user.email, user.password, ip=ip)
    for _ in range(limit - 1):
        await rpc_error(
            auth_service.log_in(user.email, "not-the-password", ip=ip), grpc.StatusCode.UNAUTHENTICATED
        )
    assert (await auth_service.log_in(user.email, user.password, ip=ip)).user_id == user.user_id


async def test_attempts_per_ip_are_limited_whatever_the_email(auth_service: AuthUnderTest) -> None:
    limit = auth_service.settings.auth.login_attempts_per_ip
    ip = random_ip()
    for _ in range(limit):
        await rpc_error(
            auth_service.log_in(random_email(), "whatever-password", ip=ip), grpc.StatusCode.UNAUTHENTICATED
        )
    await rpc_error(
        auth_service.log_in(random_email(), "whatever-password", ip=ip), grpc.StatusCode.RESOURCE_EXHAUSTED
    )
    user = await auth_service.sign_up()
    assert (await auth_service.log_in(user.email, user.password, ip=random_ip())).user_id == user.user_id


# --- events and cache ------------------------------------------------------------------------


async def test_signup_publishes_user_registered_to_jetstream(auth_service: AuthUnderTest) -> None:
    login = await auth_service.sign_up(display_name="Event Person")
    prefix = auth_service.settings.event_prefix
    nc = await nats.connect(NATS_URL)
    try:
        subscription = await nc.jetstream().pull_subscribe(
            subject_for(prefix, "user.registered"), stream=stream_name(prefix)
        )
        envelope = await _find_event(subscription, login.user_id)
    finally:
        await nc.drain()
    assert envelope.type == "user.registered"
    assert envelope.producer == "auth"
    assert envelope.event_id
    payload = events_pb2.UserRegistered()
    assert envelope.payload.Unpack(payload)
    assert (payload.user_id, payload.email, payload.display_name) == (
        login.user_id,
        login.email.lower(),
        "Event Person",
    )


async def _find_event(subscription: Any, user_id: str) -> events_pb2.EventEnvelope:
    deadline = asyncio.get_running_loop().time() + EVENT_TIMEOUT_SECONDS
    while asyncio.get_running_loop().time() < deadline:
        try:
            messages = await subscription.fetch(50, timeout=1)
        except nats.errors.TimeoutError:
            continue
        for message in messages:
            await message.ack()
            envelope = events_pb2.EventEnvelope.FromString(message.data)
            if envelope.user_id == user_id:
                return envelope
    raise AssertionError(f"no user.registered event for {user_id}")


async def test_session_checks_are_cached_in_redis_and_revocation_overwrites_them(
    auth_service: AuthUnderTest,
) -> None:
    if not auth_service.settings.redis_url:
        pytest.skip("this backend runs without Redis")
    cache = Cache(auth_service.settings.redis_url, f"{auth_service.settings.event_prefix}:auth")
    try:
        login = await auth_service.sign_up()
        key = f"session:{login.session_id}"
        assert await auth_service.session_active(login)
        assert await cache.get(key) == f"active:{login.user_id}".encode()
        await auth_service.auth.LogOut(auth_pb2.LogOutRequest(refresh_token=login.tokens.refresh_token))
        assert await cache.get(key) == b"revoked"
        assert not await auth_service.session_active(login)
    finally:
        await cache.close()
