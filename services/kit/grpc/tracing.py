"""Calls to other services as CLIENT spans, their `traceparent` in the call's metadata, so
the callee's SERVER span (the kit's interceptor) joins the caller's trace. On the channels
of grpc/clients.py only while tracing is on (services/kit/tracing.py)."""

from __future__ import annotations

from typing import Any

import grpc
from opentelemetry.trace import SpanKind

from services.kit import tracing


def _with_trace_headers(details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
    metadata = grpc.aio.Metadata(*(details.metadata or ()))
    for key, value in tracing.headers_of().items():
        metadata[key] = value
    return details._replace(metadata=metadata)  # type: ignore[attr-defined]


def _span_name(details: grpc.aio.ClientCallDetails) -> str:
    method = details.method
    return (method.decode() if isinstance(method, bytes) else method).lstrip("/")


class TracingUnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
        with tracing.span(_span_name(client_call_details), SpanKind.CLIENT, attributes=_RPC):
            call = await continuation(_with_trace_headers(client_call_details), request)
            await call  # the span lasts until the answer, and an error marks it
            return call


class TracingUnaryStream(grpc.aio.UnaryStreamClientInterceptor):
    """A streamed answer's span covers the call's start; the callee's span covers the stream."""

    async def intercept_unary_stream(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
        with tracing.span(_span_name(client_call_details), SpanKind.CLIENT, attributes=_RPC):
            return await continuation(_with_trace_headers(client_call_details), request)


_RPC: dict[str, Any] = {"rpc.system": "grpc"}


def client_interceptors() -> list[grpc.aio.ClientInterceptor]:
    """The interceptors a new channel gets: none while tracing is off."""
    return [TracingUnaryUnary(), TracingUnaryStream()] if tracing.enabled() else []
