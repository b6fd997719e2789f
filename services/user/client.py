"""The caller's preferences (currency, time zone, week start) for services
that need them on a request path: asked from the user service with the
caller's own token, cached in-process for `preferences_fresh_seconds`.

Fallback: while the user service does not answer (or its breaker is open), the last answer
for that user is used for up to `preferences_stale_seconds` (logged); with none, the error
goes to the caller (the ledger answers UNAVAILABLE unless the request names its currency
and date; reporting uses its own copy of profiles)."""

from __future__ import annotations

import logging
import math
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
        # user id -> (fresh until, usable as the fallback until: monotonic; the preferences)
        self._cache: dict[str, tuple[float, float, Preferences]] = {}
        # user id -> the highest ProfileUpdated.version forget() was given: an older event
        # redelivered after it must not become the fallback.
        self._event_versions: dict[str, int] = {}

    def _stub(self) -> user_pb2_grpc.UserServiceStub:
        return user_pb2_grpc.UserServiceStub(self.channel.get())

    async def get(self, identity: Identity) -> Preferences:
        now = time.monotonic()
        cached = self._cache.get(identity.user_id)
        if cached and now < cached[0]:
            return cached[2]
        try:
            profile = await self._stub().GetProfile(
                user_pb2.GetProfileRequest(), metadata=(("authorization", f"Bearer {identity.token}"),)
            )
        except grpc.aio.AioRpcError as error:
            if cached and now < cached[1] and is_peer_failure(error):
                # Debug: the breaker's "opened" warning already says the user service is down.
                log.debug(
                    "user service unavailable; using cached preferences", extra={"user_id": identity.user_id}
                )
                return cached[2]
            raise
        preferences = Preferences(
            profile.default_currency, profile.time_zone, profile.first_day_of_week, profile.locale
        )
        self._keep(identity.user_id, now + self.fresh_seconds, preferences)
        return preferences

    def _keep(self, user_id: str, fresh_until: float, preferences: Preferences) -> None:
        if len(self._cache) >= self.max_entries:
            self._cache.clear()
            self._event_versions.clear()
        self._cache[user_id] = (fresh_until, time.monotonic() + self.stale_seconds, preferences)

    def forget(self, user_id: str, latest: Preferences | None = None, version: int = 0) -> None:
        """Called when a profile.updated event arrives, so changes apply at once: the next
        call asks the user service; the event's preferences (`latest`, of profile `version`)
        are its fallback, unless an event of this version or a newer one came already (this
        one is an older event redelivered). Version 0: unversioned, always taken."""
        if version:
            if version <= self._event_versions.get(user_id, 0):
                return
            self._event_versions[user_id] = version
        if latest is None:
            self._cache.pop(user_id, None)
        else:
            self._keep(user_id, -math.inf, latest)

    async def close(self) -> None:
        await self.channel.close()
