"""`em ops health`: every part of the mesh in one table, each probed the cheapest real
way (gRPC health, the gateway's /healthz, NATS's INFO line, SELECT 1, PING)."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.kit.config.settings import WILDCARD_HOSTS, MeshSettings

PROBE_SECONDS = 2.0


@dataclass(frozen=True)
class Check:
    component: str
    kind: str
    address: str
    healthy: bool
    detail: str
    milliseconds: float

    def as_dict(self) -> dict[str, object]:
        return {**self.__dict__, "milliseconds": round(self.milliseconds, 1)}


def _timed(component: str, kind: str, address: str, probe: Callable[[], str]) -> Check:
    started = time.perf_counter()
    try:
        detail, healthy = probe(), True
    except Exception as error:  # a probe's failure is its row, whatever it was
        detail, healthy = (str(error).splitlines() or [type(error).__name__])[0][:120], False
    return Check(component, kind, address, healthy, detail, (time.perf_counter() - started) * 1000)


def _grpc_health(address: str) -> str:
    async def check() -> str:
        async with grpc.aio.insecure_channel(address, options=[("grpc.enable_http_proxy", 0)]) as channel:
            answer = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=PROBE_SECONDS
            )
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
        if answer.status != health_pb2.HealthCheckResponse.SERVING:
            raise RuntimeError(status)
        return status

    try:
        return asyncio.run(check())
    except grpc.aio.AioRpcError as error:
        raise RuntimeError(error.code().name) from None


def _http_ok(url: str) -> str:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=PROBE_SECONDS) as response:
            return f"HTTP {response.status}"
    except urllib.error.HTTPError as error:
        raise RuntimeError(f"HTTP {error.code}") from None


def _nats_info(url: str) -> str:
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 4222), PROBE_SECONDS) as sock:
        sock.settimeout(PROBE_SECONDS)
        greeting = sock.recv(4096).decode(errors="replace")
    if not greeting.startswith("INFO "):
        raise RuntimeError("not a NATS server")
    return "INFO" + (" +JetStream" if '"jetstream":true' in greeting.replace(" ", "") else "")


def _database(url: str) -> str:
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[1]
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=PROBE_SECONDS)
        try:
            connection.execute("SELECT 1")
        finally:
            connection.close()
        return "SELECT 1"
    import psycopg

    plain = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, connect_timeout=int(PROBE_SECONDS)) as connection:
        connection.execute("SELECT 1")
    return "SELECT 1"


def _redis(url: str) -> str:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=PROBE_SECONDS, socket_connect_timeout=PROBE_SECONDS)
    try:
        client.ping()
    finally:
        client.close()
    return "PONG"


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@")


def mesh_health(settings: MeshSettings) -> list[Check]:
    host = "127.0.0.1" if settings.host in WILDCARD_HOSTS else settings.host
    gateway = f"http://{host}:{settings.gateway_port}"
    checks = [
        _timed(
            name,
            "service",
            settings.service_address(name),
            lambda n=name: _grpc_health(settings.service_address(n)),
        )
        for name in settings.mesh.services
    ]
    checks.append(_timed("gateway", "envoy", gateway, lambda: _http_ok(f"{gateway}/healthz")))
    if settings.web.enabled:
        checks.append(
            _timed("web", "dashboard", settings.web_url(), lambda: _http_ok(f"{settings.web_url()}/healthz"))
        )
    nats = settings.resolved_nats_url
    checks.append(_timed("nats", "bus", _redacted(nats), lambda: _nats_info(nats)))
    databases: dict[str, list[str]] = {}
    for name in settings.mesh.services:
        databases.setdefault(settings.database_url_for(name), []).append(name)
    for url, owners in databases.items():
        label = "database" if len(databases) == 1 else f"db:{owners[0]}"
        address = Path(url.split(":///", 1)[1]).name if url.startswith("sqlite") else _redacted(url)
        checks.append(_timed(label, "database", address, lambda u=url: _database(u)))
    if settings.redis_url:
        redis_url = settings.redis_url
        checks.append(_timed("redis", "cache", _redacted(redis_url), lambda: _redis(redis_url)))
    else:
        checks.append(Check("redis", "cache", "-", True, "not configured", 0.0))
    return checks
