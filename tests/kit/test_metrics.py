"""The kit's metrics module: a method's calls counted by code and timed, a breaker's
transitions and state read at scrape time from a real breaker, the sampler outliving a
failing sample, the metrics server answering GET /metrics, the metrics ports, and the
Grafana dashboard asking only for metrics that exist."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import urllib.request

import grpc
from prometheus_client import REGISTRY

from services.kit.config.settings import REPO_ROOT, BreakerSettings, MeshSettings, MetricsSettings
from services.kit.grpc.breakers import breaker_for
from services.kit.grpc.interceptors import CallMetrics
from services.kit.metrics import MetricsServer, Sampler


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_calls_are_counted_by_code_and_timed() -> None:
    method = f"Probe{secrets.token_hex(4)}"
    calls = CallMetrics(f"/test.v1.ProbeService/{method}", "unary")
    for code, seconds in (("OK", 0.002), ("OK", 0.2), ("NOT_FOUND", 0.02)):
        calls.record(code, seconds)
    labels = {"grpc_service": "test.v1.ProbeService", "grpc_method": method, "grpc_type": "unary"}
    assert sample("em_grpc_server_handled_total", grpc_code="OK", **labels) == 2
    assert sample("em_grpc_server_handled_total", grpc_code="NOT_FOUND", **labels) == 1
    assert sample("em_grpc_server_handling_seconds_count", **labels) == 3
    assert sample("em_grpc_server_handling_seconds_bucket", le="0.005", **labels) == 1
    assert sample("em_grpc_server_handling_seconds_bucket", le="0.025", **labels) == 2


async def test_a_breaker_opening_shows_in_the_scrape() -> None:
    peer = f"peer{secrets.token_hex(4)}"
    breaker = breaker_for(peer, "127.0.0.1:1", BreakerSettings(failure_threshold=2, open_seconds=60))
    assert sample("em_circuit_breaker_open", peer=peer) == 0

    async def gone() -> None:
        raise grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata())

    for _ in range(3):
        with contextlib.suppress(grpc.aio.AioRpcError):
            await breaker.call(gone)
    assert sample("em_circuit_breaker_transitions_total", peer=peer, state="opened") == 1
    assert sample("em_circuit_breaker_open", peer=peer) == 1


async def test_the_sampler_outlives_a_failing_sample() -> None:
    sampler = Sampler(0.01)
    seen: list[int] = []

    async def broken() -> None:
        raise RuntimeError("the database is down")

    async def counting() -> None:
        seen.append(1)

    sampler.add(broken)
    sampler.add(counting)
    task = asyncio.create_task(sampler.run())
    await asyncio.sleep(0.1)
    task.cancel()
    assert len(seen) >= 3


def test_the_metrics_server_answers_and_stops() -> None:
    server = MetricsServer("127.0.0.1", 0)
    server.start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as response:
            body = response.read().decode()
        assert "# TYPE em_grpc_server_handled_total counter" in body
    finally:
        server.stop()


def test_a_metrics_port_is_explicit_or_the_grpc_port_plus_the_offset() -> None:
    settings = MeshSettings(
        ports={"auth": 50051, "ledger": 50053},
        metrics=MetricsSettings(port_offset=1000, ports={"auth": 9151}),
    )
    assert settings.metrics_port("auth") == 9151
    assert settings.metrics_port("ledger") == 51053


def test_the_dashboard_asks_only_for_metrics_the_mesh_exports() -> None:
    import services.billing.rules  # noqa: F401  (registers billing's alert counter)

    dashboard = json.loads((REPO_ROOT / "deploy" / "grafana" / "mesh-overview.json").read_text())
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    asked = {name for query in queries for name in re.findall(r"\b(em_[a-z_]+)", query)}
    exported = {
        sample_name
        for family in REGISTRY.collect()
        for sample_name in (family.name, f"{family.name}_total", f"{family.name}_bucket")
    }
    assert asked and asked <= exported, asked - exported
