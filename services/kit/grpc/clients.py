"""gRPC client channels for calls between services: retries on UNAVAILABLE through the
service config, within a retry budget (retryThrottling), both from `[resilience.retry]`;
keepalive; a deadline on every call; and, where the caller gives one, the peer's circuit
breaker (breakers.py) around every unary call. Calls wait for a connection (waitForReady)
within their deadline, so a peer that is restarting or a reconnect after an idle period is
not an immediate failure."""

from __future__ import annotations

import json

import grpc

from services.kit.config.settings import ResilienceSettings, RetrySettings
from services.kit.grpc.breakers import Breaker, BreakerInterceptor, breaker_for
from services.kit.grpc.tracing import client_interceptors


def _duration(seconds: float) -> str:
    return f"{seconds:.9f}s"


def _service_config(
    services: list[str], timeout: float | None, wait_for_ready: bool, retry: RetrySettings
) -> str:
    deadline = {"timeout": _duration(timeout)} if timeout is not None else {}
    return json.dumps(
        {
            "methodConfig": [
                {
                    "name": [{"service": name} for name in services],
                    **deadline,
                    "waitForReady": wait_for_ready,
                    "retryPolicy": {
                        "maxAttempts": retry.max_attempts,
                        "initialBackoff": _duration(retry.initial_backoff_seconds),
                        "maxBackoff": _duration(retry.max_backoff_seconds),
                        "backoffMultiplier": retry.backoff_multiplier,
                        "retryableStatusCodes": ["UNAVAILABLE"],
                    },
                }
            ],
            "retryThrottling": {"maxTokens": retry.budget_max_tokens, "tokenRatio": retry.budget_token_ratio},
        }
    )


def make_channel(
    target: str,
    services: list[str],
    timeout: float,
    wait_for_ready: bool = True,
    retry: RetrySettings | None = None,
    breaker: Breaker | None = None,
) -> grpc.aio.Channel:
    """Must be called inside the running event loop that will use the channel.
    One-shot commands pass wait_for_ready=False: an absent peer is their error to report.
    With a breaker, its interceptor sets each call's deadline instead of the service config:
    gRPC applied a service-config timeout of about a second or less as already expired
    (grpcio 1.85, tests/kit/test_breakers.py), a per-call one as given."""
    config = _service_config(services, None if breaker else timeout, wait_for_ready, retry or RetrySettings())
    # Traced calls outermost: a span per call as the caller sees it, breaker waits included.
    interceptors: list[grpc.aio.ClientInterceptor] = client_interceptors()
    if breaker is not None:
        interceptors.append(BreakerInterceptor(breaker, timeout))
    return grpc.aio.insecure_channel(
        target,
        options=[
            ("grpc.service_config", config),
            ("grpc.enable_retries", 1),
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.keepalive_timeout_ms", 5_000),
        ],
        interceptors=interceptors or None,
    )


class LazyChannel:
    """A channel to one peer, made on first use: a grpc.aio channel belongs to the
    event loop that creates it, and clients are built before the loop runs.
    With `resilience`, the channel has its retry settings and the breaker named `peer`."""

    def __init__(
        self,
        target: str,
        services: list[str],
        timeout: float,
        wait_for_ready: bool = True,
        resilience: ResilienceSettings | None = None,
        peer: str = "",
    ) -> None:
        self.target = target
        self.services = services
        self.timeout = timeout
        self.wait_for_ready = wait_for_ready
        self.retry = resilience.retry if resilience is not None else None
        self.breaker = (
            breaker_for(peer or target, target, resilience.breaker) if resilience is not None else None
        )
        self._channel: grpc.aio.Channel | None = None

    def get(self) -> grpc.aio.Channel:
        if self._channel is None:
            self._channel = make_channel(
                self.target, self.services, self.timeout, self.wait_for_ready, self.retry, self.breaker
            )
        return self._channel

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
