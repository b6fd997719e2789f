"""grpc.aio server bootstrap shared by every service: interceptors, health,
reflection, Prometheus metrics on their own port, background tasks (outbox relay,
consumers, metrics sampling) and a clean shutdown on SIGTERM/SIGINT.

Health has two meanings. Readiness: the server as a whole ("") and each of its
gRPC services are SERVING while every dependency answers, re-checked all along, so
a gateway or k8s stops routing to it while one is down and resumes by itself.
Liveness: the `liveness` name is SERVING as long as the process's event loop
answers, whatever its dependencies do, so k8s restarts only a stuck process."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.kit.config.settings import MeshSettings
from services.kit.grpc.interceptors import AccessLog, KitInterceptor
from services.kit.identity.access import MethodAccess
from services.kit.identity.tokens import TokenVerifier
from services.kit.metrics import MetricsServer
from services.kit.tasks import cancel_and_wait

log = logging.getLogger(__name__)

ReadinessCheck = Callable[[], Awaitable[bool]]
LIVENESS = "liveness"
HEALTH_INTERVAL_HEALTHY = 2.0
HEALTH_INTERVAL_STARTING = 0.2
SHUTDOWN_GRACE_SECONDS = 5.0
GC_PAUSE_LOGGED_MS = 10.0


@dataclass
class ServiceApp:
    """What a service's wiring assembles; `run()` serves until a stop signal."""

    name: str
    settings: MeshSettings
    verifier: TokenVerifier
    # (add_XServicer_to_server, servicer, full service name) per gRPC service.
    servicers: list[tuple[Callable[[Any, grpc.aio.Server], None], object, str]]
    readiness: dict[str, ReadinessCheck] = field(default_factory=dict)
    background: list[Callable[[], Coroutine[Any, Any, None]]] = field(default_factory=list)
    on_start: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    on_stop: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    port: int | None = None
    # None: settings.metrics_port(name); 0: any free port (tests).
    metrics_port: int | None = None

    async def build_server(self) -> tuple[grpc.aio.Server, health.HealthServicer]:
        """The server with every servicer, readiness NOT_SERVING until _watch_health says
        otherwise (grpc's health servicer starts out SERVING), liveness SERVING."""
        limits = self.settings.limits
        server = grpc.aio.server(
            interceptors=[
                KitInterceptor(
                    self.verifier,
                    MethodAccess.from_layout(self.settings.mesh),
                    limits.default_deadline_seconds,
                    AccessLog(self.settings.access_log, self.settings.slow_call_ms),
                    self.settings.metrics.enabled,
                )
            ],
            options=[
                # One process per service, deliberately: on the 2-core target Envoy, PostgreSQL
                # and the other services already use every core (docs/performance.md), so a second
                # process adds contention, not capacity; replicas (k8s) scale out. Off, a port
                # already taken fails the start instead of two meshes silently sharing it.
                ("grpc.so_reuseport", 0),
                ("grpc.max_receive_message_length", limits.max_message_bytes),
                ("grpc.max_send_message_length", 4 * limits.max_message_bytes),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
                # Above gRPC's 8 KiB default: the gateway forwards a request's headers and its
                # URL (x-envoy-original-path) up to its own limits (limits.gateway_max_*).
                ("grpc.max_metadata_size", limits.max_metadata_bytes),
                ("grpc.absolute_max_metadata_size", limits.max_metadata_bytes),
            ],
        )
        for add_to_server, servicer, _ in self.servicers:
            add_to_server(servicer, server)
        health_servicer = health.aio.HealthServicer()
        await self._report_health(health_servicer, serving=False)
        await health_servicer.set(LIVENESS, health_pb2.HealthCheckResponse.SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        names = [full_name for _, _, full_name in self.servicers]
        reflection.enable_server_reflection((*names, reflection.SERVICE_NAME, health.SERVICE_NAME), server)
        return server, health_servicer

    async def _report_health(self, health_servicer: health.HealthServicer, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ["", *(full_name for _, _, full_name in self.servicers)]:
            await health_servicer.set(name, status)

    async def _watch_health(self, health_servicer: health.HealthServicer) -> None:
        serving = False
        while True:
            results = {name: await _safe(check) for name, check in self.readiness.items()}
            now_serving = all(results.values())
            if now_serving != serving:
                await self._report_health(health_servicer, now_serving)
                log.info("health changed", extra={"serving": now_serving, "checks": results})
                serving = now_serving
            await asyncio.sleep(HEALTH_INTERVAL_HEALTHY if serving else HEALTH_INTERVAL_STARTING)

    async def run(self) -> None:
        server, health_servicer = await self.build_server()
        port = self.port if self.port is not None else self.settings.service_port(self.name)
        bound = server.add_insecure_port(f"{self.settings.host}:{port}")
        self.port = bound
        for hook in self.on_start:
            await hook()
        await server.start()
        metrics_server = self._serve_metrics()
        freeze_startup_objects()
        stop = _stop_on_signals()
        tasks = [asyncio.create_task(job(), name=job.__qualname__) for job in self.background]
        tasks.append(asyncio.create_task(self._watch_health(health_servicer), name="health"))
        failed: list[str] = []
        for task in tasks:
            task.add_done_callback(lambda done: _on_background_exit(done, stop, failed))
        log.info("serving", extra={"service": self.name, "port": bound})
        await stop.wait()
        log.info("stopping", extra={"service": self.name})
        await health_servicer.enter_graceful_shutdown()
        await server.stop(SHUTDOWN_GRACE_SECONDS)
        await cancel_and_wait(tasks)
        if metrics_server is not None:
            metrics_server.stop()
        for hook in self.on_stop:
            await hook()
        if failed:
            raise SystemExit(f"{self.name}: background task {failed[0]} failed")

    def _serve_metrics(self) -> MetricsServer | None:
        """GET /metrics on the service's metrics port ([metrics] in config/mesh.toml). A port
        already taken is logged, not fatal: the service's calls matter more than its metrics."""
        if not self.settings.metrics.enabled:
            return None
        port = self.metrics_port if self.metrics_port is not None else self.settings.metrics_port(self.name)
        metrics_server = MetricsServer(self.settings.host, port)
        try:
            metrics_server.start()
        except (OSError, OverflowError) as error:  # taken, or beyond 65535 (port + offset)
            log.error("metrics port unavailable", extra={"port": port, "error": repr(error)})
            return None
        self.metrics_port = metrics_server.port
        log.info("metrics", extra={"service": self.name, "port": metrics_server.port, "path": "/metrics"})
        return metrics_server


def _on_background_exit(task: asyncio.Task[None], stop: asyncio.Event, failed: list[str]) -> None:
    """Background jobs run forever; one that ends on its own is a bug, so the
    service stops (and its supervisor notices) instead of limping on."""
    if task.cancelled() or stop.is_set():
        return
    log.critical("background task ended", extra={"task": task.get_name(), "error": repr(task.exception())})
    failed.append(task.get_name())
    stop.set()


async def _safe(check: ReadinessCheck) -> bool:
    try:
        return bool(await check())
    except Exception:
        return False


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    return stop


def freeze_startup_objects() -> None:
    """Moves what startup allocated (modules, protobuf descriptors, SQLAlchemy metadata:
    ~110,000 objects) out of the cyclic collector's sight. Each full collection walked
    all of it, ~50 ms with the loop stopped: that pause was the p99 of every endpoint.
    Collections still pausing the loop for long are logged."""
    gc.collect()
    gc.freeze()
    if GC_PAUSE_LOG not in gc.callbacks:
        gc.callbacks.append(GC_PAUSE_LOG)


class GcPauseLog:
    """A gc callback timing each collection; the loop is stopped while one runs."""

    def __init__(self) -> None:
        self.started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
            return
        pause_ms = (time.perf_counter() - self.started) * 1000
        if pause_ms > GC_PAUSE_LOGGED_MS:
            log.warning(
                "garbage collection paused the loop",
                extra={"ms": round(pause_ms, 1), "generation": info["generation"]},
            )


GC_PAUSE_LOG = GcPauseLog()
