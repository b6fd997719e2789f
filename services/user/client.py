"""The caller's preferences (currency, time zone, week start) for services
that need them on a request path: asked from the user service with the
caller's own token, cached in-process for a few seconds."""

from __future__ import annotations

import time
from dataclasses import dataclass

from expense.user.v1 import user_pb2, user_pb2_grpc
from services.kit.grpc.clients import LazyChannel
from services.kit.identity.tokens import Identity

CACHE_SECONDS = 5.0
CACHE_MAX_ENTRIES = 50_000


@dataclass(frozen=True)
class Preferences:
    default_currency: str
    time_zone: str
    first_day_of_week: str
    locale: str


class PreferencesClient:
    def __init__(self, target: str, timeout_seconds: float) -> None:
        self.channel = LazyChannel(target, ["expense.user.v1.UserService"], timeout_seconds)
        self._cache: dict[str, tuple[float, Preferences]] = {}

    def _stub(self) -> user_pb2_grpc.UserServiceStub:
        return user_pb2_grpc.UserServiceStub(self.channel.get())

    async def get(self, identity: Identity) -> Preferences:
        now = time.monotonic()
        cached = self._cache.get(identity.user_id)
        if cached and cached[0] > now:
            return cached[1]
        profile = await self._stub().GetProfile(
            user_pb2.GetProfileRequest(), metadata=(("authorization", f"Bearer {identity.token}"),)
        )
        preferences = Preferences(
            profile.default_currency, profile.time_zone, profile.first_day_of_week, profile.locale
        )
        if len(self._cache) >= CACHE_MAX_ENTRIES:
            self._cache.clear()
        self._cache[identity.user_id] = (now + CACHE_SECONDS, preferences)
        return preferences

    def forget(self, user_id: str) -> None:
        """Called when a profile.updated event arrives, so changes apply at once."""
        self._cache.pop(user_id, None)

    async def close(self) -> None:
        await self.channel.close()
