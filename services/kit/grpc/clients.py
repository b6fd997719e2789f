"""gRPC client channels for calls between services: retries on UNAVAILABLE
through the service config, keepalive, and a deadline on every call. Calls wait
for a connection (waitForReady) within their deadline, so a peer that is
restarting or a reconnect after an idle period is not an immediate failure."""

from __future__ import annotations

import json

import grpc


def _service_config(services: list[str], timeout: float, wait_for_ready: bool) -> str:
    return json.dumps(
        {
            "methodConfig": [
                {
                    "name": [{"service": name} for name in services],
                    "timeout": f"{timeout}s",
                    "waitForReady": wait_for_ready,
                    "retryPolicy": {
                        "maxAttempts": 4,
                        "initialBackoff": "0.05s",
                        "maxBackoff": "1s",
                        "backoffMultiplier": 2,
                        "retryableStatusCodes": ["UNAVAILABLE"],
                    },
                }
            ],
            "retryThrottling": {"maxTokens": 20, "tokenRatio": 0.1},
        }
    )


def make_channel(
    target: str, services: list[str], timeout: float, wait_for_ready: bool = True
) -> grpc.aio.Channel:
    """Must be called inside the running event loop that will use the channel.
    One-shot commands pass wait_for_ready=False: an absent peer is their error to report."""
    return grpc.aio.insecure_channel(
        target,
        options=[
            ("grpc.service_config", _service_config(services, timeout, wait_for_ready)),
            ("grpc.enable_retries", 1),
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.keepalive_timeout_ms", 5_000),
        ],
    )


class LazyChannel:
    """A channel to one peer, made on first use: a grpc.aio channel belongs to the
    event loop that creates it, and clients are built before the loop runs."""

    def __init__(self, target: str, services: list[str], timeout: float, wait_for_ready: bool = True) -> None:
        self.target = target
        self.services = services
        self.timeout = timeout
        self.wait_for_ready = wait_for_ready
        self._channel: grpc.aio.Channel | None = None

    def get(self) -> grpc.aio.Channel:
        if self._channel is None:
            self._channel = make_channel(self.target, self.services, self.timeout, self.wait_for_ready)
        return self._channel

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
