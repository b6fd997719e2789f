"""Server interceptors: access log (outermost), default deadline,
authentication, and domain-error mapping (innermost). Only unary-unary RPCs
are wrapped; the mesh's public contracts are unary so both gateways can carry them."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from grpc.aio import ServerInterceptor, ServicerContext

from services.kit.auth import TokenVerifier, reset_identity, set_identity
from services.kit.errors import DomainError
from services.kit.status import to_grpc_status

log = logging.getLogger("access")
errors_log = logging.getLogger(__name__)

Behavior = Callable[[Any, ServicerContext], Awaitable[Any]]
UNWRAPPED_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")


def _wrap_unary(handler: grpc.RpcMethodHandler | None, wrap: Callable[[Behavior], Behavior]):
    if handler is None or handler.unary_unary is None:
        return handler
    return grpc.unary_unary_rpc_method_handler(
        wrap(handler.unary_unary),
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


class _UnaryInterceptor(ServerInterceptor):
    def wrap(self, method: str, behavior: Behavior) -> Behavior:
        raise NotImplementedError

    async def intercept_service(self, continuation, handler_call_details):  # type: ignore[no-untyped-def]
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if method.startswith(UNWRAPPED_PREFIXES):
            return handler
        return _wrap_unary(handler, lambda behavior: self.wrap(method, behavior))


class AccessLogInterceptor(_UnaryInterceptor):
    def wrap(self, method: str, behavior: Behavior) -> Behavior:
        async def logged(request: Any, context: ServicerContext) -> Any:
            started = time.perf_counter()
            code = "OK"
            try:
                return await behavior(request, context)
            except BaseException:
                code = context.code().name if context.code() else "CANCELLED"
                raise
            finally:
                if log.isEnabledFor(logging.INFO):
                    log.info(
                        "rpc",
                        extra={
                            "method": method,
                            "code": code,
                            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                            "peer": context.peer(),
                        },
                    )

        return logged


class DeadlineInterceptor(_UnaryInterceptor):
    """Gives calls without a client deadline a default one."""

    def __init__(self, default_seconds: float) -> None:
        self.default_seconds = default_seconds

    def wrap(self, method: str, behavior: Behavior) -> Behavior:
        async def bounded(request: Any, context: ServicerContext) -> Any:
            remaining = context.time_remaining()
            limit = self.default_seconds if remaining is None else min(remaining, self.default_seconds * 10)
            try:
                async with asyncio.timeout(limit):
                    return await behavior(request, context)
            except TimeoutError:
                await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded")

        return bounded


class AuthInterceptor(_UnaryInterceptor):
    def __init__(self, verifier: TokenVerifier, public_methods: set[str]) -> None:
        self.verifier = verifier
        self.public_methods = public_methods

    def wrap(self, method: str, behavior: Behavior) -> Behavior:
        if method in self.public_methods:
            return behavior

        async def authenticated(request: Any, context: ServicerContext) -> Any:
            token = _bearer_token(context)
            try:
                identity = await self.verifier.verify(token)
            except DomainError as error:
                await context.abort_with_status(to_grpc_status(error))
            except Exception:
                errors_log.exception("token verification unavailable", extra={"method": method})
                await context.abort(grpc.StatusCode.UNAVAILABLE, "authentication temporarily unavailable")
            marker = set_identity(identity)
            try:
                return await behavior(request, context)
            finally:
                reset_identity(marker)

        return authenticated


def _bearer_token(context: ServicerContext) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer" and token:
                return token.strip()
    return ""


class ErrorInterceptor(_UnaryInterceptor):
    """Aborts before anything is sent (Kong reads status only from trailers-only
    responses); unexpected exceptions become a bare INTERNAL, logged here."""

    def wrap(self, method: str, behavior: Behavior) -> Behavior:
        async def mapped(request: Any, context: ServicerContext) -> Any:
            try:
                return await behavior(request, context)
            except DomainError as error:
                await context.abort_with_status(to_grpc_status(error))
            except (grpc.aio.AbortError, asyncio.CancelledError):
                raise
            except Exception:
                errors_log.exception("unhandled error", extra={"method": method})
                await context.abort(grpc.StatusCode.INTERNAL, "internal error")

        return mapped
