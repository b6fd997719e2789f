"""Access-token verification shared by every service.

RS256 only (pinned, RFC 8725 §3.1), issuer, audience, expiry, explicit typ
`at+jwt`, key looked up by kid in a fixed key set, and the session must still
be active so logout and revocation take effect within a second everywhere."""

from __future__ import annotations

import asyncio
import contextvars
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import jwt
from jwt.algorithms import RSAAlgorithm

from services.kit.config import JwtSettings
from services.kit.errors import Unauthenticated

ALGORITHM = "RS256"
TOKEN_TYPE = "at+jwt"
LEEWAY_SECONDS = 30
JWKS_REFRESH_MIN_INTERVAL = 5.0
REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub", "jti", "sid"]

JwksSource = Callable[[], Awaitable[dict[str, Any]]]
SessionCheck = Callable[[str, str], Awaitable[bool]]


@dataclass(frozen=True)
class Identity:
    user_id: str
    session_id: str
    token_id: str
    issued_at: int
    # The verified bearer token, forwarded on calls made on the user's behalf.
    token: str = field(default="", repr=False)


_identity: contextvars.ContextVar[Identity | None] = contextvars.ContextVar("identity", default=None)


def current_identity() -> Identity:
    identity = _identity.get()
    if identity is None:
        raise Unauthenticated("authentication required")
    return identity


def set_identity(identity: Identity | None) -> contextvars.Token[Identity | None]:
    return _identity.set(identity)


def reset_identity(token: contextvars.Token[Identity | None]) -> None:
    _identity.reset(token)


class TokenVerifier:
    def __init__(self, settings: JwtSettings, jwks_source: JwksSource, session_check: SessionCheck) -> None:
        self.settings = settings
        self._jwks_source = jwks_source
        self._session_check = session_check
        self._keys: dict[str, Any] = {}
        self._last_refresh = 0.0
        self._refresh_lock = asyncio.Lock()
        self._session_cache: dict[str, tuple[float, bool]] = {}
        # One CheckSession per session at a time: a burst of calls with one token shares it.
        self._session_checks: dict[str, asyncio.Future[bool]] = {}

    @property
    def ready(self) -> bool:
        return bool(self._keys)

    async def refresh_keys(self, force: bool = False) -> None:
        async with self._refresh_lock:
            if not force and time.monotonic() - self._last_refresh < JWKS_REFRESH_MIN_INTERVAL:
                return
            jwks = await self._jwks_source()
            keys = {}
            for jwk in jwks.get("keys", []):
                if jwk.get("kty") == "RSA" and jwk.get("alg", ALGORITHM) == ALGORITHM:
                    keys[jwk["kid"]] = RSAAlgorithm.from_jwk(json.dumps(jwk))
            self._keys = keys
            self._last_refresh = time.monotonic()

    async def _key_for(self, kid: str) -> Any:
        if kid not in self._keys:
            await self.refresh_keys()
        key = self._keys.get(kid)
        if key is None:
            raise Unauthenticated("invalid token")
        return key

    async def verify(self, token: str) -> Identity:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthenticated("invalid token") from None
        kid = header.get("kid")
        if header.get("alg") != ALGORITHM or header.get("typ") != TOKEN_TYPE or not isinstance(kid, str):
            raise Unauthenticated("invalid token")
        key = await self._key_for(kid)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self.settings.audience,
                issuer=self.settings.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("token expired") from None
        except jwt.PyJWTError:
            raise Unauthenticated("invalid token") from None
        identity = Identity(
            user_id=str(claims["sub"]),
            session_id=str(claims["sid"]),
            token_id=str(claims["jti"]),
            issued_at=int(claims["iat"]),
            token=token,
        )
        if not await self._session_active(identity):
            raise Unauthenticated("session ended")
        return identity

    async def _session_active(self, identity: Identity) -> bool:
        cached = self._session_cache.get(identity.session_id)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        check = self._session_checks.get(identity.session_id)
        if check is None:
            check = asyncio.ensure_future(self._check_session(identity))
            self._session_checks[identity.session_id] = check
            check.add_done_callback(lambda _: self._session_checks.pop(identity.session_id, None))
        # Shielded: a caller that gives up does not cancel the check the others wait for.
        return await asyncio.shield(check)

    async def _check_session(self, identity: Identity) -> bool:
        asked = time.monotonic()
        active = await self._session_check(identity.session_id, identity.user_id)
        if len(self._session_cache) > 100_000:
            self._session_cache.clear()
        self._session_cache[identity.session_id] = (asked + self.settings.session_check_cache_seconds, active)
        return active
