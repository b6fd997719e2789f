"""The dependencies every service builds from settings, in one place:
database, event bus, cache, token verifier, outbox relay and consumers, and the
metrics sampler that watches them (services/kit/metrics.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import Table

from services.kit import metrics
from services.kit.cache import Cache
from services.kit.config.secrets import nats_password
from services.kit.config.settings import MeshSettings
from services.kit.db.engine import Database
from services.kit.db.retention import Purger
from services.kit.events.bus import EventBus
from services.kit.events.consumer import BatchHandler, EventConsumer, Handler, per_event
from services.kit.events.outbox import Outbox, OutboxRelay
from services.kit.events.subscription import Subscription
from services.kit.grpc.server import ServiceApp
from services.kit.identity.auth_client import AuthServiceClient
from services.kit.identity.revocation import SessionFeed
from services.kit.identity.service_tokens import ServiceTokens
from services.kit.identity.tokens import TokenVerifier
from services.kit.metrics import Sampler


class Runtime:
    def __init__(self, name: str, settings: MeshSettings) -> None:
        self.name = name
        self.settings = settings
        self.db = Database.for_service(settings, name)
        # Its own NATS user, named after the service (what it may publish: kit/events/permissions.py).
        password = nats_password(settings, name)
        user = name if password is not None else None
        url, prefix = settings.resolved_nats_url, settings.event_prefix
        self.bus = EventBus(url, prefix, f"{name}-service", user, password)
        self.cache = Cache(settings.redis_url, f"{settings.event_prefix}:{name}", name)
        self.background: list[Callable[[], Awaitable[None]]] = []
        self._service_tokens: ServiceTokens | None = None
        retention = settings.retention
        self.purger = Purger(
            self.db, timedelta(minutes=retention.purge_interval_minutes), retention.purge_chunk_rows
        )
        # Gauges that cost a query, set every [metrics] sample_interval_seconds.
        self.sampler = Sampler(settings.metrics.sample_interval_seconds)
        self.sampler.add(self._sample_pools)
        self.readiness: dict[str, Callable[[], Awaitable[bool]]] = {
            "database": self.db.ping,
            "nats": self._nats_ready,
        }

    async def _nats_ready(self) -> bool:
        return self.bus.connected

    async def _sample_pools(self) -> None:
        for pool, (in_use, idle) in self.db.pool_use().items():
            metrics.DB_POOL_CONNECTIONS.labels(self.name, pool, "in_use").set(in_use)
            metrics.DB_POOL_CONNECTIONS.labels(self.name, pool, "idle").set(idle)

    def outbox(self, table: Table) -> Outbox:
        outbox = Outbox(table, self.settings.event_prefix, self.name)
        cfg = self.settings.outbox
        relay = OutboxRelay(
            self.db,
            outbox,
            self.bus,
            cfg.batch_size,
            cfg.poll_interval_seconds,
            timedelta(seconds=cfg.stale_after_seconds),
            timedelta(seconds=cfg.mark_interval_seconds),
        )
        self.background.append(relay.run)
        self.relay = relay

        async def sample_backlog() -> None:
            count, age = await relay.backlog()
            metrics.OUTBOX_BACKLOG.labels(outbox.producer).set(count)
            metrics.OUTBOX_OLDEST_SECONDS.labels(outbox.producer).set(age)

        self.sampler.add(sample_backlog)
        # Published rows stay for replays (OutboxRelay.replay_from); unpublished ones stay.
        self.purger.keep(table, "published_at", cfg.replay_window)
        return outbox

    def consume(self, inbox: Table, subscription: Subscription, handler: Handler) -> EventConsumer:
        """A consumer applying its events one at a time (still one transaction per batch)."""
        return self.consume_batches(inbox, subscription, per_event(handler))

    def consume_batches(
        self, inbox: Table, subscription: Subscription, handler: BatchHandler
    ) -> EventConsumer:
        """A consumer handing `handler` each fetched batch's fresh events at once."""
        refused = [t.name for t in subscription.types.values() if not t.may_consume(self.name)]
        if refused:
            raise ValueError(f"{self.name} may not consume {', '.join(refused)} (see its `consumers`)")
        cfg = self.settings.consumers
        consumer = EventConsumer(
            self.bus, self.db, inbox, subscription, handler, cfg.batch_size, cfg.linger_ms / 1000
        )
        self.background.append(consumer.run)
        self.sampler.add(consumer.sample)
        self.purger.keep(inbox, "processed_at", self.settings.retention.inbox_window)
        return consumer

    def service_tokens(self) -> ServiceTokens:
        """This service's identity towards the others (made once, closed on stop)."""
        if self._service_tokens is None:
            self._service_tokens = ServiceTokens.for_service(self.settings, self.name)
        return self._service_tokens

    def remote_verifier(self) -> TokenVerifier:
        resilience = self.settings.resilience
        # Session checks and key fetches have fallbacks (the grace period, the keys already
        # loaded): a short deadline, then the fallback.
        client = AuthServiceClient(
            self.settings.service_address("auth"),
            resilience.fallback_call_timeout_seconds,
            self.service_tokens(),
            resilience,
        )
        # Auth's broadcasts of ended sessions let it cache session checks for longer.
        feed = SessionFeed(self.bus, self.settings.jwt.session_push_heartbeat_seconds)
        verifier = TokenVerifier(
            self.settings.jwt, client.jwks, client.session_active, feed, resilience.session_grace_seconds
        )

        async def keys_loaded() -> bool:
            if not verifier.ready:
                await verifier.refresh_keys(force=True)
            return verifier.ready

        self.readiness["auth_keys"] = keys_loaded
        tokens = self.service_tokens()

        async def identity_accepted() -> bool:
            # Not ready until auth accepts this service's credential once: a wrong one stalls
            # the start (and a rollout) with a logged error instead of failing every call.
            if not tokens.obtained:
                await tokens.token()
            return tokens.obtained

        self.readiness["service_identity"] = identity_accepted
        self._auth_client = client
        return verifier

    def app(self, verifier: TokenVerifier, servicers: list[tuple[Any, object, str]]) -> ServiceApp:
        async def start() -> None:
            self.bus.start()

        async def stop() -> None:
            await asyncio.gather(self.bus.close(), self.cache.close(), return_exceptions=True)
            if hasattr(self, "_auth_client"):
                await self._auth_client.close()
            if self._service_tokens is not None:
                await self._service_tokens.close()
            await self.db.dispose()

        return ServiceApp(
            name=self.name,
            settings=self.settings,
            verifier=verifier,
            servicers=servicers,
            readiness=self.readiness,
            background=[
                *self.background,
                *([self.purger.run] if self.purger.kept else []),
                *([self.sampler.run] if self.settings.metrics.enabled else []),
            ],
            on_start=[start],
            on_stop=[stop],
        )
