"""What the HTTP fakes share: an aiohttp app on a free loopback port, and the switches a
test flips to make the provider fail (an outage answering 5xx, a stall, a rate limit)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Self

import httpx
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
        # Requests that reached the fake (counted before any stall): a request is "at the provider".
        self.requests_received = 0
        self._runner: web.AppRunner | None = None
        self._port = 0
        # What the fake does on its own after answering (a provider's status callbacks).
        self._background: set[asyncio.Task[Any]] = set()
        # (what, HTTP status of the answer; 0: no answer) for each callback posted by itself.
        self.callback_answers: list[tuple[str, int]] = []
        self._http: httpx.AsyncClient | None = None

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
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self._http is not None:
            await self._http.aclose()
        await self._runner.cleanup()

    async def post_callback(self, url: str, **kwargs: Any) -> httpx.Response:
        """POSTs to a callback URL (ours, usually the gateway) on one pooled client."""
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=10)
        return await self._http.post(url, **kwargs)

    async def report(self, what: str, post: Coroutine[Any, Any, httpx.Response]) -> None:
        try:
            answer = (await post).status_code
        except httpx.HTTPError:
            answer = 0
        self.callback_answers.append((what, answer))

    def in_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def settled(self) -> None:
        """Waits until what the fake does on its own (callbacks) is done."""
        while self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    @web.middleware
    async def _failures(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.requests_received += 1
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
