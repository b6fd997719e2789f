"""Logout and password change reach the other services at once, though they cache
session checks for session_cache_seconds_with_push (30 s) while they hear auth:
a real mesh (`up` with auth and user, the launcher's own NATS), driven over gRPC."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass

import grpc
import pytest

from expense.auth.v1 import auth_pb2, auth_pb2_grpc
from expense.user.v1 import user_pb2, user_pb2_grpc
from tests.mesh import Mesh, running_mesh

PASSWORD = "violet-harbor-tune-42-push"
# Far below the 30 s a missed revocation would take; generous for a busy machine.
PROPAGATION_SECONDS = 2.0
CALL_TIMEOUT = 10.0


@dataclass(frozen=True)
class Login:
    email: str
    tokens: auth_pb2.AuthTokens

    @property
    def bearer(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.tokens.access_token}"),)


class Clients:
    def __init__(self, mesh: Mesh) -> None:
        self.channels = [grpc.aio.insecure_channel(mesh.address(name)) for name in ("auth", "user")]
        self.auth = auth_pb2_grpc.AuthServiceStub(self.channels[0])
        self.user = user_pb2_grpc.UserServiceStub(self.channels[1])
        # A client address of its own, so login throttling never joins in.
        self.client = (("x-envoy-external-address", f"198.51.{secrets.randbelow(256)}.7"),)

    async def sign_up(self) -> Login:
        email = f"push.{secrets.token_hex(6)}@example.org"
        request = auth_pb2.SignUpRequest(email=email, password=PASSWORD, display_name="Push")
        return Login(email, await self.auth.SignUp(request, metadata=self.client, timeout=CALL_TIMEOUT))

    async def log_in(self, email: str) -> Login:
        request = auth_pb2.LogInRequest(email=email, password=PASSWORD)
        return Login(email, await self.auth.LogIn(request, metadata=self.client, timeout=CALL_TIMEOUT))

    async def profile(self, login: Login) -> None:
        await self.user.GetProfile(user_pb2.GetProfileRequest(), metadata=login.bearer, timeout=CALL_TIMEOUT)

    async def sessions(self, login: Login) -> None:
        await self.auth.ListSessions(
            auth_pb2.ListSessionsRequest(), metadata=login.bearer, timeout=CALL_TIMEOUT
        )

    async def in_use(self, login: Login) -> None:
        """Calls past the short (0.5 s) lifetime, so the user service caches the session
        for the long one whenever it hears auth."""
        await self.profile(login)
        await asyncio.sleep(1.0)
        await self.profile(login)

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()


@pytest.fixture(scope="module")
def push_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    with running_mesh(tmp_path_factory.mktemp("session-push"), ["auth", "user"]) as mesh:
        yield mesh


@pytest.fixture
async def clients(push_mesh: Mesh) -> AsyncIterator[Clients]:
    clients = Clients(push_mesh)
    yield clients
    await clients.close()


async def refused_within(call: Callable[[], Awaitable[None]], seconds: float = PROPAGATION_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            await call()
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.UNAUTHENTICATED, error
            return
        await asyncio.sleep(0.02)
    pytest.fail(f"the old access token was still accepted after {seconds} s")


async def test_logout_reaches_another_service_at_once(clients: Clients) -> None:
    login = await clients.sign_up()
    await clients.in_use(login)
    await clients.sessions(login)
    await clients.auth.LogOut(
        auth_pb2.LogOutRequest(refresh_token=login.tokens.refresh_token), timeout=CALL_TIMEOUT
    )
    await refused_within(lambda: clients.profile(login))
    await refused_within(lambda: clients.sessions(login))


async def test_password_change_reaches_another_service_at_once(clients: Clients) -> None:
    current = await clients.sign_up()
    other = await clients.log_in(current.email)
    await clients.in_use(other)
    await clients.auth.ChangePassword(
        auth_pb2.ChangePasswordRequest(current_password=PASSWORD, new_password=f"{PASSWORD}-amber-drift"),
        metadata=current.bearer,
        timeout=CALL_TIMEOUT,
    )
    await refused_within(lambda: clients.profile(other))
    await clients.profile(current)  # the session that changed the password lives on
