"""Access tokens as issued by the auth service and checked by every service's
TokenVerifier (services.kit.identity.tokens): the claims, and each forgery refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from services.auth.keys import load_key_ring, rotate_signing_key
from services.auth.tokens import AccessTokens, SigningKeys
from services.kit.config.settings import MeshSettings
from services.kit.domain.errors import Unauthenticated
from services.kit.domain.ids import new_id
from services.kit.identity.tokens import TokenVerifier


class Sessions:
    """The session check the verifier asks; records what it was asked."""

    def __init__(self) -> None:
        self.active: set[tuple[str, str]] = set()
        self.asked: list[tuple[str, str]] = []

    async def check(self, session_id: str, user_id: str) -> bool:
        self.asked.append((session_id, user_id))
        return (session_id, user_id) in self.active


@pytest.fixture
def settings(tmp_path: Path) -> MeshSettings:
    return MeshSettings(data_dir=tmp_path)


@pytest.fixture
async def keys(settings: MeshSettings) -> SigningKeys:
    keys = SigningKeys(settings)
    await keys.load()
    return keys


@pytest.fixture
def sessions() -> Sessions:
    return Sessions()


@pytest.fixture
def verifier(settings: MeshSettings, keys: SigningKeys, sessions: Sessions) -> TokenVerifier:
    return TokenVerifier(settings.jwt, keys.jwks, sessions.check)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"


def _claims(settings: MeshSettings, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": settings.jwt.issuer,
        "aud": settings.jwt.audience,
        "sub": "user-1",
        "iat": now,
        "exp": now + 600,
        "jti": new_id(),
        "sid": "session-1",
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _sign(keys: SigningKeys, claims: dict[str, Any], **header: Any) -> str:
    key = keys.ring.current
    return jwt.encode(
        claims, key.private_key, algorithm="RS256", headers={"kid": key.kid, "typ": "at+jwt", **header}
    )


async def test_issued_tokens_carry_every_claim_and_verify(
    settings: MeshSettings, keys: SigningKeys, verifier: TokenVerifier, sessions: Sessions
) -> None:
    token = AccessTokens(settings.jwt, keys).issue("user-1", "session-1")
    sessions.active.add(("session-1", "user-1"))
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "RS256", "kid": keys.ring.current.kid, "typ": "at+jwt"}
    claims = jwt.decode(token, options={"verify_signature": False})
    assert set(claims) == {"iss", "aud", "sub", "iat", "exp", "jti", "sid"}
    assert claims["exp"] - claims["iat"] == settings.jwt.access_ttl_seconds
    assert (claims["iss"], claims["aud"], claims["sub"], claims["sid"]) == (
        settings.jwt.issuer,
        settings.jwt.audience,
        "user-1",
        "session-1",
    )
    identity = await verifier.verify(token)
    assert (identity.user_id, identity.session_id, identity.token_id) == (
        "user-1",
        "session-1",
        claims["jti"],
    )
    assert sessions.asked == [("session-1", "user-1")]


async def test_each_token_has_its_own_jti(settings: MeshSettings, keys: SigningKeys) -> None:
    issuer = AccessTokens(settings.jwt, keys)
    ids = {jwt.decode(issuer.issue("u", "s"), options={"verify_signature": False})["jti"] for _ in range(50)}
    assert len(ids) == 50


async def test_a_token_of_an_ended_session_is_refused(
    settings: MeshSettings, keys: SigningKeys, verifier: TokenVerifier
) -> None:
    token = AccessTokens(settings.jwt, keys).issue("user-1", "session-1")
    with pytest.raises(Unauthenticated, match="session ended"):
        await verifier.verify(token)


def _forgeries(settings: MeshSettings, keys: SigningKeys) -> dict[str, str]:
    key = keys.ring.current
    claims = _claims(settings)
    good = _sign(keys, claims)
    head, body, signature = good.split(".")
    public_pem = key.public_pem.encode()
    hs_input = _unsigned({"alg": "HS256", "typ": "at+jwt", "kid": key.kid}, claims)
    hs_signature = _b64(hmac.new(public_pem, hs_input.encode(), hashlib.sha256).digest())
    other_key = rsa.generate_private_key(65537, 2048)
    tampered_claims = _b64(json.dumps({**claims, "sub": "someone-else"}).encode())
    return {
        "alg none": _unsigned({"alg": "none", "typ": "at+jwt", "kid": key.kid}, claims) + ".",
        "HS256 with the public key": f"{hs_input}.{hs_signature}",
        "wrong audience": _sign(keys, _claims(settings, aud="another-audience")),
        "wrong issuer": _sign(keys, _claims(settings, iss="https://evil.example")),
        "issuer substring": _sign(keys, _claims(settings, iss=f"x{settings.jwt.issuer}x")),
        "typ JWT": _sign(keys, claims, typ="JWT"),
        "refresh typ": _sign(keys, claims, typ="rt+jwt"),
        "expired": _sign(keys, _claims(settings, iat=int(time.time()) - 4000, exp=int(time.time()) - 3000)),
        "unknown kid": _sign(keys, claims, kid="no-such-key"),
        "kid injection": _sign(keys, claims, kid="../../keys/signing-000001.pem"),
        "another key, same kid": jwt.encode(
            claims, other_key, algorithm="RS256", headers={"kid": key.kid, "typ": "at+jwt"}
        ),
        "tampered signature": f"{head}.{body}.{signature[:-4]}AAAA",
        "tampered claims": f"{head}.{tampered_claims}.{signature}",
        "missing sid": _sign(keys, _claims(settings, sid=None)),
        "missing jti": _sign(keys, _claims(settings, jti=None)),
        "missing exp": _sign(keys, _claims(settings, exp=None)),
        "RS512": jwt.encode(
            claims, key.private_key, algorithm="RS512", headers={"kid": key.kid, "typ": "at+jwt"}
        ),
        "not a jwt": "definitely.not.a-jwt",
        "empty": "",
    }


FORGERY_NAMES = [
    "alg none",
    "HS256 with the public key",
    "wrong audience",
    "wrong issuer",
    "issuer substring",
    "typ JWT",
    "refresh typ",
    "expired",
    "unknown kid",
    "kid injection",
    "another key, same kid",
    "tampered signature",
    "tampered claims",
    "missing sid",
    "missing jti",
    "missing exp",
    "RS512",
    "not a jwt",
    "empty",
]


@pytest.mark.parametrize("forgery", FORGERY_NAMES)
async def test_forged_tokens_are_refused(
    settings: MeshSettings, keys: SigningKeys, verifier: TokenVerifier, sessions: Sessions, forgery: str
) -> None:
    sessions.active.add(("session-1", "user-1"))
    forgeries = _forgeries(settings, keys)
    assert set(forgeries) == set(FORGERY_NAMES)
    with pytest.raises(Unauthenticated):
        await verifier.verify(forgeries[forgery])
    # The genuine token of the same session still passes: the refusal was the forgery's.
    await verifier.verify(_sign(keys, _claims(settings)))


async def test_tokens_of_the_previous_key_verify_after_a_rotation(
    settings: MeshSettings, sessions: Sessions
) -> None:
    sessions.active.add(("session-1", "user-1"))
    old_keys = SigningKeys(settings)
    await old_keys.load()
    old_token = AccessTokens(settings.jwt, old_keys).issue("user-1", "session-1")
    rotate_signing_key(settings)
    new_keys = SigningKeys(settings)
    ring = await new_keys.load()
    assert [key.kid for key in ring.keys][1] == old_keys.ring.current.kid
    assert [jwk["kid"] for jwk in ring.jwks()["keys"]] == [key.kid for key in ring.keys]
    verifier = TokenVerifier(settings.jwt, new_keys.jwks, sessions.check)
    new_token = AccessTokens(settings.jwt, new_keys).issue("user-1", "session-1")
    assert jwt.get_unverified_header(new_token)["kid"] == ring.current.kid != old_keys.ring.current.kid
    for token in (old_token, new_token):
        assert (await verifier.verify(token)).user_id == "user-1"
    # Two rotations later the oldest key is gone and its tokens are refused.
    rotate_signing_key(settings)
    newest = SigningKeys(settings)
    await newest.load()
    assert len(load_key_ring(settings).keys) == 2
    with pytest.raises(Unauthenticated):
        await TokenVerifier(settings.jwt, newest.jwks, sessions.check).verify(old_token)


async def test_keys_live_in_the_data_dir_only(settings: MeshSettings, keys: SigningKeys) -> None:
    key_files = sorted(path.name for path in settings.keys_dir.iterdir())
    assert key_files == ["jwks.json", "signing-000001.pem"]
    assert (settings.keys_dir / "signing-000001.pem").stat().st_mode & 0o077 == 0
    assert "PRIVATE" not in (settings.keys_dir / "jwks.json").read_text()
