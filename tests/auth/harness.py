"""The auth service under test, in process: the real wiring (`build_app`) on a
grpc.aio server with an ephemeral port, on a real database (SQLite file or a
fresh PostgreSQL database), real NATS (own event prefix) and optionally real
Redis (own key prefix); plus clients and helpers for the tests."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import nats
from nats.js.errors import NotFoundError
from redis.asyncio import Redis

from expense.auth.v1 import auth_pb2, auth_pb2_grpc
from services.auth.server import build_app
from services.auth.settings import AuthMeshSettings
from services.kit.db import migrations
from services.kit.events.bus import stream_name
from services.kit.grpc.server import ServiceApp
from services.kit.identity.auth_client import AuthServiceClient
from services.kit.identity.service_tokens import ServiceTokens, service_credential
from services.kit.identity.tokens import TokenVerifier
from services.kit.tasks import cancel_and_wait
from tests.infra import NATS_URL, fresh_postgres_database, require, unique_prefix

READY_TIMEOUT_SECONDS = 20.0
# A password zxcvbn scores 4; tests derive others from it so no two accounts share one.
STRONG_PASSWORD = "violet-harbor-tune-42"


def random_ip() -> str:
    """A client address of the TEST-NET-2 range, unique enough to isolate throttling."""
    return f"198.51.{secrets.randbelow(256)}.{secrets.randbelow(254) + 1}"


def random_email(stem: str = "user") -> str:
    return f"{stem}.{secrets.token_hex(5)}@example.org"


@dataclass
class Login:
    """What a client holds after signup/login/refresh."""

    email: str
    password: str
    ip: str
    tokens: auth_pb2.AuthTokens

    @property
    def bearer(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.tokens.access_token}"),)

    @property
    def session_id(self) -> str:
        return self.tokens.session_id

    @property
    def user_id(self) -> str:
        return self.tokens.user.user_id


class AuthUnderTest:
    def __init__(self, settings: AuthMeshSettings) -> None:
        self.settings = settings
        self.app: ServiceApp | None = None
        self.server: grpc.aio.Server | None = None
        self.port = 0
        self.tasks: list[asyncio.Task[None]] = []
        self.channel: grpc.aio.Channel | None = None
        # The user service's identity (it may call every IdentityService method).
        self.tokens = ServiceTokens("user", "", "", 5.0)
        self.remote = AuthServiceClient("", 5.0, self.tokens)

    async def start(self) -> None:
        await asyncio.to_thread(migrations.upgrade, "auth", self.settings)
        self.app = build_app(self.settings)
        self.server, _ = await self.app.build_server()
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        for hook in self.app.on_start:
            await hook()
        await self.server.start()
        self.tasks = [asyncio.create_task(job()) for job in self.app.background]
        await self._wait_ready()
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{self.port}")
        address = f"127.0.0.1:{self.port}"
        self.tokens = ServiceTokens("user", service_credential(self.settings, "user"), address, 5.0)
        self.remote = AuthServiceClient(address, 5.0, self.tokens)

    async def _wait_ready(self) -> None:
        assert self.app is not None
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while True:
            results = {name: await _safe(check) for name, check in self.app.readiness.items()}
            if all(results.values()):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"auth not ready: {results}")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self.channel is not None:
            await self.channel.close()
        await self.remote.close()
        await self.tokens.close()
        if self.server is not None:
            await self.server.stop(None)
        await cancel_and_wait(self.tasks)
        if self.app is not None:
            for hook in self.app.on_stop:
                await hook()

    # --- clients ------------------------------------------------------------------

    @property
    def auth(self) -> auth_pb2_grpc.AuthServiceStub:
        assert self.channel is not None
        return auth_pb2_grpc.AuthServiceStub(self.channel)

    @property
    def identity(self) -> auth_pb2_grpc.IdentityServiceStub:
        assert self.channel is not None
        return auth_pb2_grpc.IdentityServiceStub(self.channel)

    async def internal(self) -> tuple[tuple[str, str], ...]:
        """What a call to an IdentityService method carries: the user service's token."""
        return await self.tokens.metadata()

    def verifier(self) -> TokenVerifier:
        """What every other service uses: JWKS and session checks over gRPC."""
        return TokenVerifier(self.settings.jwt, self.remote.jwks, self.remote.session_active)

    # --- flows ---------------------------------------------------------------------

    async def sign_up(
        self, email: str | None = None, password: str | None = None, display_name: str = "Test User"
    ) -> Login:
        email = email or random_email()
        password = password or f"{STRONG_PASSWORD}-{secrets.token_hex(2)}"
        ip = random_ip()
        tokens = await self.auth.SignUp(
            auth_pb2.SignUpRequest(email=email, password=password, display_name=display_name),
            metadata=from_ip(ip),
        )
        return Login(email, password, ip, tokens)

    async def log_in(self, email: str, password: str, ip: str | None = None) -> Login:
        ip = ip or random_ip()
        tokens = await self.auth.LogIn(
            auth_pb2.LogInRequest(email=email, password=password), metadata=from_ip(ip)
        )
        return Login(email, password, ip, tokens)

    async def refresh(self, refresh_token: str) -> auth_pb2.AuthTokens:
        return await self.auth.RefreshToken(auth_pb2.RefreshTokenRequest(refresh_token=refresh_token))

    async def session_active(self, login: Login) -> bool:
        answer = await self.identity.CheckSession(
            auth_pb2.CheckSessionRequest(session_id=login.session_id, user_id=login.user_id),
            metadata=await self.internal(),
        )
        return answer.active


def from_ip(ip: str) -> tuple[tuple[str, str], ...]:
    """What Envoy (use_remote_address: true) tells the service about the client."""
    return (("x-envoy-external-address", ip),)


async def _safe(check) -> bool:  # type: ignore[no-untyped-def]
    try:
        return bool(await check())
    except Exception:
        return False


@contextlib.asynccontextmanager
async def running_auth(backend: str, data_dir: Path, **overrides: object) -> AsyncIterator[AuthUnderTest]:
    """backend: "sqlite" or "postgresql"; Redis via overrides redis_url=REDIS_URL."""
    require("NATS", "127.0.0.1", 4222)
    if overrides.get("redis_url"):
        require("Redis", "127.0.0.1", 6379)
    prefix = unique_prefix("a")
    with contextlib.ExitStack() as stack:
        database_url = stack.enter_context(fresh_postgres_database()) if backend == "postgresql" else None
        settings = AuthMeshSettings(
            data_dir=data_dir,
            database_url=database_url,
            nats_url=NATS_URL,
            event_prefix=prefix,
            **{"redis_url": None, **overrides},
        )
        service = AuthUnderTest(settings)
        try:
            await service.start()
            yield service
        finally:
            await service.stop()
            await delete_stream(prefix)
            if settings.redis_url:
                await delete_redis_keys(settings.redis_url, f"{prefix}:*")


async def delete_stream(prefix: str) -> None:
    nc = await nats.connect(NATS_URL)
    try:
        await nc.jetstream().delete_stream(stream_name(prefix))
    except NotFoundError:
        pass
    finally:
        await nc.drain()


async def delete_redis_keys(url: str, pattern: str) -> None:
    redis = Redis.from_url(url)
    try:
        keys = [key async for key in redis.scan_iter(match=pattern)]
        if keys:
            await redis.delete(*keys)
    finally:
        await redis.aclose()
