"""TokenVerifier checks a token's signature and claims once, then trusts its cache
until the token expires; the session is still checked on every call, a key
withdrawn from the key set takes its cached tokens with it, and a session's
cached answer holds only for the subject it was asked for. While auth does not answer,
a session it confirmed lately is accepted for a bounded grace period, and no longer."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from services.kit.config.settings import JwtSettings
from services.kit.domain.errors import Unauthenticated, Unavailable
from services.kit.grpc.breakers import CircuitOpen
from services.kit.identity.tokens import TokenVerifier

KEY = rsa.generate_private_key(65537, 2048)
KID = "k1"


def token(**overrides: Any) -> str:
    now = int(time.time())
    claims = {"iss": "iss", "aud": "aud", "sub": "u1", "sid": "s1", "jti": "j", "iat": now, "exp": now + 60}
    claims.update(overrides)
    return jwt.encode(claims, KEY, algorithm="RS256", headers={"kid": KID, "typ": "at+jwt"})


class Auth:
    """The auth service as the verifier sees it: a key set and session states."""

    def __init__(self) -> None:
        self.keys = [json.loads(RSAAlgorithm.to_jwk(KEY.public_key())) | {"kid": KID, "alg": "RS256"}]
        self.revoked: set[str] = set()
        self.owners = {"s1": "u1"}
        self.session_checks = 0
        # Set: checks wait for it, as a slow round trip would.
        self.hold: asyncio.Event | None = None
        # Set: checks fail with it, as when auth is down (its breaker open) or broken.
        self.failure: Exception | None = None

    async def jwks(self) -> dict[str, Any]:
        return {"keys": self.keys}

    async def session_active(self, session_id: str, user_id: str) -> bool:
        self.session_checks += 1
        if self.failure is not None:
            raise self.failure
        if self.hold is not None:
            await self.hold.wait()
        return session_id not in self.revoked and self.owners.get(session_id) == user_id


@pytest.fixture
def auth() -> Auth:
    return Auth()


@pytest.fixture
def verifier(auth: Auth) -> TokenVerifier:
    settings = JwtSettings(issuer="iss", audience="aud", session_check_cache_seconds=0)
    return TokenVerifier(settings, auth.jwks, auth.session_active)


async def test_a_cached_token_still_needs_a_live_session(auth: Auth, verifier: TokenVerifier) -> None:
    bearer = token()
    assert (await verifier.verify(bearer)).user_id == "u1"
    assert (await verifier.verify(bearer)).session_id == "s1"
    auth.revoked.add("s1")
    with pytest.raises(Unauthenticated, match="session ended"):
        await verifier.verify(bearer)
    assert auth.session_checks == 3


async def test_a_withdrawn_key_takes_its_cached_tokens(auth: Auth, verifier: TokenVerifier) -> None:
    bearer = token()
    await verifier.verify(bearer)
    auth.keys = []
    await verifier.refresh_keys(force=True)
    with pytest.raises(Unauthenticated, match="invalid token"):
        await verifier.verify(bearer)


async def test_a_token_is_decoded_again_once_it_expires(
    verifier: TokenVerifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded: list[str] = []
    real_decode = jwt.decode

    def counting_decode(encoded: str, *args: Any, **kwargs: Any) -> Any:
        decoded.append(encoded)
        return real_decode(encoded, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting_decode)
    bearer = token(exp=int(time.time()) + 5)
    await verifier.verify(bearer)
    await verifier.verify(bearer)
    assert len(decoded) == 1
    later = time.time() + 3600
    monkeypatch.setattr(time, "time", lambda: later)
    await verifier.verify(bearer)  # PyJWT's own clock still says valid; the cache said expired
    assert len(decoded) == 2


async def test_a_tampered_copy_of_a_cached_token_is_rejected(verifier: TokenVerifier) -> None:
    bearer = token()
    await verifier.verify(bearer)
    header, claims, signature = bearer.split(".")
    forged_claims = jwt.utils.base64url_encode(
        json.dumps(json.loads(jwt.utils.base64url_decode(claims)) | {"sub": "u2"}).encode()
    ).decode()
    with pytest.raises(Unauthenticated, match="invalid token"):
        await verifier.verify(f"{header}.{forged_claims}.{signature}")


@pytest.fixture
def caching_verifier(auth: Auth) -> TokenVerifier:
    settings = JwtSettings(issuer="iss", audience="aud", session_check_cache_seconds=1)
    return TokenVerifier(settings, auth.jwks, auth.session_active)


async def test_a_cached_session_answer_holds_only_for_its_subject(
    auth: Auth, caching_verifier: TokenVerifier
) -> None:
    someone_else = token(sub="u2")  # signed correctly, naming u1's live session
    assert (await caching_verifier.verify(token())).user_id == "u1"
    with pytest.raises(Unauthenticated, match="session ended"):
        await caching_verifier.verify(someone_else)
    assert auth.session_checks == 2
    await caching_verifier.verify(token())
    assert auth.session_checks == 2  # the owner's answer is still cached


async def test_a_session_check_in_flight_is_shared_only_by_its_subject(
    auth: Auth, caching_verifier: TokenVerifier
) -> None:
    auth.hold = asyncio.Event()
    owner = asyncio.create_task(caching_verifier.verify(token()))
    someone_else = asyncio.create_task(caching_verifier.verify(token(sub="u2")))
    await asyncio.sleep(0.05)
    auth.hold.set()
    assert (await owner).user_id == "u1"
    with pytest.raises(Unauthenticated, match="session ended"):
        await someone_else


GRACE_SECONDS = 0.3


@pytest.fixture
def graceful_verifier(auth: Auth) -> TokenVerifier:
    settings = JwtSettings(issuer="iss", audience="aud", session_check_cache_seconds=0)
    return TokenVerifier(settings, auth.jwks, auth.session_active, grace_seconds=GRACE_SECONDS)


async def test_while_auth_is_down_a_confirmed_session_has_a_bounded_grace(
    auth: Auth, graceful_verifier: TokenVerifier, caplog: pytest.LogCaptureFixture
) -> None:
    await graceful_verifier.verify(token())  # auth confirms s1
    auth.failure = CircuitOpen("auth")
    auth.revoked.add("s1")  # unheard: auth is down
    for _ in range(3):
        assert (await graceful_verifier.verify(token())).session_id == "s1"
    graced = [r for r in caplog.records if r.getMessage() == "auth unavailable; session accepted on grace"]
    assert len(graced) == 1  # once per session, not per call
    with pytest.raises(Unavailable):  # never confirmed for this subject
        await graceful_verifier.verify(token(sub="u2"))
    await asyncio.sleep(GRACE_SECONDS)
    with pytest.raises(Unavailable):  # the grace is over: fail closed
        await graceful_verifier.verify(token())
    auth.failure = None
    with pytest.raises(Unauthenticated, match="session ended"):
        await graceful_verifier.verify(token())


async def test_without_a_configured_grace_auth_being_down_is_unavailable(auth: Auth) -> None:
    settings = JwtSettings(issuer="iss", audience="aud", session_check_cache_seconds=0)
    strict = TokenVerifier(settings, auth.jwks, auth.session_active)
    await strict.verify(token())
    auth.failure = CircuitOpen("auth")
    with pytest.raises(Unavailable):
        await strict.verify(token())


async def test_an_error_that_is_not_auth_being_down_is_not_graced(
    auth: Auth, graceful_verifier: TokenVerifier
) -> None:
    await graceful_verifier.verify(token())
    auth.failure = grpc.aio.AioRpcError(
        grpc.StatusCode.PERMISSION_DENIED, grpc.aio.Metadata(), grpc.aio.Metadata(), "no"
    )
    with pytest.raises(grpc.aio.AioRpcError):
        await graceful_verifier.verify(token())
