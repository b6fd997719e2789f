"""Talking to the mesh: REST through Envoy (bench.http_client) and gRPC straight to a service
port (grpc.aio), access tokens from real logins, and loopback source addresses.

Login throttling counts attempts per client IP, and Envoy takes the client IP from
the TCP peer. Every address in 127.0.0.0/8 reaches this machine's loopback, so
binding each client connection to its own 127.0.<block>.<n> makes it a distinct
client to the gateway, as many users behind many addresses would be."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import grpc

from bench.http_client import HttpClient, Response
from bench.seed import SeededUser
from bench.stats import OK

ADDRESSES_PER_BLOCK = 250
# An access token lives 15 minutes (config/mesh.toml [jwt]); log in again well before.
TOKEN_REFRESH_SECONDS = 600.0
REQUEST_TIMEOUT_SECONDS = 30.0
GRPC_OPTIONS = [("grpc.enable_http_proxy", 0), ("grpc.max_receive_message_length", 64 << 20)]


class Addresses:
    """Loopback source addresses 127.0.<block>.1..250, handed out round-robin."""

    def __init__(self, block: int) -> None:
        self.block = block
        self._next = 0

    def next(self) -> str:
        self._next += 1
        return f"127.0.{self.block}.{(self._next - 1) % ADDRESSES_PER_BLOCK + 1}"


class RestClients:
    """Keep-alive HTTP clients of the gateway, one per source address (None: the default)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self._clients: dict[str | None, HttpClient] = {}

    def get(self, source: str | None = None) -> HttpClient:
        client = self._clients.get(source)
        if client is None:
            client = HttpClient(self.base_url, source, REQUEST_TIMEOUT_SECONDS)
            self._clients[source] = client
        return client

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()
        self._clients.clear()


def rest_outcome(response: Response) -> str:
    return OK if response.is_success else str(response.status_code)


def grpc_outcome(error: grpc.aio.AioRpcError) -> str:
    return error.code().name


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def grpc_bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def channel(address: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(address, options=GRPC_OPTIONS)


class LoginFailed(RuntimeError):
    pass


async def log_in(client: HttpClient, email: str, password: str) -> dict[str, Any]:
    response = await client.post("/v1/auth/login", json_body={"email": email, "password": password})
    if not response.is_success:
        raise LoginFailed(f"login of {email} answered {response.status_code}: {response.text[:200]}")
    return response.json()


class TokenPool:
    """Access tokens of seeded users, from real logins (each from its own address)."""

    def __init__(self, rest: RestClients, password: str, addresses: Addresses) -> None:
        self.rest = rest
        self.password = password
        self.addresses = addresses
        self._tokens: dict[str, tuple[float, str]] = {}

    async def token(self, user: SeededUser) -> str:
        cached = self._tokens.get(user.user_id)
        if cached and time.monotonic() - cached[0] < TOKEN_REFRESH_SECONDS:
            return cached[1]
        answer = await log_in(self.rest.get(self.addresses.next()), user.email, self.password)
        self._tokens[user.user_id] = (time.monotonic(), answer["access_token"])
        return answer["access_token"]

    async def tokens(self, users: Iterable[SeededUser]) -> list[str]:
        return [await self.token(user) for user in users]
