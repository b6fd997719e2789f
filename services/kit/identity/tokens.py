"""Access-token verification shared by every service.

RS256 only (pinned, RFC 8725 §3.1), issuer, audience, expiry, explicit typ
`at+jwt`, key looked up by kid in a fixed key set, and the session must still
be active so logout and revocation take effect within a second everywhere.

Session checks are cached per (session, subject): a token whose subject is not
the session's owner gets auth's answer for that pair (ended), never the owner's.
They are cached for session_check_cache_seconds; with a revocation
feed (auth's broadcasts of ended sessions) for session_cache_seconds_with_push,
but only while the feed is live: connected, and auth heard within three
heartbeats. Whenever broadcasts may have been missed (drop, reconnect, silence)
the cached answers go and the short lifetime applies until auth is heard again.

Fallback while auth does not answer a session check (UNAVAILABLE, DEADLINE_EXCEEDED, its
circuit breaker open): a session auth confirmed active for this subject within
`grace_seconds` ([resilience] session_grace_seconds) is still accepted, logged once per
session; anything else is UNAVAILABLE. A session ended meanwhile is refused as soon as
its broadcast arrives, and at worst accepted grace_seconds after auth last confirmed it."""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import grpc
import jwt
from jwt.algorithms import RSAAlgorithm

from services.kit.config.settings import JwtSettings
from services.kit.domain.errors import PermissionDenied, Unauthenticated, Unavailable
from services.kit.grpc.breakers import is_peer_failure
from services.kit.identity.service_tokens import (
    MAX_SERVICE_TOKEN_SECONDS,
    SERVICE_TOKEN_TYPE,
    Caller,
)

log = logging.getLogger(__name__)

ALGORITHM = "RS256"
TOKEN_TYPE = "at+jwt"
LEEWAY_SECONDS = 30
JWKS_REFRESH_MIN_INTERVAL = 5.0
REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub", "jti", "sid"]
SERVICE_REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub", "jti"]
# Verified tokens kept (until they expire); the whole cache goes when it is full.
VERIFIED_CACHE_MAX = 50_000
# Session answers kept; the whole cache goes when it is full.
SESSION_CACHE_MAX = 100_000
# Ended sessions remembered at most, oldest dropped first: a dropped one costs a
# CheckSession, whose answer (ended) comes from auth itself.
ENDED_SESSIONS_MAX = 100_000
# Heartbeats a revocation feed may miss before it no longer counts as live.
FEED_MISSED_HEARTBEATS = 3

JwksSource = Callable[[], Awaitable[dict[str, Any]]]
SessionCheck = Callable[[str, str], Awaitable[bool]]


class RevocationFeed(Protocol):
    def attach(
        self, on_sessions_ended: Callable[[list[str]], None], on_link_change: Callable[[bool], None]
    ) -> None:
        """on_sessions_ended gets each broadcast's session ids (none: a heartbeat);
        on_link_change(up) each connect, drop and reconnect of the subscription."""


class _Answer(NamedTuple):
    asked_at: float
    active: bool
    # The feed epoch in which it may be trusted for the longer lifetime; None: never.
    feed_epoch: int | None


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
    def __init__(
        self,
        settings: JwtSettings,
        jwks_source: JwksSource,
        session_check: SessionCheck,
        feed: RevocationFeed | None = None,
        grace_seconds: float = 0.0,
    ) -> None:
        self.settings = settings
        self.grace_seconds = grace_seconds
        # Sessions accepted on grace since auth last answered: each is logged once.
        self._on_grace: set[str] = set()
        self._jwks_source = jwks_source
        self._session_check = session_check
        self._keys: dict[str, Any] = {}
        self._last_refresh = 0.0
        self._refresh_lock = asyncio.Lock()
        # session id -> subject -> auth's answer for that pair
        self._session_cache: dict[str, dict[str, _Answer]] = {}
        # token -> (expiry as a Unix time, its identity)
        self._verified: dict[str, tuple[float, Identity]] = {}
        # service or operator token -> (expiry as a Unix time, its caller)
        self._verified_callers: dict[str, tuple[float, Caller]] = {}
        # One CheckSession per (session, subject) at a time: a burst of calls with one token shares it.
        self._session_checks: dict[tuple[str, str], asyncio.Future[bool]] = {}
        # Sessions a broadcast ended -> when no token of theirs can be valid any more
        # (insertion order is expiry order). Consulted before and after every check.
        self._ended: dict[str, float] = {}
        self._ended_lifetime = settings.access_ttl_seconds + LEEWAY_SECONDS
        self._feed_up = False
        self._feed_heard_at = -math.inf
        self._feed_silence = FEED_MISSED_HEARTBEATS * settings.session_push_heartbeat_seconds
        # Bumped whenever broadcasts may have been missed: older answers lose the long lifetime.
        self._feed_epoch = 0
        if feed is not None:
            feed.attach(self._sessions_ended, self._feed_link_changed)

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
            if keys.keys() != self._keys.keys():
                # A key withdrawn from the set takes its tokens with it.
                self._verified.clear()
                self._verified_callers.clear()
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
        cached = self._verified.get(token)
        if cached is not None and cached[0] > time.time():
            identity = cached[1]
        else:
            identity = await self._decode(token)
        if not await self._session_active(identity):
            raise Unauthenticated("session ended")
        return identity

    async def _decode(self, token: str) -> Identity:
        """Signature and claims, checked once per token: a client sends the same
        token for minutes, and RS256 plus PyJWT's parsing is the larger part of a
        cheap RPC. The session is still checked on every call."""
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
        if len(self._verified) >= VERIFIED_CACHE_MAX:
            self._verified.clear()
        self._verified[token] = (float(claims["exp"]) + LEEWAY_SECONDS, identity)
        return identity

    async def verify_caller(self, token: str) -> Caller:
        """A service or operator token (typ svc+jwt, the service audience, short-lived).
        No session behind it: it is short-lived instead, and signed by auth only for a
        service that presented its credential, or by an operator holding auth's keys."""
        cached = self._verified_callers.get(token)
        if cached is not None and cached[0] > time.time():
            return cached[1]
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthenticated("a service credential is required") from None
        if header.get("typ") == TOKEN_TYPE:
            raise PermissionDenied("mesh-internal method: a user token does not open it")
        kid = header.get("kid")
        if (
            header.get("alg") != ALGORITHM
            or header.get("typ") != SERVICE_TOKEN_TYPE
            or not isinstance(kid, str)
        ):
            raise Unauthenticated("invalid service token")
        claims = self._service_claims(token, await self._key_for(kid))
        caller = Caller.from_subject(str(claims["sub"]))
        if caller is None or int(claims["exp"]) - int(claims["iat"]) > MAX_SERVICE_TOKEN_SECONDS:
            raise Unauthenticated("invalid service token")
        if len(self._verified_callers) >= VERIFIED_CACHE_MAX:
            self._verified_callers.clear()
        self._verified_callers[token] = (float(claims["exp"]) + LEEWAY_SECONDS, caller)
        return caller

    def _service_claims(self, token: str, key: Any) -> dict[str, Any]:
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self.settings.service_audience,
                issuer=self.settings.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": SERVICE_REQUIRED_CLAIMS},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("service token expired") from None
        except jwt.PyJWTError:
            raise Unauthenticated("invalid service token") from None

    async def _session_active(self, identity: Identity) -> bool:
        if identity.session_id in self._ended:
            return False
        cached = self._cached_answer(identity)
        if cached is not None:
            return cached
        asked = (identity.session_id, identity.user_id)
        check = self._session_checks.get(asked)
        if check is None:
            check = asyncio.ensure_future(self._check_session(identity))
            self._session_checks[asked] = check
            check.add_done_callback(lambda _: self._session_checks.pop(asked, None))
        # Shielded: a caller that gives up does not cancel the check the others wait for.
        return await asyncio.shield(check)

    def _cached_answer(self, identity: Identity) -> bool | None:
        answers = self._session_cache.get(identity.session_id)
        answer = answers.get(identity.user_id) if answers is not None else None
        if answer is None:
            return None
        now = time.monotonic()
        age = now - answer.asked_at
        if age < self.settings.session_check_cache_seconds:
            return answer.active
        if (
            age < self.settings.session_cache_seconds_with_push
            and answer.feed_epoch == self._feed_epoch
            and self._feed_live(now)
        ):
            return answer.active
        return None

    async def _check_session(self, identity: Identity) -> bool:
        asked_at = time.monotonic()
        epoch = self._feed_epoch
        try:
            active = await self._session_check(identity.session_id, identity.user_id)
        except Exception as error:
            if not is_peer_failure(error):
                raise
            return self._on_grace_or_unavailable(identity, error)
        self._on_grace.clear()
        if identity.session_id in self._ended:
            # Ended while the check was in flight: its "active" may predate that.
            return False
        if len(self._session_cache) > SESSION_CACHE_MAX:
            self._session_cache.clear()
        # Trusted for long only if no broadcast can have been missed since it was asked.
        unbroken = epoch == self._feed_epoch and self._feed_live(time.monotonic())
        answer = _Answer(asked_at, active, epoch if unbroken else None)
        self._session_cache.setdefault(identity.session_id, {})[identity.user_id] = answer
        return active

    def _on_grace_or_unavailable(self, identity: Identity, error: Exception) -> bool:
        """Auth did not answer: the last "active" for this pair, if recent enough."""
        answers = self._session_cache.get(identity.session_id)
        answer = answers.get(identity.user_id) if answers is not None else None
        age = time.monotonic() - answer.asked_at if answer is not None else math.inf
        if answer is None or not answer.active or age >= self.grace_seconds:
            raise Unavailable("session check temporarily unavailable; retry") from None
        if identity.session_id not in self._on_grace:
            if len(self._on_grace) >= SESSION_CACHE_MAX:
                self._on_grace.clear()
            self._on_grace.add(identity.session_id)
            log.warning(
                "auth unavailable; session accepted on grace",
                extra={
                    "session_id": identity.session_id,
                    "confirmed_seconds_ago": round(age, 1),
                    "grace_seconds": self.grace_seconds,
                    "code": error.code().name if isinstance(error, grpc.aio.AioRpcError) else "",
                },
            )
        return True

    # --- the revocation feed ----------------------------------------------------------

    def _feed_live(self, now: float) -> bool:
        return self._feed_up and now - self._feed_heard_at < self._feed_silence

    def _feed_link_changed(self, up: bool) -> None:
        # Broadcasts sent while the link was down are lost: start over, and wait to hear auth.
        self._feed_up = up
        self._feed_heard_at = -math.inf
        self._forget_answers()

    def _sessions_ended(self, session_ids: list[str]) -> None:
        now = time.monotonic()
        if not self._feed_live(now):
            # Auth was silent (or the link is new): a revocation may have been lost.
            self._forget_answers()
        self._feed_heard_at = now
        for session_id in session_ids:
            self._ended.setdefault(session_id, now + self._ended_lifetime)
            self._session_cache.pop(session_id, None)
        self._forget_old_ended(now)

    def _forget_answers(self) -> None:
        self._session_cache.clear()
        self._feed_epoch += 1

    def _forget_old_ended(self, now: float) -> None:
        while self._ended:
            oldest, forget_at = next(iter(self._ended.items()))
            if forget_at > now and len(self._ended) <= ENDED_SESSIONS_MAX:
                return
            del self._ended[oldest]
