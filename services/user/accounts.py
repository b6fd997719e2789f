"""The auth service's accounts, read through its mesh-internal IdentityService: the
user service creates a profile from one when a client reads its profile before the
signup event has arrived."""

from __future__ import annotations

import logging

import grpc

from expense.auth.v1 import auth_pb2, auth_pb2_grpc
from services.kit.config.settings import ResilienceSettings
from services.kit.domain.errors import Unavailable
from services.kit.grpc.clients import LazyChannel

log = logging.getLogger(__name__)

IDENTITY_SERVICE = "expense.auth.v1.IdentityService"


class AccountDirectory:
    def __init__(self, target: str, timeout_seconds: float, resilience: ResilienceSettings) -> None:
        # Fallback: none (the account is the profile's source); UNAVAILABLE, at once while
        # auth's breaker is open.
        self.channel = LazyChannel(
            target, [IDENTITY_SERVICE], timeout_seconds, resilience=resilience, peer="auth"
        )

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
