"""OpenTelemetry traces across the mesh: gateway -> service (the kit's server interceptor)
-> database (SQLAlchemy) -> outbox -> NATS (W3C `traceparent` in the message headers)
-> consumer, and calls between services (the channels' client interceptor).

Off unless `[tracing] otlp_endpoint` is set (or a test hands `configure` an exporter):
then nothing here imports the SDK, and every hook in the kit checks `enabled()` once, when
it builds a handler or a batch, so an untraced mesh pays one boolean test per call at most.

On, spans go to the OTLP/gRPC endpoint through the SDK's batch processor (off the event
loop's thread). Context crosses processes only as W3C trace context: gRPC metadata and NATS
headers `traceparent` / `tracestate`. What is not carried: events the outbox poll publishes
(after a restart, or NATS down) start a trace of their own, since the outbox table keeps no
trace context; a group commit of several creates is one span, child of the first caller's,
linked to the others'."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from sqlalchemy.ext.asyncio import AsyncEngine

    from services.kit.config.settings import TracingSettings

Context = otel_context.Context
# W3C trace context only, whatever OTEL_PROPAGATORS says: Envoy and Kong speak it too.
_PROPAGATOR = TraceContextTextMapPropagator()
TRACER_NAME = "expense-mesh"


class _State:
    provider: TracerProvider | None = None
    service: str = ""


_STATE = _State()


def enabled() -> bool:
    return _STATE.provider is not None


def tracer() -> trace.Tracer:
    assert _STATE.provider is not None, "tracing is off"
    return _STATE.provider.get_tracer(TRACER_NAME)


def configure(
    service: str, settings: TracingSettings, exporter: SpanExporter | None = None
) -> TracerProvider | None:
    """Starts exporting this process's spans (as `service`) when an endpoint or an exporter is
    given; None (tracing stays off) otherwise. `exporter`: tests' InMemorySpanExporter, exported
    at once (SimpleSpanProcessor) so a test sees a span as soon as it ends."""
    if exporter is None and not settings.enabled:
        return None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    provider = TracerProvider(
        resource=Resource.create({"service.name": service, "service.namespace": "expense-mesh"}),
        sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)),
    )
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        endpoint = settings.otlp_endpoint
        otlp = OTLPSpanExporter(endpoint=endpoint, insecure=not endpoint.startswith("https://"))
        provider.add_span_processor(
            BatchSpanProcessor(
                otlp,
                max_queue_size=settings.max_queue_size,
                schedule_delay_millis=settings.export_interval_seconds * 1000,
            )
        )
    _STATE.provider = provider
    _STATE.service = service
    return provider


def shutdown() -> None:
    """Exports what is still queued, then turns tracing off (at a process's stop, in tests)."""
    provider, _STATE.provider = _STATE.provider, None
    if provider is not None:
        provider.shutdown()


def instrument_engine(engine: AsyncEngine) -> None:
    """A span per statement of this engine's transactions (the SQLAlchemy instrumentation's
    engine tracer, on this engine alone: its instrumentor would patch create_engine
    process-wide, and instrument only the first engine). Reads on PostgreSQL bypass the
    engine (kit/db/reads.py), which makes their spans itself."""
    if not enabled():
        return
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
    from opentelemetry.metrics import NoOpMeter

    # Pool gauges are Prometheus's (kit/metrics.py): the tracer's counter goes nowhere.
    connections = NoOpMeter(TRACER_NAME).create_up_down_counter("db.client.connections.usage")
    EngineTracer(tracer(), engine.sync_engine, connections, enable_commenter=False)


def current() -> Context:
    return otel_context.get_current()


def attach(context: Context) -> None:
    """Makes `context` current for the rest of the running task (which owns its context)."""
    otel_context.attach(context)


def headers_of(parent: Context | None = None) -> dict[str, str]:
    """`traceparent` (and `tracestate`) of the current span, or of `parent`'s: {} when none."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=parent)
    return carrier


def context_from(carrier: Mapping[str, str] | None) -> Context | None:
    """The remote span context a caller sent (gRPC metadata, NATS headers), or None."""
    if not carrier or "traceparent" not in carrier:
        return None
    return _PROPAGATOR.extract(carrier)


def context_from_metadata(metadata: Sequence[tuple[str, Any]] | None) -> Context | None:
    carrier = {key: value for key, value in metadata or () if key in ("traceparent", "tracestate")}
    return context_from(carrier)


@contextmanager
def span(
    name: str,
    kind: SpanKind = SpanKind.INTERNAL,
    parent: Context | None = None,
    links: Sequence[Context] = (),
    attributes: Mapping[str, Any] | None = None,
    error_on_exception: bool = True,
) -> Iterator[Span]:
    """A span made current while the block runs, ended after it; an exception is recorded and,
    unless `error_on_exception` is false (the caller sets the status), marks it an error.
    `parent`: a remote caller's context (else the current one); `links`: other contexts it
    serves (a batch's other members)."""
    linked = [Link(trace.get_current_span(link).get_span_context()) for link in links]
    with tracer().start_as_current_span(
        name,
        context=parent,
        kind=kind,
        links=linked,
        attributes=attributes,
        record_exception=True,
        set_status_on_exception=error_on_exception,
    ) as current_span:
        yield current_span


def started(
    name: str,
    kind: SpanKind,
    parent: Context | None,
    attributes: Mapping[str, Any] | None = None,
) -> Span:
    """A span not made current, ended by the caller (a consumed message's, ended at its ack)."""
    return tracer().start_span(name, context=parent, kind=kind, attributes=attributes)


def span_in_use(started_span: Span) -> Any:
    """Makes a `started` span current for a block (without ending it)."""
    return trace.use_span(started_span, end_on_exit=False, record_exception=True)


def context_with(started_span: Span) -> Context:
    """A context whose span is `started_span`: to link to it."""
    return trace.set_span_in_context(started_span)


def mark_error(failed: Span, code: str) -> None:
    failed.set_status(Status(StatusCode.ERROR, code))


def log_ids() -> dict[str, str]:
    """trace_id and span_id of the current span, for a log line; {} when none."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return {}
    return {"trace_id": f"{context.trace_id:032x}", "span_id": f"{context.span_id:016x}"}
