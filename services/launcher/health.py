"""Readiness checks: gRPC health of a service, a TCP port, an HTTP 200."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tenacity import AsyncRetrying, RetryError, retry_if_result, stop_after_delay, wait_fixed

POLL_SECONDS = 0.2
# Local checks never go through an http_proxy/grpc_proxy from the environment.
CHANNEL_OPTIONS = [("grpc.enable_http_proxy", 0)]
SERVING = health_pb2.HealthCheckResponse.SERVING


class NotReady(Exception):
    def __init__(self, what: str, seconds: float) -> None:
        super().__init__(f"{what} not ready after {seconds:g} s")


async def wait_until(check: Callable[[], Awaitable[bool]], what: str, seconds: float) -> None:
    polling = AsyncRetrying(
        stop=stop_after_delay(seconds),
        wait=wait_fixed(POLL_SECONDS),
        retry=retry_if_result(lambda ready: not ready),
    )

    async def attempt() -> bool:
        # A coroutine function, so tenacity awaits it (checks are often lambdas).
        return await check()

    try:
        await polling(attempt)
    except RetryError:
        raise NotReady(what, seconds) from None


async def wait_serving(address: str, what: str, seconds: float) -> None:
    """Until grpc.health.v1.Health/Check (service "") answers SERVING."""
    async with grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
        stub = health_pb2_grpc.HealthStub(channel)

        async def serving() -> bool:
            try:
                response = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
            except grpc.aio.AioRpcError:
                return False
            return response.status == SERVING

        await wait_until(serving, what, seconds)


async def port_open(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    await writer.wait_closed()
    return True


_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


async def http_ok(url: str) -> bool:
    def get() -> bool:
        try:
            with _DIRECT.open(url, timeout=1.0) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    return await asyncio.to_thread(get)


def probe(address: str, service: str, timeout: float) -> bool:
    """One synchronous health check (container healthchecks: no event loop needed)."""
    with grpc.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.RpcError:
            return False
    return response.status == SERVING
