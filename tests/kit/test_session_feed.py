"""Auth's broadcasts of ended sessions, over real NATS, to a TokenVerifier that
caches session checks for the long lifetime only while it hears auth.

The short lifetime is 0 here, so every session check the verifier makes is
visible: a verify that asks no one was answered from the long-lived cache."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from services.kit.config.settings import JwtSettings
from services.kit.domain.errors import Unauthenticated
from services.kit.events.bus import EventBus
from services.kit.identity.revocation import SessionFeed
from services.kit.identity.tokens import TokenVerifier
from tests.infra import NatsServer, delete_stream, unique_prefix

KEY = rsa.generate_private_key(65537, 2048)
JWKS = {"keys": [json.loads(RSAAlgorithm.to_jwk(KEY.public_key())) | {"kid": "k1", "alg": "RS256"}]}
# Generous bounds for NATS round trips on a busy machine; no test waits for them unless failing.
PROPAGATION_SECONDS = 2.0
RECONNECT_SECONDS = 15.0


def new_session() -> tuple[str, str]:
    """A session id and an access token of it."""
    session_id = str(uuid.uuid4())
    now = int(time.time())
    claims = {
        "iss": "iss",
        "aud": "aud",
        "sub": "u1",
        "sid": session_id,
        "jti": "j",
        "iat": now,
        "exp": now + 600,
    }
    return session_id, jwt.encode(claims, KEY, algorithm="RS256", headers={"kid": "k1", "typ": "at+jwt"})


async def jwks() -> dict[str, Any]:
    return JWKS


class Sessions:
    """Auth's CheckSession as the verifier sees it. With `hold` set, a check reads the
    state at once but answers only when released, as a slow round trip would."""

    def __init__(self) -> None:
        self.ended: set[str] = set()
        self.checks = 0
        self.hold: asyncio.Event | None = None
        self.read = asyncio.Event()

    async def check(self, session_id: str, user_id: str) -> bool:
        self.checks += 1
        active = session_id not in self.ended
        self.read.set()
        if self.hold is not None:
            await self.hold.wait()
        return active


class Feed:
    """Auth's end (announces, heartbeats) and a verifier listening, on one NATS and prefix."""

    def __init__(self, nats_url: str, heartbeat_seconds: float = 0.25) -> None:
        prefix = unique_prefix("sf")
        settings = JwtSettings(
            issuer="iss",
            audience="aud",
            session_check_cache_seconds=0,
            session_cache_seconds_with_push=30,
            session_push_heartbeat_seconds=heartbeat_seconds,
        )
        self.auth_bus = EventBus(nats_url, prefix, "auth-test")
        self.auth = SessionFeed(self.auth_bus, heartbeat_seconds)
        self.bus = EventBus(nats_url, prefix, "verifier-test")
        self.nats_url = nats_url
        self.sessions = Sessions()
        self.verifier = TokenVerifier(
            settings, jwks, self.sessions.check, SessionFeed(self.bus, heartbeat_seconds)
        )
        self.heartbeat: asyncio.Task[None] | None = None

    async def start(self, heartbeat: bool = True) -> None:
        self.auth_bus.start()
        self.bus.start()
        await asyncio.gather(self.auth_bus.wait_ready(), self.bus.wait_ready())
        if heartbeat:
            self.heartbeat = asyncio.create_task(self.auth.heartbeat_forever())

    async def stop_heartbeat(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat.cancel()
            await asyncio.gather(self.heartbeat, return_exceptions=True)

    async def close(self) -> None:
        await self.stop_heartbeat()
        await asyncio.gather(self.auth_bus.close(), self.bus.close())
        await delete_stream(self.nats_url, self.bus.stream)

    async def cached_for_long(self, bearer: str) -> None:
        """Verifies until an answer comes from the cache, which only a live feed allows."""
        deadline = time.monotonic() + RECONNECT_SECONDS
        while True:
            checks = self.sessions.checks
            await self.verifier.verify(bearer)
            if self.sessions.checks == checks:
                return
            assert time.monotonic() < deadline, "the feed never went live"
            await asyncio.sleep(0.02)


@pytest.fixture
async def feed(nats_url: str) -> AsyncIterator[Feed]:
    feed = Feed(nats_url)
    await feed.start()
    yield feed
    await feed.close()


async def refused_within(verifier: TokenVerifier, bearer: str, seconds: float = PROPAGATION_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            await verifier.verify(bearer)
        except Unauthenticated as error:
            assert str(error) == "session ended"
            return
        await asyncio.sleep(0.01)
    pytest.fail(f"the token was still accepted after {seconds} s")


async def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + RECONNECT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def counts_checks(feed: Feed, call: Awaitable[object]) -> int:
    before = feed.sessions.checks
    await call
    return feed.sessions.checks - before


async def test_a_broadcast_ends_a_session_cached_as_active_for_long(feed: Feed) -> None:
    session_id, bearer = new_session()
    await feed.cached_for_long(bearer)
    await asyncio.sleep(0.5)  # past the short lifetime, through several heartbeats
    assert await counts_checks(feed, feed.verifier.verify(bearer)) == 0
    feed.sessions.ended.add(session_id)
    await feed.auth.announce([session_id])
    await refused_within(feed.verifier, bearer)
    assert await counts_checks(feed, refused_within(feed.verifier, bearer)) == 0


async def test_a_check_in_flight_when_the_broadcast_arrives_does_not_resurrect_the_session(
    feed: Feed,
) -> None:
    session_id, bearer = new_session()
    probe_id, probe = new_session()
    await feed.cached_for_long(probe)
    feed.sessions.hold, feed.sessions.read = asyncio.Event(), asyncio.Event()
    in_flight = asyncio.create_task(feed.verifier.verify(bearer))
    await feed.sessions.read.wait()  # auth read "active"; its answer is on the way
    await feed.auth.announce([session_id, probe_id])
    await refused_within(feed.verifier, probe)  # so the broadcast has arrived
    feed.sessions.hold.set()
    with pytest.raises(Unauthenticated, match="session ended"):
        await in_flight
    feed.sessions.hold = None
    with pytest.raises(Unauthenticated, match="session ended"):
        await feed.verifier.verify(bearer)


async def test_without_auths_heartbeat_answers_keep_the_short_lifetime(nats_url: str) -> None:
    feed = Feed(nats_url)
    await feed.start(heartbeat=False)
    try:
        _, bearer = new_session()
        await asyncio.sleep(0.3)
        for _ in range(3):
            assert await counts_checks(feed, feed.verifier.verify(bearer)) == 1
    finally:
        await feed.close()


async def test_when_auth_falls_silent_the_long_lifetime_ends(feed: Feed) -> None:
    _, bearer = new_session()
    await feed.cached_for_long(bearer)
    await feed.stop_heartbeat()
    await asyncio.sleep(1.5)  # more than three heartbeats (0.25 s) missed
    assert await counts_checks(feed, feed.verifier.verify(bearer)) == 1


async def test_answers_cached_before_a_disconnect_are_not_trusted_after_it(tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "nats")
    server.start()
    # Heartbeats far apart: only the link change, not auth's silence, can drop the answers.
    feed = Feed(server.url, heartbeat_seconds=5.0)
    try:
        await feed.start()
        _, kept = new_session()
        ended_id, ended = new_session()
        await feed.cached_for_long(kept)
        await feed.cached_for_long(ended)
        server.stop()
        await wait_for(lambda: not feed.bus.connected, "the verifier to see the drop")
        # Disconnected: the short lifetime, auth is asked again.
        assert await counts_checks(feed, feed.verifier.verify(kept)) == 1
        # Ended while the verifier could not hear it (no broadcast reaches it).
        feed.sessions.ended.add(ended_id)
        server.start()
        await wait_for(lambda: feed.bus.connected, "the verifier to reconnect")
        with pytest.raises(Unauthenticated, match="session ended"):
            await feed.verifier.verify(ended)
        # Once auth is heard again, answers are cached for long again.
        await feed.cached_for_long(kept)
    finally:
        await feed.close()
        server.stop()
