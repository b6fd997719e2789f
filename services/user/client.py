"""The caller's preferences (currency, time zone, week start) for services
that need them on a request path: asked from the user service with the
caller's own token, cached in-process for `preferences_fresh_seconds`.

Fallback: while the user service does not answer (or its breaker is open), the last answer
for that user is used for up to `preferences_stale_seconds` (logged); with none, the error
goes to the caller (the ledger answers UNAVAILABLE unless the request names its currency
and date; reporting uses its own copy of profiles)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import grpc

from expense.user.v1 import user_pb2, user_pb2_grpc
from services.kit.config.settings import ResilienceSettings
from services.kit.grpc.breakers import is_peer_failure
from services.kit.grpc.clients import LazyChannel
from services.kit.identity.tokens import Identity

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Preferences:
    default_currency: str
    time_zone: str
    first_day_of_week: str
    locale: str


class PreferencesClient:
    def __init__(self, target: str, timeout_seconds: float, resilience: ResilienceSettings) -> None:
        self.channel = LazyChannel(
            target, ["expense.user.v1.UserService"], timeout_seconds, resilience=resilience, peer="user"
        )
        self.fresh_seconds = resilience.preferences_fresh_seconds
        self.stale_seconds = resilience.preferences_stale_seconds
        self.max_entries = resilience.preferences_max_entries
        # user id -> (when it was asked, monotonic; the answer)
        self._cache: dict[str, tuple[float, Preferences]] = {}

    def _stub(self) -> user_pb2_grpc.UserServiceStub:
        return user_pb2_grpc.UserServiceStub(self.channel.get())

    async def get(self, identity: Identity) -> Preferences:
        now = time.monotonic()
        cached = self._cache.get(identity.user_id)
        if cached and now - cached[0] < self.fresh_seconds:
            return cached[1]
        try:
            profile = await self._stub().GetProfile(
                user_pb2.GetProfileRequest(), metadata=(("authorization", f"Bearer {identity.token}"),)
            )
        except grpc.aio.AioRpcError as error:
            if cached and now - cached[0] < self.stale_seconds and is_peer_failure(error):
                # Debug: the breaker's "opened" warning already says the user service is down.
                log.debug(
                    "user service unavailable; using cached preferences",
                    extra={"user_id": identity.user_id, "age_seconds": round(now - cached[0], 1)},
                )
                return cached[1]
            raise
        preferences = Preferences(
            profile.default_currency, profile.time_zone, profile.first_day_of_week, profile.locale
        )
        if len(self._cache) >= self.max_entries:
            self._cache.clear()
        self._cache[identity.user_id] = (now, preferences)
        return preferences

    def forget(self, user_id: str) -> None:
        """Called when a profile.updated event arrives, so changes apply at once."""
        self._cache.pop(user_id, None)

    async def close(self) -> None:
        await self.channel.close()
