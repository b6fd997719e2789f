"""A peer's circuit breaker on a real gRPC channel: answers of any kind keep it closed, a
peer that is gone opens it after failure_threshold calls, open it fails calls at once, and
the first call after open_seconds closes it again once the peer is back; each change is
logged and counted. The retry policy and budget come from the settings."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from services.kit.config.settings import BreakerSettings, ResilienceSettings, RetrySettings
from services.kit.grpc.breakers import TRANSITIONS, CircuitOpen
from services.kit.grpc.clients import LazyChannel, _service_config

HEALTH = "grpc.health.v1.Health"
OPEN_SECONDS = 0.5


async def _serve(port: int = 0) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    return server, bound


async def _check(channel: LazyChannel, service: str = "") -> int:
    stub = health_pb2_grpc.HealthStub(channel.get())
    return (await stub.Check(health_pb2.HealthCheckRequest(service=service))).status


async def test_the_breaker_opens_on_a_gone_peer_and_closes_when_it_is_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="services.kit.grpc.breakers")
    peer = f"peer-{secrets.token_hex(4)}"
    resilience = ResilienceSettings(breaker=BreakerSettings(failure_threshold=2, open_seconds=OPEN_SECONDS))
    server, port = await _serve()
    channel = LazyChannel(f"127.0.0.1:{port}", [HEALTH], 0.3, resilience=resilience, peer=peer)
    breaker = channel.breaker
    assert breaker is not None
    try:
        assert await _check(channel) == health_pb2.HealthCheckResponse.SERVING
        for _ in range(3):  # NOT_FOUND is an answer: the peer works
            with pytest.raises(grpc.aio.AioRpcError) as answered:
                await _check(channel, "no-such-service")
            assert answered.value.code() == grpc.StatusCode.NOT_FOUND
        assert breaker.state == "closed"

        await server.stop(None)
        for _ in range(2):
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await _check(channel)
            assert failed.value.code() in {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
        assert breaker.state == "opened"
        started = time.monotonic()
        with pytest.raises(CircuitOpen) as refused:
            await _check(channel)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert time.monotonic() - started < 0.1, "an open breaker must not wait for the peer"

        server, _ = await _serve(port)
        await asyncio.sleep(OPEN_SECONDS)
        assert await _check(channel) == health_pb2.HealthCheckResponse.SERVING
        assert breaker.state == "closed"
    finally:
        await channel.close()
        await server.stop(None)
    changes = [r.state for r in caplog.records if getattr(r, "peer", None) == peer]  # type: ignore[attr-defined]
    assert changes == ["opened", "half-opened", "closed"]
    assert [TRANSITIONS[(peer, state)] for state in changes] == [1, 1, 1]


def test_retries_and_their_budget_come_from_the_settings() -> None:
    retry = RetrySettings(max_attempts=3, budget_max_tokens=7, budget_token_ratio=0.2)
    config = json.loads(_service_config([HEALTH], 1.0, True, retry))
    assert config["methodConfig"][0]["retryPolicy"]["maxAttempts"] == 3
    assert config["retryThrottling"] == {"maxTokens": 7, "tokenRatio": 0.2}
