"""The mesh under test: a fresh PostgreSQL database, this machine's Redis and NATS
under a unique event prefix, and `python -m services.launcher up` (what `make up`
runs) with a benchmark config that adds the echo baseline."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nats
import psycopg
import redis
from nats.js.errors import NotFoundError
from sqlalchemy import make_url

from bench.settings import MeshOverrides
from services.kit.config.settings import REPO_ROOT, load_settings
from services.launcher.up import READY_LINE

POSTGRES_ADMIN_DSN = os.environ.get("EM_BENCH_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("EM_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
NATS_URL = os.environ.get("EM_BENCH_NATS_URL", "nats://127.0.0.1:4222")
# A shared 2-core machine under load can take minutes to run every migration and boot.
START_TIMEOUT_SECONDS = 300.0
STOP_TIMEOUT_SECONDS = 30.0
# Settings of the outer environment that must not leak into the benchmark mesh.
OUTER_SETTINGS = ("DATABASE_URL", "REDIS_URL", "NATS_URL", "EM_CONFIG_FILE")


def _warning_key(process: str, text: str) -> str | None:
    if '"level": "info"' in text or '"level": "debug"' in text:
        return None  # the bulk of the log (access logs): skip without parsing
    if text.startswith("{"):
        try:
            entry = json.loads(text)
        except ValueError:
            return None
        if entry.get("level") not in ("warning", "error", "critical"):
            return None
        detail = entry.get("error") or entry.get("exception", "").strip().rpartition("\n")[2]
        return f"{process}: {entry.get('message')}" + (f" ({str(detail)[:120]})" if detail else "")
    for level in ("][warning][", "][error][", "][critical]["):
        if level in text:
            return f"{process}: {text.rpartition('] ')[2][:160]}"
    return None


class MeshFailed(RuntimeError):
    """The mesh did not come up, or a command against it failed."""


def free_ports(count: int) -> list[int]:
    """Distinct free ports: all sockets stay bound until every port is chosen."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


def toml_list(values: Sequence[str]) -> str:
    # JSON strings of printable ASCII are valid TOML basic strings.
    return "[" + ", ".join(json.dumps(value) for value in values) + "]"


@contextlib.contextmanager
def fresh_database(keep: bool) -> Iterator[tuple[str, str]]:
    """(name, SQLAlchemy URL) of a new database em_bench_<random>, dropped afterwards unless keep."""
    name = f"em_bench_{secrets.token_hex(4)}"
    with psycopg.connect(POSTGRES_ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        # The same server as the admin DSN (EM_BENCH_POSTGRES_DSN may name another port).
        url = make_url(POSTGRES_ADMIN_DSN).set(drivername="postgresql+psycopg", database=name)
        yield name, url.render_as_string(hide_password=False)
    finally:
        if not keep:
            with psycopg.connect(POSTGRES_ADMIN_DSN, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class BenchMesh:
    data_dir: Path
    database_url: str
    overrides: MeshOverrides
    sut_cpus: str | None = None
    event_prefix: str = field(default_factory=lambda: f"bench{secrets.token_hex(4)}")
    process: subprocess.Popen[bytes] | None = None
    metrics_env: dict[str, str] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        base = load_settings()
        self.services = [*base.mesh.services, *self.overrides.extra_services]
        self.public_methods = [*base.mesh.public_methods, *self.overrides.extra_public_methods]
        self.gateway_port, self.admin_port, self.nats_port, self.web_port, *ports = free_ports(
            4 + len(self.services)
        )
        self.ports = dict(zip(self.services, ports, strict=True))
        self.config_file = self.data_dir / "bench-mesh.toml"
        # `EM_METRICS__ENABLED=false python -m bench ...` measures the mesh without metrics, and
        # `EM_TRACING__OTLP_ENDPOINT=...` with traces. Read here: adopt_environment() drops every
        # outer EM_* variable before the mesh starts.
        self.metrics_env = {
            k: v for k, v in os.environ.items() if k.startswith(("EM_METRICS__", "EM_TRACING__"))
        }
        self.log_file = self.data_dir / "mesh.log"

    @property
    def database_name(self) -> str:
        return self.database_url.rpartition("/")[2]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def address(self, service: str) -> str:
        return f"127.0.0.1:{self.ports[service]}"

    @property
    def redis_prefix(self) -> str:
        return self.event_prefix

    def write_config(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        bucket = f'{{ requests = {self.overrides.gateway_requests_per_second}, per = "second" }}'
        self.config_file.write_text(
            "# Written by `python -m bench`: the mesh of config/mesh.toml plus the echo baseline.\n"
            "[mesh]\n"
            f"services = {toml_list(self.services)}\n"
            f"public_methods = {toml_list(self.public_methods)}\n\n"
            "[limits.gateway]\n"
            f"per_user = {bucket}\nper_ip = {bucket}\npassword_routes = {bucket}\n\n"
            # The notification fan-out's webhooks go to a receiver of the bench on loopback,
            # uncapped (the default cap is a person's day, not a load test's).
            "[notification.providers.webhook]\nenabled = true\nallow_http_localhost = true\n\n"
            "[notification.daily_caps]\nwebhook = 100000000\n"
        )

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EM_") and k not in OUTER_SETTINGS}
        env.update(
            EM_CONFIG_FILE=str(self.config_file),
            EM_DATA_DIR=str(self.data_dir),
            EM_GATEWAY_PORT=str(self.gateway_port),
            EM_ENVOY_ADMIN_PORT=str(self.admin_port),
            EM_EMBEDDED_NATS_PORT=str(self.nats_port),
            EM_EVENT_PREFIX=self.event_prefix,
            EM_WEB__PORT=str(self.web_port),
            DATABASE_URL=self.database_url,
            REDIS_URL=REDIS_URL,
            NATS_URL=NATS_URL,
            PYTHONUNBUFFERED="1",
            **{f"EM_PORTS__{name.upper()}": str(port) for name, port in self.ports.items()},
            **self.metrics_env,
        )
        return env

    def run_command(self, *args: str, timeout: float = 1800.0) -> str:
        """`python <args>` in the mesh's environment; its output, or MeshFailed."""
        completed = subprocess.run(
            [sys.executable, *args],
            cwd=REPO_ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if completed.returncode != 0:
            raise MeshFailed(f"{' '.join(args)} failed:\n{completed.stdout}\n{completed.stderr}")
        return completed.stdout

    def migrate(self) -> None:
        self.run_command("-m", "services.launcher", "migrate")

    def start(self) -> None:
        """`up` pinned to the system-under-test CPUs; returns once it printed the ready line."""
        pin = ["taskset", "-c", self.sut_cpus] if self.sut_cpus else []
        with self.log_file.open("wb") as log:
            self.process = subprocess.Popen(
                [*pin, sys.executable, "-m", "services.launcher", "up"],
                cwd=REPO_ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise MeshFailed(f"the mesh exited with {self.process.returncode}:\n{self.log_tail()}")
            if READY_LINE.encode() in self.log_file.read_bytes()[-4096:]:
                return
            time.sleep(0.1)
        self.stop()
        raise MeshFailed(f"the mesh was not ready in {START_TIMEOUT_SECONDS:g} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_file.exists():
            return ""
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])

    def log_size(self) -> int:
        """Where the mesh log ends now: warnings(since=...) counts what a step logged."""
        return self.log_file.stat().st_size if self.log_file.exists() else 0

    def warnings(self, limit: int = 40, since: int = 0) -> dict[str, int]:
        """Warnings and errors the mesh logged from byte `since` on, counted by (process, message)."""
        counts: Counter[str] = Counter()
        if not self.log_file.exists():
            return {}
        with self.log_file.open(errors="replace") as log:
            log.seek(since)
            for line in log:
                name, _, text = line.partition(" | ")
                key = _warning_key(name.strip(), text.strip())
                if key:
                    counts[key] += 1
        return dict(counts.most_common(limit))

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def service_pids(self) -> dict[str, int]:
        """Pids of the launcher's children: each `python -m services.<name> serve`, and envoy."""
        assert self.process is not None
        found: dict[str, int] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            parent = int(stat.rpartition(")")[2].split()[1])
            if parent != self.process.pid:
                continue
            words = [word.decode(errors="replace") for word in argv if word]
            for name in self.services:
                if f"services.{name}" in words and "serve" in words:
                    found[name] = int(entry.name)
            if words and Path(words[0]).name == "envoy":
                found["envoy"] = int(entry.name)
        return found

    def forget(self) -> None:
        """What the run left in the shared NATS and Redis: its stream and its keys."""

        async def delete_stream() -> None:
            client = await nats.connect(NATS_URL, connect_timeout=2, max_reconnect_attempts=0)
            with contextlib.suppress(NotFoundError):
                await client.jetstream().delete_stream(f"{self.event_prefix.upper()}_EVENTS")
            await client.close()

        asyncio.run(delete_stream())
        with redis.Redis.from_url(REDIS_URL) as cache:
            keys = list(cache.scan_iter(f"{self.redis_prefix}:*", count=1000))
            for start in range(0, len(keys), 1000):
                cache.delete(*keys[start : start + 1000])
