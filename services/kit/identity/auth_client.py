"""JWKS and session checks asked from the auth service, for every other service's token verifier."""

from __future__ import annotations

from typing import Any

from expense.auth.v1 import auth_pb2, auth_pb2_grpc
from services.kit.config.settings import ResilienceSettings
from services.kit.grpc.clients import LazyChannel
from services.kit.identity.service_tokens import ServiceTokens

AUTH_SERVICES = ["expense.auth.v1.AuthService", "expense.auth.v1.IdentityService"]


class AuthServiceClient:
    """JWKS and session checks from the auth service, for every other service.
    CheckSession is mesh-internal: asked with this service's own service token."""

    def __init__(
        self,
        target: str,
        timeout_seconds: float,
        tokens: ServiceTokens,
        resilience: ResilienceSettings | None = None,
    ) -> None:
        # With resilience: the "auth" breaker and retry budget (fallbacks: TokenVerifier).
        self.channel = LazyChannel(target, AUTH_SERVICES, timeout_seconds, resilience=resilience, peer="auth")
        self.tokens = tokens

    def _stubs(self) -> tuple[auth_pb2_grpc.AuthServiceStub, auth_pb2_grpc.IdentityServiceStub]:
        channel = self.channel.get()
        return auth_pb2_grpc.AuthServiceStub(channel), auth_pb2_grpc.IdentityServiceStub(channel)

    async def jwks(self) -> dict[str, Any]:
        response = await self._stubs()[0].GetJwks(auth_pb2.GetJwksRequest())
        return {"keys": [{f.name: v for f, v in key.ListFields()} for key in response.keys]}

    async def session_active(self, session_id: str, user_id: str) -> bool:
        request = auth_pb2.CheckSessionRequest(session_id=session_id, user_id=user_id)
        metadata = await self.tokens.metadata()
        return (await self._stubs()[1].CheckSession(request, metadata=metadata)).active

    async def close(self) -> None:
        await self.channel.close()
