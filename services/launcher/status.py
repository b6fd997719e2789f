"""`python -m services.launcher health`: the state of every component of a running mesh,
as the settings locate them (a `make up` mesh, or one in compose run from a container of
its network): each service's readiness and liveness (grpc.health.v1) and metrics port, the
gateway, NATS, PostgreSQL and Redis when configured, and where traces go.

States: `up` (serving), `not ready` (the process answers, a dependency of its does not:
the service's own readiness), `down` (nothing answers), `off` (not configured). The command
exits 1 when anything configured is not up, so scripts and `em ops health` can rely on it."""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

import grpc
import psycopg
import redis.asyncio as redis
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.kit.config.settings import WILDCARD_HOSTS, MeshSettings
from services.kit.grpc.server import LIVENESS
from services.launcher.envoy import HEALTHZ
from services.launcher.health import CHANNEL_OPTIONS, SERVING, http_ok, port_open

TIMEOUT_SECONDS = 2.0
UP, NOT_READY, DOWN, OFF = "up", "not ready", "down", "off"


@dataclass(frozen=True)
class Component:
    name: str
    kind: str
    state: str
    detail: str


def _local(settings: MeshSettings) -> str:
    return "127.0.0.1" if settings.host in WILDCARD_HOSTS else settings.host


async def _grpc_status(stub: health_pb2_grpc.HealthStub, service: str) -> int | None:
    try:
        answer = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT_SECONDS)
    except grpc.aio.AioRpcError:
        return None
    return answer.status


async def service_state(settings: MeshSettings, name: str) -> Component:
    address = settings.service_address(name)
    async with grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        ready, alive = await asyncio.gather(_grpc_status(stub, ""), _grpc_status(stub, LIVENESS))
    metrics = ""
    if settings.metrics.enabled:
        host = address.rpartition(":")[0]
        url = f"http://{host}:{settings.metrics_port(name)}/metrics"
        metrics = f", metrics {url}" + ("" if await http_ok(url) else " (not answering)")
    if ready == SERVING:
        return Component(name, "service", UP, f"grpc {address}{metrics}")
    if alive == SERVING:
        return Component(name, "service", NOT_READY, f"grpc {address}: alive, a dependency is down{metrics}")
    return Component(name, "service", DOWN, f"grpc {address}: no answer")


async def gateway_state(settings: MeshSettings) -> Component:
    url = f"http://{_local(settings)}:{settings.gateway_port}{HEALTHZ}"
    state = UP if await http_ok(url) else DOWN
    return Component("envoy", "gateway", state, url)


async def nats_state(settings: MeshSettings) -> Component:
    url = settings.resolved_nats_url
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 4222
    where = f"nats://{host}:{port}" + ("" if settings.nats_url else " (embedded)")
    state = UP if await port_open(host, port) else DOWN
    return Component("nats", "engine", state, where)


async def postgres_state(settings: MeshSettings) -> Component:
    if not settings.database_url:
        return Component("postgres", "engine", OFF, "SQLite, one file per service")
    parts = urlsplit(settings.database_url)
    where = f"{parts.hostname}:{parts.port or 5432}{parts.path}"
    dsn = settings.database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    try:
        async with await psycopg.AsyncConnection.connect(
            dsn, connect_timeout=int(TIMEOUT_SECONDS)
        ) as connection:
            await connection.execute("SELECT 1")
    except psycopg.Error as error:
        return Component("postgres", "engine", DOWN, f"{where}: {type(error).__name__}")
    return Component("postgres", "engine", UP, where)


async def redis_state(settings: MeshSettings) -> Component:
    if not settings.redis_url:
        return Component("redis", "engine", OFF, "no cache")
    parts = urlsplit(settings.redis_url)
    where = f"{parts.hostname}:{parts.port or 6379}"
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=TIMEOUT_SECONDS)
    try:
        await client.ping()
    except (redis.RedisError, OSError) as error:
        return Component("redis", "engine", DOWN, f"{where}: {type(error).__name__}")
    finally:
        await client.aclose()
    return Component("redis", "engine", UP, where)


def tracing_state(settings: MeshSettings) -> Component:
    if not settings.tracing.enabled:
        return Component("traces", "telemetry", OFF, "[tracing] otlp_endpoint not set")
    return Component("traces", "telemetry", UP, f"exported by OTLP to {settings.tracing.otlp_endpoint}")


async def mesh_health(settings: MeshSettings) -> list[Component]:
    checks = [
        nats_state(settings),
        postgres_state(settings),
        redis_state(settings),
        *(service_state(settings, name) for name in settings.mesh.services),
        gateway_state(settings),
    ]
    return [*await asyncio.gather(*checks), tracing_state(settings)]


def healthy(components: list[Component]) -> bool:
    return all(component.state in (UP, OFF) for component in components)


def as_table(components: list[Component]) -> str:
    return "\n".join(
        f"{component.name:<12} {component.kind:<10} {component.state:<10} {component.detail}"
        for component in components
    )


def as_json(components: list[Component]) -> str:
    return json.dumps(
        {"healthy": healthy(components), "components": [asdict(c) for c in components]}, indent=2
    )
