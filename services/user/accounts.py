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
from services.kit.identity.service_tokens import ServiceTokens

log = logging.getLogger(__name__)

IDENTITY_SERVICE = "expense.auth.v1.IdentityService"


class AccountDirectory:
    def __init__(
        self, target: str, timeout_seconds: float, tokens: ServiceTokens, resilience: ResilienceSettings
    ) -> None:
        # Fallback: none (the account is the profile's source); UNAVAILABLE, at once while
        # auth's breaker is open.
        self.channel = LazyChannel(
            target, [IDENTITY_SERVICE], timeout_seconds, resilience=resilience, peer="auth"
        )
        # GetAccount is mesh-internal: asked with the user service's own service token.
        self.tokens = tokens

    def _stub(self) -> auth_pb2_grpc.IdentityServiceStub:
        return auth_pb2_grpc.IdentityServiceStub(self.channel.get())

    async def account(self, user_id: str) -> auth_pb2.AuthUser | None:
        """The account, or None when the auth service knows no such user."""
        try:
            request = auth_pb2.GetAccountRequest(user_id=user_id)
            return await self._stub().GetAccount(request, metadata=await self.tokens.metadata())
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return None
            log.warning(
                "account lookup failed", extra={"code": error.code().name, "details": error.details()}
            )
            raise Unavailable("profile temporarily unavailable; try again") from None

    async def close(self) -> None:
        await self.channel.close()
