"""The caller's calendar (time zone, first day of week) and default currency.

Asked from the user service through the kit's PreferencesClient (which falls back on its
last answer first); when that fails too, the profile reporting keeps from
`user.profile_updated` events, else the configured defaults, so reports keep working while
the user service is down."""

from __future__ import annotations

import logging
from typing import Protocol

import grpc

from services.kit.db.engine import Database
from services.kit.grpc.breakers import CircuitOpen
from services.kit.identity.tokens import Identity
from services.reporting import storage
from services.user.client import Preferences, PreferencesClient
from services.user.settings import ProfileDefaults

log = logging.getLogger(__name__)


class PreferenceSource(Protocol):
    async def get(self, identity: Identity) -> Preferences: ...


class StoredPreferences:
    """Preferences from reporting's own copy of profiles (and the defaults)."""

    def __init__(self, db: Database, defaults: ProfileDefaults) -> None:
        self.db = db
        self.defaults = defaults

    async def get(self, identity: Identity) -> Preferences:
        return await self.for_user(identity.user_id)

    async def for_user(self, user_id: str) -> Preferences:
        async with self.db.read() as connection:
            profile = await storage.load_profile(connection, user_id)
        if profile is None:
            return self.complete(Preferences("", "", "", ""))
        return self.complete(
            Preferences(
                profile.default_currency, profile.time_zone, profile.first_day_of_week, profile.locale
            )
        )

    def complete(self, preferences: Preferences) -> Preferences:
        return Preferences(
            default_currency=preferences.default_currency or self.defaults.default_currency,
            time_zone=preferences.time_zone or self.defaults.time_zone,
            first_day_of_week=preferences.first_day_of_week or self.defaults.first_day_of_week,
            locale=preferences.locale or self.defaults.locale,
        )


class UserServicePreferences:
    def __init__(self, client: PreferencesClient, fallback: StoredPreferences) -> None:
        self.client = client
        self.fallback = fallback

    async def get(self, identity: Identity) -> Preferences:
        try:
            return self.fallback.complete(await self.client.get(identity))
        except grpc.aio.AioRpcError as error:
            # While the breaker is open its own "opened" warning says it; once per report is noise.
            level = logging.DEBUG if isinstance(error, CircuitOpen) else logging.WARNING
            log.log(
                level,
                "user service did not answer; using stored preferences",
                extra={"code": error.code().name, "user_id": identity.user_id},
            )
        return await self.fallback.get(identity)

    def forget(self, user_id: str) -> None:
        self.client.forget(user_id)

    async def close(self) -> None:
        await self.client.close()
