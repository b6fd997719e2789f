"""What the HTTP fakes share: an aiohttp app on a free loopback port, and the switches a
test flips to make the provider fail (an outage answering 5xx, a stall, a rate limit)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Self

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class FakeHttpServer:
    def __init__(self) -> None:
        # While set, every API request is answered with this status (and `failure_body`),
        # for `failures_left` more requests when that is set, then the fake recovers by itself.
        self.failing_status: int | None = None
        self.failure_body: dict[str, object] = {}
        self.failure_headers: dict[str, str] = {}
        self.failures_left: int | None = None
        # Requests answered while failing: how many attempts the outage saw.
        self.failed_requests = 0
        # Seconds to stall before answering: a provider that accepted the connection but hangs.
        self.delay_seconds = 0.0
        self._runner: web.AppRunner | None = None
        self._port = 0

    def routes(self) -> list[web.RouteDef]:
        raise NotImplementedError

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def outage(
        self,
        status: int = 500,
        body: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        requests: int | None = None,
    ) -> None:
        """Answers `status` from now on (for `requests` requests if given, else until recover())."""
        self.failing_status = status
        self.failure_body = body or self.default_failure_body(status)
        self.failure_headers = headers or {}
        self.failures_left = requests

    def default_failure_body(self, status: int) -> dict[str, object]:
        return {"message": "fake outage", "status": status}

    def recover(self) -> None:
        self.failing_status = None
        self.failures_left = None

    async def __aenter__(self) -> Self:
        app = web.Application(middlewares=[self._failures])
        app.add_routes(self.routes())
        # handler_cancellation: a stalled answer ends with its client (a timed-out adapter),
        # so stopping the fake does not wait for it.
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    @web.middleware
    async def _failures(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)
        status = self.failing_status
        if status is None:
            return await handler(request)
        self.failed_requests += 1
        if self.failures_left is not None:
            self.failures_left -= 1
            if self.failures_left <= 0:
                self.recover()
        return web.json_response(self.failure_body, status=status, headers=self.failure_headers)
