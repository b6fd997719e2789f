"""The kit's traces, with the SDK's in-memory exporter, in one process against real NATS and
a real database: a request's span -> its transaction's SQL -> the outbox's publish (the
`traceparent` in the NATS message's headers) -> the consumer's span -> the consumer's SQL,
one trace; a group commit joins its first caller's trace and links the others'; and with
no endpoint the trace SDK is never imported (tracing off costs nothing).
tests/test_observability_e2e.py follows the same path across real service processes."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from expense.echo.v1 import echo_pb2, echo_pb2_grpc
from services.kit import tracing
from services.kit.config.settings import TracingSettings
from services.kit.db.group_commit import GroupCommitter
from tests.kit.test_events import World
from tests.kit.test_server import call, echo_stub, token

# echo_stub is test_server.py's fixture (a real server with the kit's interceptor): pytest
# finds a fixture by its name in the module.
__all__ = ["echo_stub"]


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing.configure("kit-test", TracingSettings(), exporter)
    yield exporter
    tracing.shutdown()


@pytest.fixture
async def traced_world(
    exported: InMemorySpanExporter, database_url: str, nats_url: str
) -> AsyncIterator[World]:
    world = World(database_url, nats_url)  # built after configure: its engine is traced
    await world.setup()
    yield world
    await world.close()


def _of_trace(exporter: InMemorySpanExporter, trace_id: int) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.context.trace_id == trace_id]


async def test_a_request_its_sql_its_event_and_the_consumer_are_one_trace(
    traced_world: World, exported: InMemorySpanExporter
) -> None:
    # The relay's first poll takes every unpublished row, whatever its age, without a trace
    # context (the table keeps none): once its running loop has done that round, the event
    # goes the traced way (a round still running would race the request's commit).
    for _ in range(200):
        if traced_world.relay._next_poll:
            break
        await asyncio.sleep(0.05)
    assert traced_world.relay._next_poll, "the relay never finished its first round"
    with tracing.span("request", SpanKind.SERVER) as request:
        await traced_world.register("traced-user")
    trace_id = request.get_span_context().trace_id
    assert await traced_world.wait_for({"traced-user": 1}) == {"traced-user": 1}
    for _ in range(150):  # the consumer's span ends after its ack
        if any(s.kind is SpanKind.CONSUMER for s in _of_trace(exported, trace_id)):
            break
        await asyncio.sleep(0.1)
    spans = _of_trace(exported, trace_id)
    by_id = {span.context.span_id: span for span in spans}
    (publish,) = [s for s in spans if s.kind is SpanKind.PRODUCER]
    (consume,) = [s for s in spans if s.kind is SpanKind.CONSUMER]
    assert publish.parent is not None and publish.parent.span_id == request.get_span_context().span_id
    assert consume.parent is not None and consume.parent.span_id == publish.context.span_id
    assert consume.attributes["messaging.destination.name"].endswith(".events.user.registered")
    sql = [s for s in spans if s.attributes and "db.statement" in s.attributes]
    inserts = [
        s for s in sql if s.parent is not None and s.parent.span_id == request.get_span_context().span_id
    ]
    assert any("INSERT INTO outbox" in s.attributes["db.statement"] for s in inserts)
    # The handler's statements run in the consumer span's transaction: its children.
    applied = [s for s in sql if s.parent is not None and s.parent.span_id == consume.context.span_id]
    assert any("registrations" in s.attributes["db.statement"] for s in applied), applied
    assert all(span.parent is None or span.parent.span_id in by_id for span in spans if span is not request)


async def test_a_group_commit_joins_its_first_callers_trace_and_links_the_others(
    exported: InMemorySpanExporter,
) -> None:
    started = asyncio.Event()

    async def write_batch(items: list[str], next_may_start: object) -> list[str]:
        with tracing.span("write"):
            await started.wait()
        return items

    committer: GroupCommitter[str, str] = GroupCommitter(
        write_batch, lambda item: asyncio.sleep(0, item), max_batch_size=10, max_concurrent_batches=1
    )

    async def call(name: str) -> tuple[int, str]:
        with tracing.span(name) as caller:
            await committer.submit(name)
            return caller.get_span_context().span_id, name

    first = asyncio.create_task(call("first"))
    await asyncio.sleep(0.05)  # the first batch runs (held), the next two wait for the second
    rest = [asyncio.create_task(call(name)) for name in ("second", "third")]
    await asyncio.sleep(0.05)
    started.set()
    callers = dict(await asyncio.gather(first, *rest))
    batches = [s for s in exported.get_finished_spans() if s.name == "group commit"]
    assert [s.attributes["batch.items"] for s in batches] == [1, 2]
    lone, pair = batches
    assert lone.parent is not None and callers[lone.parent.span_id] == "first"
    assert pair.parent is not None and callers[pair.parent.span_id] == "second"
    assert [callers[link.context.span_id] for link in pair.links] == ["third"]


def test_without_an_endpoint_tracing_is_off_and_the_sdk_never_loaded() -> None:
    program = (
        "import sys\n"
        "from services.kit import tracing\n"
        "from services.kit.config.settings import MeshSettings\n"
        "from services.kit.runtime import Runtime\n"
        "settings = MeshSettings(data_dir='/tmp/em-untraced')\n"
        "assert tracing.configure('ledger', settings.tracing) is None\n"
        "Runtime('ledger', settings)\n"
        "assert not tracing.enabled()\n"
        # redis-py imports the SDK's metrics itself when it is installed: the trace SDK is ours.
        "tracer = ('opentelemetry.sdk.trace', 'opentelemetry.exporter', 'opentelemetry.instrumentation')\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(tracer))\n"
        "assert not loaded, loaded\n"
        "print('off')\n"
    )
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and result.stdout == "off\n", result.stderr


async def test_a_call_is_a_server_span_of_its_callers_trace_an_error_only_when_the_server_failed(
    exported: InMemorySpanExporter, echo_stub: echo_pb2_grpc.EchoServiceStub
) -> None:
    """A real grpc.aio server with the kit's interceptor (tests/kit/test_server.py's)."""
    trace_id, caller = secrets.token_hex(16), secrets.token_hex(8)
    metadata = (("authorization", f"Bearer {token()}"), ("traceparent", f"00-{trace_id}-{caller}-01"))
    answer = await echo_stub.Echo(echo_pb2.EchoRequest(message="hello"), metadata=metadata)
    assert answer.message == "hello"
    assert (await call(echo_stub, "missing", token())).code() == grpc.StatusCode.NOT_FOUND
    assert (await call(echo_stub, "crash", token())).code() == grpc.StatusCode.INTERNAL
    served = [s for s in exported.get_finished_spans() if s.name == "expense.echo.v1.EchoService/Echo"]
    ok, missing, _crashed = served
    assert ok.kind is SpanKind.SERVER and ok.parent is not None
    assert (f"{ok.context.trace_id:032x}", f"{ok.parent.span_id:016x}") == (trace_id, caller)
    assert missing.parent is None  # no traceparent: a trace of its own
    assert [s.attributes["rpc.grpc.status_code"] for s in served] == [0, 5, 13]
    # A caller's mistake is no server error; a crash is.
    assert [s.status.status_code for s in served] == [StatusCode.UNSET, StatusCode.UNSET, StatusCode.ERROR]
