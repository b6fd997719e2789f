"""The user service's use cases: a profile is read, created or updated here, each
write in one unit of work with the events it publishes.

Profiles are created from the `user.registered` event, but a client may read its
profile before the event arrives; then the account is fetched from the auth service
and the profile created at once. Both paths insert-if-absent, so they converge on one
row whichever comes first."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from expense.events.v1 import events_pb2
from services.kit.db.unit_of_work import UnitsOfWork
from services.kit.domain.errors import NotFound
from services.kit.domain.timestamps import utcnow
from services.kit.events.subscription import Event
from services.user import storage
from services.user.accounts import AccountDirectory
from services.user.domain import Profile, ProfileRules

log = logging.getLogger(__name__)


class ProfileProvisioner:
    """Creates profiles: from the signup event, or from the account on a first read."""

    def __init__(self, units: UnitsOfWork, rules: ProfileRules, accounts: AccountDirectory) -> None:
        self.units = units
        self.rules = rules
        self.accounts = accounts

    async def on_user_registered(
        self, session: AsyncSession, event: Event[events_pb2.UserRegistered]
    ) -> None:
        """Consumer of UserRegistered; runs inside the inbox transaction."""
        registered = event.payload
        if not registered.user_id:
            log.error("signup event without a user id", extra={"event_id": event.event_id})
            return
        profile = self.rules.new_profile(
            registered.user_id, registered.email, registered.display_name, utcnow()
        )
        created = await storage.add_profile_if_absent(session, profile)
        log.info("profile from signup event", extra={"user_id": registered.user_id, "new_profile": created})

    async def ensure(self, user_id: str) -> Profile:
        """The user's profile, created from their account if the event has not come yet."""
        async with self.units.db.transaction() as session:
            profile = await storage.find_profile(session, user_id)
        if profile is not None:
            return profile
        account = await self.accounts.account(user_id)
        if account is None:
            raise NotFound("profile")
        new = self.rules.new_profile(user_id, account.email, account.display_name, utcnow())
        async with self.units.begin() as unit:
            if await storage.add_profile_if_absent(unit.session, new):
                log.info("profile from account lookup", extra={"user_id": user_id})
                return new
            # The signup event created it meanwhile.
            profile = await storage.find_profile(unit.session, user_id)
        if profile is None:
            raise NotFound("profile")
        return profile


class Profiles:
    """GetProfile and UpdateProfile of the caller's own profile."""

    def __init__(self, units: UnitsOfWork, rules: ProfileRules, provisioner: ProfileProvisioner) -> None:
        self.units = units
        self.rules = rules
        self.provisioner = provisioner

    async def get(self, user_id: str) -> Profile:
        return await self.provisioner.ensure(user_id)

    async def update(self, user_id: str, changes: Mapping[str, Any]) -> Profile:
        """`changes` is {leaf path: requested value}, validated by the profile rules."""
        await self.provisioner.ensure(user_id)
        async with self.units.begin() as unit:
            current = await storage.find_profile(unit.session, user_id, for_update=True)
            if current is None:
                raise NotFound("profile")
            updated = self.rules.apply(current, changes, utcnow())
            await storage.save_profile(unit.session, updated)
            # Other services cache preferences; this tells them to forget theirs.
            await unit.publish(user_id, profile_updated(updated))
        return updated


def profile_updated(profile: Profile) -> events_pb2.ProfileUpdated:
    return events_pb2.ProfileUpdated(
        user_id=profile.user_id,
        default_currency=profile.default_currency,
        time_zone=profile.time_zone,
        first_day_of_week=profile.first_day_of_week,
        locale=profile.locale,
        sms_auto_import=profile.sms_auto_import,
        sms_allowed_senders=profile.sms_allowed_senders,
        version=profile.version,
    )
