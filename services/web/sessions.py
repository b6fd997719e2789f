"""The browser's session, per OWASP: the access token lives in the page's memory only,
the refresh token in an HttpOnly, Secure, SameSite=Strict cookie that page scripts
never see. This module trades credentials and the cookie's token with auth over gRPC."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass

import grpc
from google.rpc import error_details_pb2, status_pb2

from expense.auth.v1 import auth_pb2, auth_pb2_grpc


@dataclass(frozen=True)
class Tokens:
    access_token: str
    refresh_token: str
    expires_in: int
    user: dict[str, str]

    def for_page(self) -> dict[str, object]:
        """What the page may hold: everything but the refresh token."""
        return {"access_token": self.access_token, "expires_in": self.expires_in, "user": self.user}


class AuthRefused(Exception):
    """Auth answered with an error the page shows as is (bad password, weak password...),
    with its field violations in the gateway's JSON shape."""

    def __init__(self, status: int, code: int, message: str, details: list[dict[str, object]]) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details


BAD_REQUEST_TYPE = f"type.googleapis.com/{error_details_pb2.BadRequest.DESCRIPTOR.full_name}"


def error_details(error: grpc.aio.AioRpcError) -> list[dict[str, object]]:
    """google.rpc.BadRequest field violations from the status details, as the
    transcoder prints them (preserve_proto_field_names)."""
    for key, value in error.trailing_metadata() or ():
        if key != "grpc-status-details-bin" or not isinstance(value, bytes):
            continue
        status = status_pb2.Status.FromString(value)
        details = []
        for detail in status.details:
            bad_request = error_details_pb2.BadRequest()
            if detail.Unpack(bad_request):
                violations = [
                    {"field": v.field, "description": v.description} for v in bad_request.field_violations
                ]
                details.append({"@type": BAD_REQUEST_TYPE, "field_violations": violations})
        return details
    return []


# gRPC code -> the HTTP status the gateway would answer (google.rpc mapping).
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


class UserAgentChannels:
    """Channels to auth, one per browser user agent. gRPC sets the user-agent header
    itself (metadata cannot), and auth's sessions list shows it: a channel whose
    primary user agent is the browser's makes the session read "Mozilla/5.0 ...".
    Least recently used channels beyond `size` are closed."""

    def __init__(self, target: str, size: int = 32) -> None:
        self._target = target
        self._size = size
        self._channels: OrderedDict[str, grpc.aio.Channel] = OrderedDict()

    def stub(self, user_agent: str) -> auth_pb2_grpc.AuthServiceStub:
        channel = self._channels.pop(user_agent, None)
        if channel is None:
            options = [("grpc.primary_user_agent", user_agent)] if user_agent else []
            channel = grpc.aio.insecure_channel(self._target, options=options)
        self._channels[user_agent] = channel
        while len(self._channels) > self._size:
            _, oldest = self._channels.popitem(last=False)
            # Calls in flight on it finish first (close's grace).
            asyncio.get_running_loop().create_task(oldest.close(grace=5.0))
        return auth_pb2_grpc.AuthServiceStub(channel)

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()


class AuthClient:
    """Auth's public RPCs, called with the browser's address and user agent as the
    gateway would pass them (login throttling and the sessions list use both)."""

    def __init__(self, channels: UserAgentChannels, timeout: float) -> None:
        self._channels = channels
        self._timeout = timeout

    async def sign_up(self, email: str, password: str, display_name: str, client: Client) -> Tokens:
        request = auth_pb2.SignUpRequest(email=email, password=password, display_name=display_name)
        return await self._tokens(self._channels.stub(client.user_agent).SignUp, request, client)

    async def log_in(self, email: str, password: str, client: Client) -> Tokens:
        request = auth_pb2.LogInRequest(email=email, password=password)
        return await self._tokens(self._channels.stub(client.user_agent).LogIn, request, client)

    async def refresh(self, refresh_token: str, client: Client) -> Tokens:
        request = auth_pb2.RefreshTokenRequest(refresh_token=refresh_token)
        return await self._tokens(self._channels.stub(client.user_agent).RefreshToken, request, client)

    async def log_out(self, refresh_token: str, client: Client) -> None:
        stub = self._channels.stub(client.user_agent)
        await self._call(stub.LogOut, auth_pb2.LogOutRequest(refresh_token=refresh_token), client)

    async def _tokens(self, method, request, client: Client) -> Tokens:  # type: ignore[no-untyped-def]
        answer: auth_pb2.AuthTokens = await self._call(method, request, client)
        user = {
            "user_id": answer.user.user_id,
            "email": answer.user.email,
            "display_name": answer.user.display_name,
        }
        return Tokens(answer.access_token, answer.refresh_token, answer.expires_in, user)

    async def _call(self, method, request, client: Client):  # type: ignore[no-untyped-def]
        try:
            return await method(request, timeout=self._timeout, metadata=client.metadata())
        except grpc.aio.AioRpcError as error:
            status = HTTP_STATUS.get(error.code(), 500)
            # Auth's messages are written for users; anything unmapped stays generic.
            message = error.details() or "" if status != 500 else "the sign-in service failed"
            details = error_details(error) if status == 400 else []
            raise AuthRefused(status, error.code().value[0], message, details) from error


@dataclass(frozen=True)
class Client:
    forwarded_for: str
    user_agent: str

    def metadata(self) -> tuple[tuple[str, str], ...]:
        # The user agent travels as the channel's (UserAgentChannels).
        return (("x-forwarded-for", self.forwarded_for),) if self.forwarded_for else ()
