"""What an operator sees of a whole mesh: traces, and `launcher health`.

Traces of a whole mesh (`services.launcher up`, SQLite, embedded NATS): with `[tracing]
otlp_endpoint` pointing at an OTLP/gRPC collector run by this test, one expense created
through the gateway (Envoy, with a client's `traceparent`) is one connected trace: the
ledger's call and its SQL, the group commit, the outbox's publish to NATS, and the
reporting consumer applying it with its own SQL; ledger's log lines name the trace.

The SDK's in-memory exporter only sees the spans of its own process: the services here
are processes of their own, so the test is the collector they export to (the real OTLP
exporter, batch processor and protocol). tests/kit/test_tracing.py checks the kit's parts
with the in-memory exporter."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from tests.mesh import Mesh, free_ports

pytestmark = pytest.mark.e2e
PASSWORD = "violet-harbor-tune-42-traces"
SERVICES = ["auth", "user", "ledger", "reporting"]


@dataclass(frozen=True)
class ExportedSpan:
    service: str
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, str]


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP/gRPC trace receiver keeping every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[ExportedSpan] = []
        self._lock = threading.Lock()

    def Export(self, request, context):  # type: ignore[no-untyped-def]
        received = []
        for resource_spans in request.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    attributes = {a.key: a.value.string_value for a in span.attributes}
                    received.append(
                        ExportedSpan(
                            resource.get("service.name", ""),
                            span.name,
                            span.kind,
                            span.trace_id.hex(),
                            span.span_id.hex(),
                            span.parent_span_id.hex(),
                            attributes,
                        )
                    )
        with self._lock:
            self.spans.extend(received)
        return trace_service_pb2.ExportTraceServiceResponse()

    def trace(self, trace_id: str) -> list[ExportedSpan]:
        with self._lock:
            return [span for span in self.spans if span.trace_id == trace_id]


@pytest.fixture(scope="module")
def collector() -> Iterator[tuple[Collector, int]]:
    receiver = Collector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)
    (port,) = free_ports(1)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    yield receiver, port
    server.stop(None)


@pytest.fixture(scope="module")
def traced_mesh(tmp_path_factory: pytest.TempPathFactory, collector: tuple[Collector, int]) -> Iterator[Mesh]:
    _, port = collector
    env = {
        "EM_TRACING__OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "EM_TRACING__EXPORT_INTERVAL_SECONDS": "0.2",
        "EM_ACCESS_LOG": "all",
    }
    mesh = Mesh(Path(tmp_path_factory.mktemp("mesh-traced")), SERVICES, env)
    mesh.start()
    try:
        yield mesh
    finally:
        mesh.stop()


def _wait_for(
    collector: Collector, trace_id: str, wanted: Callable[[ExportedSpan], bool], within: float = 20.0
) -> list[ExportedSpan]:
    deadline = time.monotonic() + within
    while True:
        spans = collector.trace(trace_id)
        if any(wanted(span) for span in spans):
            return spans
        assert time.monotonic() < deadline, f"not exported within {within} s: {spans}"
        time.sleep(0.2)


def test_one_create_is_one_connected_trace_from_gateway_to_reporting(
    traced_mesh: Mesh, collector: tuple[Collector, int]
) -> None:
    receiver, _ = collector
    with httpx.Client(base_url=traced_mesh.base_url, timeout=15, trust_env=False) as http:
        email = f"trace.{secrets.token_hex(5)}@example.org"
        signup = {"email": email, "password": PASSWORD, "display_name": "Tracer"}
        token = http.post("/v1/auth/signup", json=signup).json()["access_token"]
        trace_id, root_span = secrets.token_hex(16), secrets.token_hex(8)
        headers = {"authorization": f"Bearer {token}", "traceparent": f"00-{trace_id}-{root_span}-01"}
        body = {"amount": "12.50", "currency": "INR", "merchant": "Traced Tea", "spent_on": "2026-01-15"}
        created = http.post("/v1/expenses", json=body, headers=headers)
        assert created.status_code == 200, created.text

    consumed_name = f"process {traced_mesh.event_prefix}.events.expense.created"
    _wait_for(receiver, trace_id, lambda span: span.name == consumed_name)
    # Envoy sends its spans every 5 s (or 5 at a time): wait until the gateway's is there too.
    _wait_for(receiver, trace_id, lambda span: span.service == "gateway")
    time.sleep(1.0)  # the consumer's SQL spans end before its process span: all are exported by now
    spans = receiver.trace(trace_id)
    by_id = {span.span_id: span for span in spans}
    # Connected: every span's parent is in the trace, or is the client's span that started it.
    orphans = [
        span for span in spans if span.parent_span_id not in by_id and span.parent_span_id != root_span
    ]
    assert not orphans, orphans
    names = {(span.service, span.name) for span in spans}
    # The gateway's span (Envoy's OpenTelemetry tracer), the client's child, the service's parent.
    (gateway,) = [s for s in spans if s.service == "gateway"]
    assert gateway.parent_span_id == root_span
    (create,) = [s for s in spans if s.name == "expense.ledger.v1.LedgerService/CreateExpense"]
    assert create.service == "ledger" and create.parent_span_id == gateway.span_id
    assert ("ledger", "group commit") in names
    created_subject = f"{traced_mesh.event_prefix}.events.expense.created"
    publish = [s for s in spans if s.service == "ledger" and s.name == f"publish {created_subject}"]
    assert len(publish) == 1, names
    # Ledger's first create also seeds the user's categories: their events are in the trace too.
    (consumed,) = [
        s for s in spans if s.service == "reporting" and s.name == f"process {publish[0].name[8:]}"
    ]
    assert consumed.parent_span_id == publish[0].span_id
    # The database under both: the ledger's INSERT and the reporting consumer's statements.
    ledger_sql = [s for s in spans if s.service == "ledger" and s.attributes.get("db.system")]
    assert any(s.name.startswith("INSERT") for s in ledger_sql), names
    reporting_sql = [s for s in spans if s.service == "reporting" and s.attributes.get("db.system")]
    assert reporting_sql and all(_descends(s, consumed, by_id) for s in reporting_sql)
    _assert_logs_carry(traced_mesh, trace_id)


def _descends(span: ExportedSpan, ancestor: ExportedSpan, by_id: dict[str, ExportedSpan]) -> bool:
    while span.parent_span_id in by_id:
        span = by_id[span.parent_span_id]
        if span.span_id == ancestor.span_id:
            return True
    return False


def _assert_logs_carry(mesh: Mesh, trace_id: str) -> None:
    # `up` prefixes each child's line with its name: "   ledger | {...}".
    logged = [line.partition(" | ")[2] for line in mesh.output if trace_id in line]
    lines = [json.loads(line) for line in logged if line.startswith("{")]
    assert any(
        line.get("service") == "ledger" and line.get("method", "").endswith("CreateExpense") for line in lines
    ), mesh.log[-3000:]


def _health(mesh: Mesh, **overrides: str) -> tuple[int, dict[str, dict[str, str]]]:
    result = subprocess.run(
        [sys.executable, "-m", "services.launcher", "health", "--json"],
        env={**mesh.env, **overrides},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    report = json.loads(result.stdout)
    assert report["healthy"] is (result.returncode == 0)
    return result.returncode, {component["name"]: component for component in report["components"]}


def test_health_shows_every_component_and_fails_when_one_is_down(traced_mesh: Mesh) -> None:
    code, components = _health(traced_mesh)
    assert code == 0, components
    for name in [*SERVICES, "envoy", "nats"]:
        assert components[name]["state"] == "up", components[name]
    assert "/metrics" in components["ledger"]["detail"]
    assert components["postgres"]["state"] == "off"  # SQLite
    assert components["traces"]["state"] == "up"
    # The user service looked for where nothing listens: down, and the command fails.
    (nowhere,) = free_ports(1)
    code, components = _health(traced_mesh, EM_PORTS__USER=str(nowhere))
    assert code == 1
    assert components["user"]["state"] == "down"
    assert components["ledger"]["state"] == "up"
