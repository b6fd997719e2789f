"""The user service under test: real `python -m services.auth` and
`python -m services.user` processes on a real database and real NATS, plus the
test's own view of the user database and event stream.

Auth and user publish under different event prefixes, so the test decides when
auth's `user.registered` event reaches the user service (`deliver`): before or
after the first read of the profile, or racing it."""

from __future__ import annotations

import asyncio
import secrets
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import nats
from grpc_health.v1 import health_pb2, health_pb2_grpc
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.errors import NotFoundError
from sqlalchemy import func, select

from expense.auth.v1 import auth_pb2, auth_pb2_grpc
from expense.events.v1 import events_pb2
from expense.user.v1 import user_pb2, user_pb2_grpc
from services.kit.config.settings import REPO_ROOT
from services.kit.db.engine import Database
from services.kit.events.bus import dead_letter_subject, stream_name, subject_for
from services.user import storage
from services.user.server import SIGNUPS

START_TIMEOUT_SECONDS = 30.0
EVENT_TIMEOUT_SECONDS = 15.0
STOP_TIMEOUT_SECONDS = 15.0
# Strong enough for auth's strength check; each account adds nothing secret to it.
PASSWORD = "violet-harbor-tune-42-user"


@dataclass(frozen=True)
class Account:
    user_id: str
    email: str
    display_name: str
    access_token: str
    refresh_token: str

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.access_token}"),)


class ServiceProcess:
    """`python -m services.<name>`: migrated, then served until stopped."""

    def __init__(self, name: str, env: dict[str, str], port: int, log_path: Path) -> None:
        self.name = name
        self.env = env
        self.port = port
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None

    async def _spawn(self, verb: str) -> asyncio.subprocess.Process:
        with self.log_path.open("ab") as log:
            return await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                f"services.{self.name}",
                verb,
                env=self.env,
                cwd=REPO_ROOT,
                stdout=log,
                stderr=log,
            )

    async def start(self) -> None:
        migrate = await self._spawn("migrate")
        assert await migrate.wait() == 0, self.log_tail()
        self.process = await self._spawn("serve")
        await self._wait_serving()

    async def _wait_serving(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        async with grpc.aio.insecure_channel(f"127.0.0.1:{self.port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                assert self.process is not None and self.process.returncode is None, self.log_tail()
                try:
                    answer = await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if answer.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.aio.AioRpcError:
                    pass
                await asyncio.sleep(0.1)
        raise TimeoutError(f"{self.name} not serving after {START_TIMEOUT_SECONDS}s\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), STOP_TIMEOUT_SECONDS)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        self.process = None


class AuthUnderTest:
    """The real auth service: signups, and the events it publishes."""

    def __init__(self, process: ServiceProcess, nats_url: str, prefix: str) -> None:
        self.process = process
        self.nats_url = nats_url
        self.prefix = prefix
        self.channel: grpc.aio.Channel | None = None
        self.nc: NatsClient | None = None
        self.signup_events: dict[str, events_pb2.EventEnvelope] = {}

    async def open(self) -> None:
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{self.process.port}")
        self.nc = await nats.connect(self.nats_url)
        await self.nc.subscribe(subject_for(self.prefix, "user.registered"), cb=self._on_signup_event)

    async def _on_signup_event(self, message: Msg) -> None:
        envelope = events_pb2.EventEnvelope.FromString(message.data)
        self.signup_events[envelope.user_id] = envelope

    async def close(self) -> None:
        if self.channel is not None:
            await self.channel.close()
        if self.nc is not None:
            await self.nc.drain()

    @property
    def stub(self) -> auth_pb2_grpc.AuthServiceStub:
        assert self.channel is not None
        return auth_pb2_grpc.AuthServiceStub(self.channel)

    async def signup(self, display_name: str) -> Account:
        email = f"user.{secrets.token_hex(6)}@example.org"
        request = auth_pb2.SignUpRequest(email=email, password=PASSWORD, display_name=display_name)
        # A client address of its own, so signup throttling never joins in.
        client = f"198.51.{secrets.randbelow(256)}.{secrets.randbelow(254) + 1}"
        tokens = await self.stub.SignUp(request, metadata=(("x-envoy-external-address", client),), timeout=10)
        user = tokens.user
        return Account(user.user_id, user.email, user.display_name, tokens.access_token, tokens.refresh_token)

    async def signup_event(self, account: Account) -> events_pb2.EventEnvelope:
        """The `user.registered` event auth published for the account."""
        await wait_until(self._seen(account.user_id), f"user.registered for {account.user_id}")
        return self.signup_events[account.user_id]

    def _seen(self, user_id: str) -> Callable[[], Awaitable[bool]]:
        async def seen() -> bool:
            return user_id in self.signup_events

        return seen

    async def log_out_everywhere(self, account: Account) -> None:
        request = auth_pb2.LogOutRequest(refresh_token=account.refresh_token, all_sessions=True)
        await self.stub.LogOut(request, timeout=5)


class UserServiceUnderTest:
    """Client, database view and event stream of one running user service."""

    def __init__(self, process: ServiceProcess, database_url: str, nats_url: str, prefix: str) -> None:
        self.process = process
        self.db = Database(database_url, schema="user", pool_size=2)
        self.nats_url = nats_url
        self.prefix = prefix
        self.channel: grpc.aio.Channel | None = None
        self.nc: NatsClient | None = None

    async def open(self) -> None:
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{self.process.port}")
        self.nc = await nats.connect(self.nats_url)

    async def close(self) -> None:
        if self.channel is not None:
            await self.channel.close()
        if self.nc is not None:
            await self.nc.drain()
        await self.db.dispose()

    @property
    def stub(self) -> user_pb2_grpc.UserServiceStub:
        assert self.channel is not None
        return user_pb2_grpc.UserServiceStub(self.channel)

    async def get(self, account: Account) -> user_pb2.Profile:
        return await self.stub.GetProfile(user_pb2.GetProfileRequest(), metadata=account.metadata, timeout=5)

    async def update(self, account: Account, mask: str, **fields: object) -> user_pb2.Profile:
        request = user_pb2.UpdateProfileRequest(profile=user_pb2.Profile(**fields), update_mask=mask)
        return await self.stub.UpdateProfile(request, metadata=account.metadata, timeout=5)

    async def deliver(self, envelope: events_pb2.EventEnvelope) -> None:
        """Publishes an event to the user service's stream, as a producer's relay would."""
        assert self.nc is not None
        await self.nc.jetstream().publish(
            subject_for(self.prefix, envelope.type),
            envelope.SerializeToString(),
            headers={"Nats-Msg-Id": envelope.event_id},
        )

    async def profile_rows(self, user_id: str) -> int:
        async with self.db.transaction() as session:
            query = (
                select(func.count())
                .select_from(storage.profiles)
                .where(storage.profiles.c.user_id == user_id)
            )
            return int((await session.execute(query)).scalar_one())

    async def event_applied(self, event_id: str) -> bool:
        async with self.db.transaction() as session:
            query = select(storage.inbox.c.event_id).where(storage.inbox.c.event_id == event_id)
            return (await session.execute(query)).first() is not None

    async def wait_applied(self, event_id: str) -> None:
        await wait_until(lambda: self.event_applied(event_id), f"event {event_id} applied")

    async def last_dead_letter(self) -> tuple[str, str] | None:
        """(event id, reason) of the signup consumer's latest dead letter."""
        assert self.nc is not None
        try:
            message = await self.nc.jetstream().get_last_msg(
                stream_name(self.prefix), dead_letter_subject(self.prefix, SIGNUPS.consumer)
            )
        except NotFoundError:
            return None
        envelope = events_pb2.EventEnvelope.FromString(message.data or b"")
        return envelope.event_id, (message.headers or {})["Dead-Letter-Reason"]

    async def wait_dead_lettered(self, event_id: str) -> str:
        """The reason the signup consumer gave for dead-lettering the event."""

        async def dead_lettered() -> bool:
            letter = await self.last_dead_letter()
            return letter is not None and letter[0] == event_id

        await wait_until(dead_lettered, f"event {event_id} dead-lettered")
        letter = await self.last_dead_letter()
        assert letter is not None
        return letter[1]

    async def last_event(self, event_type: str) -> events_pb2.EventEnvelope | None:
        assert self.nc is not None
        try:
            message = await self.nc.jetstream().get_last_msg(
                stream_name(self.prefix), subject_for(self.prefix, event_type)
            )
        except NotFoundError:
            return None
        return events_pb2.EventEnvelope.FromString(message.data or b"")


async def wait_until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + EVENT_TIMEOUT_SECONDS
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
