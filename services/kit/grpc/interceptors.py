"""The kit's server interceptor: metrics and access log (outermost), default deadline,
authentication, and domain-error mapping (innermost), in one layer.

Authentication follows the method's access (services/kit/identity/access.py): public
methods are open, mesh-internal ones need a service or operator token (a user token
is refused), every other method a user's access token.

One interceptor instead of four, and the wrapped handler built once per method:
grpc.aio asks every interceptor for a handler on every call, and building four
handlers per call cost more than an echo RPC itself. Every kind of RPC is wrapped:
a streamed response is written by the wrapper (context.write), so the layers
cover the whole stream, errors raised before or during it included."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterable, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import grpc
from grpc.aio import ServerInterceptor, ServicerContext
from opentelemetry.trace import SpanKind
from sqlalchemy.exc import InterfaceError, OperationalError

from services.kit import metrics, tracing
from services.kit.domain.errors import DeadlineExceeded, DomainError, Internal, PermissionDenied, Unavailable
from services.kit.grpc.status import to_grpc_status
from services.kit.identity.access import Access, MethodAccess
from services.kit.identity.tokens import Identity, TokenVerifier, reset_identity, set_identity

log = logging.getLogger("access")
errors_log = logging.getLogger(__name__)

Behavior = Callable[[Any, ServicerContext], Awaitable[Any]]
AccessLogMode = Literal["all", "errors", "off"]
RpcKind = Literal["unary", "client_stream", "server_stream", "bidi_stream"]
UNWRAPPED_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")
# Methods whose wrapped handler is kept; unknown names (a client's typo) are never cached.
MAX_CACHED_METHODS = 1000


@dataclass(frozen=True)
class AccessLog:
    """Which calls are logged: "all", or with "errors" only failed calls and those slower than
    slow_ms (the gateway's access log already has every request)."""

    mode: AccessLogMode = "all"
    slow_ms: float = 100.0

    def record(self, method: str, code: str, duration_ms: float, context: ServicerContext) -> None:
        if self.mode == "off" or (self.mode == "errors" and code == "OK" and duration_ms < self.slow_ms):
            return
        if log.isEnabledFor(logging.INFO):
            extra = {
                "method": method,
                "code": code,
                "duration_ms": round(duration_ms, 2),
                "peer": context.peer(),
            }
            log.info("rpc", extra=extra)


class CallMetrics:
    """One method's call counters and latency histogram, their label sets bound once
    (a labels() lookup per call would cost more than the observation)."""

    def __init__(self, method: str, kind: RpcKind) -> None:
        service, _, name = method.lstrip("/").partition("/")
        self._labels = (service, name, kind)
        self._seconds = metrics.GRPC_SECONDS.labels(*self._labels)
        self._handled: dict[str, Any] = {}

    def record(self, code: str, seconds: float) -> None:
        handled = self._handled.get(code)
        if handled is None:  # at most one per status code
            handled = self._handled[code] = metrics.GRPC_HANDLED.labels(*self._labels, code)
        handled.inc()
        self._seconds.observe(seconds)


def _no_metrics(code: str, seconds: float) -> None:
    return None


class KitInterceptor(ServerInterceptor):
    def __init__(
        self,
        verifier: TokenVerifier,
        access: MethodAccess,
        default_deadline_seconds: float,
        access_log: AccessLog,
        record_metrics: bool = False,
    ) -> None:
        self.verifier = verifier
        self.access = access
        self.default_deadline_seconds = default_deadline_seconds
        self.access_log = access_log
        # Calls counted and timed (services/kit/metrics.py), or not at all.
        self.record_metrics = record_metrics
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(self, continuation, handler_call_details):  # type: ignore[no-untyped-def]
        method = handler_call_details.method
        cached = self._handlers.get(method)
        if cached is not None:
            return cached
        handler = await continuation(handler_call_details)
        if handler is None or method.startswith(UNWRAPPED_PREFIXES):
            return handler
        wrapped = self._wrapped_handler(method, handler)
        if len(self._handlers) < MAX_CACHED_METHODS:
            self._handlers[method] = wrapped
        return wrapped

    def _wrapped_handler(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        serializers = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap(method, handler.unary_unary, "unary"), **serializers
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                self._wrap(method, handler.stream_unary, "client_stream"), **serializers
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap(method, _writing(handler.unary_stream), "server_stream"), **serializers
            )
        return grpc.stream_stream_rpc_method_handler(
            self._wrap(method, _writing(handler.stream_stream), "bidi_stream"), **serializers
        )

    def _wrap(self, method: str, behavior: Behavior, kind: RpcKind) -> Behavior:
        access = self.access.of(method)
        streamed = kind != "unary"
        record = CallMetrics(method, kind).record if self.record_metrics else _no_metrics

        async def intercepted(request: Any, context: ServicerContext) -> Any:
            started = time.perf_counter()
            code = "OK"
            try:
                return await self._bounded(method, access, streamed, behavior, request, context)
            except BaseException:
                code = context.code().name if context.code() else "CANCELLED"
                raise
            finally:
                seconds = time.perf_counter() - started
                record(code, seconds)
                self.access_log.record(method, code, seconds * 1000, context)

        return _traced(method, intercepted) if tracing.enabled() else intercepted

    async def _bounded(
        self,
        method: str,
        access: Access,
        streamed: bool,
        behavior: Behavior,
        request: Any,
        context: ServicerContext,
    ) -> Any:
        """Calls without a client deadline get the default one; longer ones are capped,
        except a stream's: a rebuild's stream lasts as long as its client allows, a
        download through Envoy as long as its route timeout (which Envoy states in
        x-envoy-expected-rq-timeout-ms, and sets itself at the edge)."""
        remaining = context.time_remaining()
        limit = self.default_deadline_seconds
        if remaining is not None:
            limit = remaining if streamed else min(remaining, limit * 10)
        elif streamed:
            limit = _gateway_route_timeout(context) or limit
        try:
            async with asyncio.timeout(limit):
                identity = await self._authenticate(method, access, context)
                return await self._mapped(method, identity, behavior, request, context)
        except TimeoutError:
            await context.abort_with_status(to_grpc_status(DeadlineExceeded("deadline exceeded")))

    async def _authenticate(self, method: str, access: Access, context: ServicerContext) -> Identity | None:
        """The user's identity for user methods; None for public and internal ones."""
        if access is Access.PUBLIC:
            return None
        try:
            if access is Access.USER:
                return await self.verifier.verify(_bearer_token(context))
            caller = await self.verifier.verify_caller(_bearer_token(context))
            if not self.access.allows(method, caller):
                raise PermissionDenied(f"{caller.subject} may not call {method}")
            if caller.kind == "operator":
                # A person reading across users: always on record, whatever access_log says.
                log.warning("operator call", extra={"method": method, "operator": caller.name})
            return None
        except DomainError as error:
            await context.abort_with_status(to_grpc_status(error))
        except Exception:
            errors_log.exception("token verification unavailable", extra={"method": method})
            await context.abort_with_status(
                to_grpc_status(Unavailable("authentication temporarily unavailable", "AUTH_UNAVAILABLE"))
            )
        raise AssertionError("unreachable: abort raises")

    @staticmethod
    async def _mapped(
        method: str, identity: Identity | None, behavior: Behavior, request: Any, context: ServicerContext
    ) -> Any:
        """Aborts before anything is sent (Kong reads status only from trailers-only
        responses); unexpected exceptions become a bare INTERNAL, logged here."""
        marker = set_identity(identity)
        try:
            return await behavior(request, context)
        except DomainError as error:
            await context.abort_with_status(to_grpc_status(error))
        except (grpc.aio.AbortError, asyncio.CancelledError):
            raise
        except (OperationalError, InterfaceError) as error:
            # The database is restarting or unreachable: retryable, not the caller's fault.
            errors_log.warning("database unavailable", extra={"method": method, "error": repr(error)})
            await context.abort_with_status(
                to_grpc_status(Unavailable("temporarily unavailable; retry", "DATABASE_UNAVAILABLE"))
            )
        except Exception:
            errors_log.exception("unhandled error", extra={"method": method})
            await context.abort_with_status(to_grpc_status(Internal("internal error")))
        finally:
            reset_identity(marker)


# Codes that are the server's fault (OpenTelemetry's gRPC conventions): a SERVER span's error.
SERVER_FAULTS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)


def _traced(method: str, behavior: Behavior) -> Behavior:
    """The call as a SERVER span, child of the caller's `traceparent` (the gateway's, another
    service's) or the root of a new trace; the handler's spans (database, outbox) are its children."""
    service, _, name = method.lstrip("/").partition("/")
    attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}

    async def traced(request: Any, context: ServicerContext) -> Any:
        parent = tracing.context_from_metadata(context.invocation_metadata())
        name = method.lstrip("/")
        # The status says whether the server failed: a caller's bad input is no server error.
        with tracing.span(
            name, SpanKind.SERVER, parent, attributes=attributes, error_on_exception=False
        ) as span:
            try:
                return await behavior(request, context)
            finally:
                code = context.code()
                span.set_attribute("rpc.grpc.status_code", code.value[0] if code else 0)
                if code in SERVER_FAULTS:
                    tracing.mark_error(span, code.name)

    return traced


def _writing(behavior: Behavior) -> Behavior:
    """A streaming handler as a coroutine writing each response itself, so the wrapper's
    deadline and error mapping hold for the whole stream. A handler already writing with
    context.write (a coroutine) is awaited as it is."""

    async def write_all(request: Any, context: ServicerContext) -> None:
        responses = behavior(request, context)
        if inspect.isawaitable(responses):
            await responses
            return
        stream: AsyncIterable[Any] = responses
        async for response in stream:
            await context.write(response)

    return write_all


def _gateway_route_timeout(context: ServicerContext) -> float | None:
    for key, value in context.invocation_metadata() or ():
        if key == "x-envoy-expected-rq-timeout-ms" and str(value).isdigit():
            return int(str(value)) / 1000
    return None


def _bearer_token(context: ServicerContext) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer" and token:
                return token.strip()
    return ""
