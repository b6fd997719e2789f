"""The reporting service under test, in-process: its real servicer on a grpc.aio
server built by the kit (interceptors included), a migrated database, and the
real event handlers. Access tokens are RS256 JWTs signed with a key of the test,
verified by the kit's real TokenVerifier."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from expense.events.v1 import events_pb2
from expense.reporting.v1 import reporting_pb2_grpc
from services.kit.cache import Cache
from services.kit.db import migrations
from services.kit.db.engine import Database
from services.kit.domain.ids import new_id
from services.kit.events.bus import EventBus, make_envelope
from services.kit.events.consumer import BatchHandler, EventConsumer, per_event
from services.kit.events.subscription import Event, Subscription
from services.kit.grpc.server import ServiceApp
from services.kit.identity.tokens import Identity, TokenVerifier, reset_identity, set_identity
from services.kit.responses import ResponseCache
from services.reporting import storage
from services.reporting.api import ReportingServicer
from services.reporting.events import EventHandlers
from services.reporting.preferences import StoredPreferences
from services.reporting.server import (
    CATEGORY_CHANGES,
    EXPENSE_CHANGES,
    PROFILE_CHANGES,
    SERVICE_NAME,
    SUBSCRIPTIONS,
)
from services.reporting.settings import ReportingMeshSettings
from services.reporting.usecases import ReportRequests, Reports
from services.user.client import Preferences
from tests.infra import fresh_postgres_database


@contextlib.asynccontextmanager
async def migrated_settings(
    backend: str, data_dir: Path, **overrides: Any
) -> AsyncIterator[ReportingMeshSettings]:
    """Settings of a fresh, migrated reporting database (SQLite file or new PostgreSQL database)."""
    with contextlib.ExitStack() as stack:
        url = (
            stack.enter_context(fresh_postgres_database())
            if backend == "postgresql"
            else f"sqlite+aiosqlite:///{data_dir / 'reporting.sqlite3'}"
        )
        settings = ReportingMeshSettings(database_url=url, data_dir=data_dir, **overrides)
        # Alembic's env runs its own event loop, so it gets a thread of its own.
        await asyncio.to_thread(migrations.upgrade, "reporting", settings)
        yield settings


class TokenIssuer:
    """Signs access tokens the way the auth service does (RS256, typ at+jwt, kid)."""

    def __init__(self, settings: ReportingMeshSettings) -> None:
        self.settings = settings
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = new_id()

    async def jwks(self) -> dict[str, Any]:
        numbers = self.key.public_key().public_numbers()

        def b64(value: int) -> str:
            raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
            return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

        return {
            "keys": [
                {"kty": "RSA", "kid": self.kid, "alg": "RS256", "n": b64(numbers.n), "e": b64(numbers.e)}
            ]
        }

    @staticmethod
    async def session_active(_session_id: str, _user_id: str) -> bool:
        return True

    def verifier(self) -> TokenVerifier:
        return TokenVerifier(self.settings.jwt, self.jwks, self.session_active)

    def token(self, user_id: str) -> str:
        now = int(time.time())
        claims = {
            "iss": self.settings.jwt.issuer,
            "aud": self.settings.jwt.audience,
            "sub": user_id,
            "iat": now,
            "exp": now + 600,
            "jti": new_id(),
            "sid": new_id(),
        }
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid, "typ": "at+jwt"})

    def metadata(self, user_id: str) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token(user_id)}"),)


class FixedClock:
    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Reporting:
    """One reporting instance: database, handlers, servicer, optional gRPC server."""

    settings: ReportingMeshSettings
    db: Database
    cache: ResponseCache
    handlers: EventHandlers
    servicer: ReportingServicer
    clock: FixedClock
    tokens: TokenIssuer
    channel: grpc.aio.Channel | None = None
    server: grpc.aio.Server | None = None

    @property
    def stub(self) -> reporting_pb2_grpc.ReportingServiceStub:
        assert self.channel is not None, "serve() first"
        return reporting_pb2_grpc.ReportingServiceStub(self.channel)

    async def apply(self, *envelopes: events_pb2.EventEnvelope) -> None:
        """Each event through the handler its consumer would call, in its own transaction."""
        handler_for = {
            EXPENSE_CHANGES.consumer: self.handlers.on_expense_events,
            CATEGORY_CHANGES.consumer: per_event(self.handlers.on_category_event),
            PROFILE_CHANGES.consumer: per_event(self.handlers.on_profile_event),
        }
        for envelope in envelopes:
            event = as_event(envelope)
            async with self.db.transaction() as session:
                await handler_for[subscription_of(envelope).consumer](session, [event])
        await self.handlers.settled()

    async def apply_batch(self, *envelopes: events_pb2.EventEnvelope) -> None:
        """Expense events as the consumer hands over one fetched batch (without the inbox)."""
        async with self.db.transaction() as session:
            await self.handlers.on_expense_events(session, as_events(envelopes))
        await self.handlers.settled()

    def expense_consumer(self, handler: BatchHandler | None = None) -> EventConsumer:
        """The expense events' consumer, inbox included, to be fed with handle_batch
        (its bus is never started). `handler` stands in for the real one."""
        bus = EventBus(self.settings.resolved_nats_url, self.settings.event_prefix, "reporting-test")
        handler = handler or self.handlers.on_expense_events
        return EventConsumer(bus, self.db, storage.inbox_table, EXPENSE_CHANGES, handler)

    async def call(self, user_id: str, method: Callable[..., Any], request: Any) -> Any:
        """A servicer method called directly as `user_id` (no gRPC hop)."""
        marker = set_identity(Identity(user_id, "session", "token", 0, token="unused"))
        try:
            return await method(request, None)
        finally:
            reset_identity(marker)

    async def serve(self) -> None:
        app = ServiceApp(
            name="reporting",
            settings=self.settings,
            verifier=self.tokens.verifier(),
            servicers=[
                (reporting_pb2_grpc.add_ReportingServiceServicer_to_server, self.servicer, SERVICE_NAME)
            ],
        )
        self.server, _ = await app.build_server()
        port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")

    async def close(self) -> None:
        if self.channel is not None:
            await self.channel.close()
        if self.server is not None:
            await self.server.stop(None)
        await self.cache.cache.close()
        await self.db.dispose()


def subscription_of(envelope: events_pb2.EventEnvelope) -> Subscription:
    """The reporting consumer that takes this envelope's type."""
    return next(subscription for subscription in SUBSCRIPTIONS if envelope.type in subscription.types)


def as_event(envelope: events_pb2.EventEnvelope) -> Event[Any]:
    """The envelope as its consumer hands it to a handler."""
    return subscription_of(envelope).parse(envelope.SerializeToString())


def as_events(envelopes: Sequence[events_pb2.EventEnvelope]) -> list[Event[Any]]:
    return [as_event(envelope) for envelope in envelopes]


def build_reporting(settings: ReportingMeshSettings, clock: FixedClock | None = None) -> Reporting:
    db = Database.for_service(settings, "reporting")
    cache = ResponseCache(Cache(settings.redis_url, f"{settings.event_prefix}:reporting"), 60.0, "report")
    preferences = StoredPreferences(db, settings.user.defaults)
    clock = clock or FixedClock()
    return Reporting(
        settings=settings,
        db=db,
        cache=cache,
        handlers=EventHandlers(cache.invalidate, lambda _user_id: None),
        servicer=ReportingServicer(
            ReportRequests(Reports(db, settings.reporting), preferences, cache, settings.reporting, clock)
        ),
        clock=clock,
        tokens=TokenIssuer(settings),
    )


def profile_event(user_id: str, preferences: Preferences) -> events_pb2.EventEnvelope:
    payload = events_pb2.ProfileUpdated(
        user_id=user_id,
        default_currency=preferences.default_currency,
        time_zone=preferences.time_zone,
        first_day_of_week=preferences.first_day_of_week,
        locale=preferences.locale,
    )
    return make_envelope("user.profile_updated", user_id, payload, "user")
