"""Creating profiles. The UserRegistered event creates a profile, but a client
may read its profile before the event arrives; then the account is fetched from
the auth service and the profile created at once. Both paths insert-if-absent,
so they converge on one row whichever comes first."""

from __future__ import annotations

import logging

import grpc
from sqlalchemy.ext.asyncio import AsyncSession

from expense.auth.v1 import auth_pb2, auth_pb2_grpc
from expense.events.v1 import events_pb2
from services.kit.db.engine import Database
from services.kit.domain.errors import NotFound, Unavailable
from services.kit.domain.timestamps import utcnow
from services.kit.events.subscription import Event
from services.kit.grpc.clients import LazyChannel
from services.user import storage
from services.user.domain import Profile, ProfileRules

log = logging.getLogger(__name__)

IDENTITY_SERVICE = "expense.auth.v1.IdentityService"


class AccountDirectory:
    """The auth service's accounts, through its mesh-internal IdentityService."""

    def __init__(self, target: str, timeout_seconds: float) -> None:
        self.channel = LazyChannel(target, [IDENTITY_SERVICE], timeout_seconds)

    def _stub(self) -> auth_pb2_grpc.IdentityServiceStub:
        return auth_pb2_grpc.IdentityServiceStub(self.channel.get())

    async def account(self, user_id: str) -> auth_pb2.AuthUser | None:
        """The account, or None when the auth service knows no such user."""
        try:
            return await self._stub().GetAccount(auth_pb2.GetAccountRequest(user_id=user_id))
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return None
            log.warning(
                "account lookup failed", extra={"code": error.code().name, "details": error.details()}
            )
            raise Unavailable("profile temporarily unavailable; try again") from None

    async def close(self) -> None:
        await self.channel.close()


class ProfileProvisioner:
    def __init__(self, db: Database, rules: ProfileRules, accounts: AccountDirectory) -> None:
        self.db = db
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
        async with self.db.transaction() as session:
            profile = await storage.find_profile(session, user_id)
        if profile is not None:
            return profile
        account = await self.accounts.account(user_id)
        if account is None:
            raise NotFound("profile")
        new = self.rules.new_profile(user_id, account.email, account.display_name, utcnow())
        async with self.db.transaction() as session:
            if await storage.add_profile_if_absent(session, new):
                log.info("profile from account lookup", extra={"user_id": user_id})
                return new
            # The signup event created it meanwhile.
            profile = await storage.find_profile(session, user_id)
        if profile is None:
            raise NotFound("profile")
        return profile
