"""A whole mesh booted by the test suite: `python -m services.launcher up` in a
subprocess, with its own data dir, free ports and event prefix, so that several
meshes (and a developer's `make up`) can run side by side.

Fixtures (exported through tests/conftest.py):
- `mesh_sqlite`: session-scoped, embedded defaults (SQLite files, embedded NATS, no Redis);
- `mesh_postgres`: session-scoped, a fresh PostgreSQL database, this machine's Redis and
  a nats-server of the machine's version that requires the mesh's credentials, as compose
  and k8s run it (skipped when one is missing, a failure under EM_REQUIRE_SERVICES=1);
- `mesh`: parametrized over both, for tests that must pass on each backend."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import weakref
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import ClassVar

import pytest
import redis

from services.kit.config.settings import REPO_ROOT, load_settings
from services.kit.events.permissions import ADMIN
from services.launcher.up import READY_LINE
from services.notification.server import WORK_QUEUES
from tests.infra import (
    NATS_URL,
    REDIS_URL,
    SecuredNats,
    delete_stream,
    fresh_postgres_database,
    require,
    unique_prefix,
)

START_TIMEOUT = 90.0
STOP_TIMEOUT = 30.0
# The one browser origin a test mesh's gateway allows (CORS).
ALLOWED_ORIGIN = "https://dashboard.example.test"
# Settings of the outer environment that must not leak into a test mesh.
OUTER_SETTINGS = ("DATABASE_URL", "REDIS_URL", "NATS_URL", "EM_CONFIG_FILE")
# The suite reaches a test mesh from one address (loopback) as hundreds of users: the
# per-client limits of config/mesh.toml would refuse it. Tests of the limits set their own.
SUITE_LIMITS = {
    f"EM_{name}": "1000000"
    for name in (
        "LIMITS__GATEWAY__PER_USER__REQUESTS",
        "LIMITS__GATEWAY__PER_IP__REQUESTS",
        "LIMITS__GATEWAY__PASSWORD_ROUTES__REQUESTS",
        "AUTH__SIGNUPS_PER_IP",
        "AUTH__SIGNUPS_PER_NETWORK",
    )
}


def free_ports(count: int) -> list[int]:
    """Distinct free ports: all sockets stay bound until every port is chosen."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


class Mesh:
    """One `up` process. `start()` returns once it printed `expense-mesh ready`."""

    # Meshes launched and not yet collected: a failed test reports what they printed.
    launched: ClassVar[weakref.WeakSet[Mesh]] = weakref.WeakSet()

    def __init__(
        self, data_dir: Path, services: Sequence[str] | None = None, env: Mapping[str, str] | None = None
    ) -> None:
        self.data_dir = data_dir
        self.services = list(load_settings().mesh.services if services is None else services)
        self.gateway_port, self.admin_port, self.nats_port, self.web_port, *service_ports = free_ports(
            4 + 2 * len(self.services)
        )
        self.ports = dict(zip(self.services, service_ports[: len(self.services)], strict=True))
        # Free ports for the metrics too: gRPC port + [metrics] port_offset may be taken.
        self.metrics_ports = dict(zip(self.services, service_ports[len(self.services) :], strict=True))
        self.event_prefix = unique_prefix("t")
        self.env = self._environment(env or {})
        # The NATS it was put on (on_secured_nats); else NATS_URL's, or its embedded one.
        self.nats: SecuredNats | None = None
        self.output: list[str] = []
        self.process: subprocess.Popen[str] | None = None
        self.ready = False
        # Set on the ready line, or when `up` exits before it.
        self._ready_or_gone = threading.Event()
        self._reader: threading.Thread | None = None

    def _environment(self, extra: Mapping[str, str]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EM_") and k not in OUTER_SETTINGS}
        env.update(
            EM_DATA_DIR=str(self.data_dir),
            EM_GATEWAY_PORT=str(self.gateway_port),
            EM_ENVOY_ADMIN_PORT=str(self.admin_port),
            EM_EMBEDDED_NATS_PORT=str(self.nats_port),
            EM_EVENT_PREFIX=self.event_prefix,
            EM_MESH__SERVICES=json.dumps(self.services),
            EM_CORS__ALLOWED_ORIGINS=json.dumps([ALLOWED_ORIGIN]),
            # Billing's time-based rules every half second, so tests see them at once.
            EM_BILLING__SCHEDULER__INTERVAL_SECONDS="0.5",
            # Metrics gauges (backlog, lag, pools) sampled twice a second, so tests see them soon.
            EM_METRICS__SAMPLE_INTERVAL_SECONDS="0.5",
            # The dashboard only where there is an auth to sign in with.
            EM_WEB__ENABLED=json.dumps("auth" in self.services),
            EM_WEB__PORT=str(self.web_port),
            PYTHONUNBUFFERED="1",
            **SUITE_LIMITS,
            **{f"EM_PORTS__{name.upper()}": str(port) for name, port in self.ports.items()},
            **{f"EM_METRICS__PORTS__{name.upper()}": str(port) for name, port in self.metrics_ports.items()},
        )
        env.update(extra)  # a test's own settings win over these defaults
        return env

    @property
    def base_url(self) -> str:
        """The Envoy gateway (REST/JSON)."""
        return f"http://127.0.0.1:{self.gateway_port}"

    def nats_url_as(self, user: str = ADMIN) -> str:
        """The mesh's NATS as one of its users (a service, or `admin`: every permission).
        Its embedded NATS and a secured one require credentials; a NATS_URL of the test's
        own requires none."""
        if self.nats is not None:
            return self.nats.url_for(user)
        if "NATS_URL" in self.env:
            return self.env["NATS_URL"]
        # Generated by `up` into <data dir>/keys/nats (services/kit/config/secrets.py).
        password = (self.data_dir / "keys" / "nats" / user).read_text().strip()
        return f"nats://{user}:{password}@127.0.0.1:{self.nats_port}"

    def address(self, service: str) -> str:
        """host:port of a service's gRPC server."""
        return f"127.0.0.1:{self.ports[service]}"

    def metrics_url(self, service: str) -> str:
        """A service's Prometheus metrics."""
        return f"http://127.0.0.1:{self.metrics_ports[service]}/metrics"

    @property
    def log(self) -> str:
        return "\n".join(self.output)

    def launch(self) -> None:
        """Starts `up` without waiting for it."""
        self.ready = False
        self._ready_or_gone.clear()
        self.output.clear()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.launcher", "up"],
            cwd=REPO_ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        Mesh.launched.add(self)

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Starts `up` and waits for its ready line; fails the test with its output if not."""
        self.launch()
        assert self.process is not None
        self._ready_or_gone.wait(timeout)
        if not self.ready:
            code = self.stop()
            pytest.fail(f"the mesh was not ready in {timeout:g} s (exit {code}); its output:\n{self.log}")

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line.rstrip("\n"))
            if line.strip() == READY_LINE:
                self.ready = True
                self._ready_or_gone.set()
        self._ready_or_gone.set()

    def wait(self, timeout: float = STOP_TIMEOUT) -> int:
        """Waits for `up` to exit on its own; returns its exit code."""
        assert self.process is not None
        code = self.process.wait(timeout)
        if self._reader is not None:
            self._reader.join(timeout)
        return code

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM (what Ctrl-C does), then the exit code; None if it never ran."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.wait(timeout)


@contextlib.contextmanager
def running_mesh(
    data_dir: Path, services: Sequence[str] | None = None, env: Mapping[str, str] | None = None
) -> Iterator[Mesh]:
    mesh = Mesh(data_dir, services, env)
    mesh.start()
    try:
        yield mesh
    finally:
        mesh.stop()


@contextlib.contextmanager
def on_secured_nats(mesh: Mesh) -> Iterator[SecuredNats]:
    """Runs a NATS for the mesh (before it starts) that requires the mesh's credentials,
    and hands each service its password the way compose and k8s do (EM_NATS_PASSWORDS__*)."""
    nats = SecuredNats(mesh.data_dir / "external-nats", mesh.event_prefix, mesh.services)
    nats.start()
    mesh.nats = nats
    mesh.env.update(NATS_URL=nats.url, **nats.password_env(*mesh.services))
    try:
        yield nats
    finally:
        nats.stop()


def forget_run(mesh: Mesh) -> None:
    """What a run left in this machine's shared NATS and Redis (embedded NATS, a secured
    NATS and the data dir vanish with the temp dir): the event stream and the cache keys."""

    if mesh.env.get("NATS_URL") == NATS_URL:
        asyncio.run(delete_stream(NATS_URL, f"{mesh.event_prefix.upper()}_EVENTS"))
        for queue in WORK_QUEUES:
            asyncio.run(delete_stream(NATS_URL, queue.stream(mesh.event_prefix)))
            asyncio.run(delete_stream(NATS_URL, queue.dead_stream(mesh.event_prefix)))
    with redis.Redis.from_url(REDIS_URL) as cache:
        keys = list(cache.scan_iter(f"{mesh.event_prefix}:*"))
        if keys:
            cache.delete(*keys)


@pytest.fixture(scope="session")
def mesh_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    with running_mesh(tmp_path_factory.mktemp("mesh-sqlite")) as mesh:
        yield mesh


@pytest.fixture(scope="session")
def mesh_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    require("Redis", "127.0.0.1", 6379)
    with fresh_postgres_database() as database_url:
        env = {"DATABASE_URL": database_url, "REDIS_URL": REDIS_URL}
        mesh = Mesh(tmp_path_factory.mktemp("mesh-postgres"), env=env)
        with on_secured_nats(mesh):
            try:
                mesh.start()
                yield mesh
            finally:
                mesh.stop()
                forget_run(mesh)


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def mesh(request: pytest.FixtureRequest) -> Mesh:
    return request.getfixturevalue(f"mesh_{request.param}")
