"""Circuit breakers on calls between services (purgatory's asyncio breaker), one per peer,
as a client interceptor on the peer's channel: every unary call to that peer goes through it.

A call counts as failed when the peer did not answer (UNAVAILABLE, DEADLINE_EXCEEDED) or
failed itself (INTERNAL, UNKNOWN, DATA_LOSS); an answer such as NOT_FOUND is a success: the
peer works. After `failure_threshold` failures in a row the breaker opens, and calls fail at
once with UNAVAILABLE (`CircuitOpen`) for `open_seconds`, so callers go to their fallback
without waiting for a deadline; then calls try again (half-open), and the first to finish
closes it (a success) or opens it again (a failure).

Every state change is logged (logger `services.kit.grpc.breakers`, fields `peer`, `state`)
and counted in `TRANSITIONS` ((peer, state) -> count) for metrics."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

import grpc
from purgatory import AsyncCircuitBreakerFactory
from purgatory.domain.model import OpenedState

from services.kit.config.settings import BreakerSettings

log = logging.getLogger(__name__)

# Codes that mean the peer is down, overloaded or broken; any other answer is the peer working.
PEER_FAILURES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DATA_LOSS,
    }
)
# (peer, state) -> how many times a breaker of this process entered that state.
TRANSITIONS: Counter[tuple[str, str]] = Counter()


class CircuitOpen(grpc.aio.AioRpcError):
    """Raised instead of calling a peer whose breaker is open: UNAVAILABLE, as a peer that
    does not answer, so callers' fallbacks need no second case."""

    def __init__(self, peer: str) -> None:
        super().__init__(
            grpc.StatusCode.UNAVAILABLE,
            grpc.aio.Metadata(),
            grpc.aio.Metadata(),
            details=f"circuit breaker open: {peer} is failing",
        )


def is_peer_failure(error: BaseException) -> bool:
    """True when `error` says the peer did not answer or failed (not the caller's mistake)."""
    return isinstance(error, grpc.aio.AioRpcError) and error.code() in PEER_FAILURES


def _answered(error: BaseException) -> bool:
    return not is_peer_failure(error)


class Breaker:
    """The breaker of one peer (`peer` names it in logs and counts). `exclude`: the
    exceptions (purgatory's form) that mean the peer answered; by default a gRPC answer."""

    def __init__(self, peer: str, settings: BreakerSettings, exclude: list[Any] | None = None) -> None:
        self.peer = peer
        self._factory = AsyncCircuitBreakerFactory(
            default_threshold=settings.failure_threshold,
            default_ttl=settings.open_seconds,
            # The peer answered (NOT_FOUND, INVALID_ARGUMENT...). A call cancelled because
            # our caller gave up on a slow peer counts as failed.
            exclude=exclude if exclude is not None else [(grpc.aio.AioRpcError, _answered)],
        )
        self._factory.add_listener(self._changed)

    @property
    def state(self) -> str:
        """One of closed, opened, half-opened (closed before the first call)."""
        contexts = self._factory.uow.contexts
        context = getattr(contexts, "breakers", {}).get(self.peer)
        return "closed" if context is None else str(context.state)

    async def call(self, make_call: Callable[[], Any]) -> Any:
        """Awaits make_call()'s result through the breaker; CircuitOpen while it is open."""
        breaker = await self._factory.get_breaker(self.peer)
        try:
            async with breaker:
                return await make_call()
        except OpenedState:
            raise CircuitOpen(self.peer) from None

    def _changed(self, name: str, kind: str, event: Any) -> None:
        if kind != "state_changed":
            return
        state = str(event.state)
        TRANSITIONS[(self.peer, state)] += 1
        # Opening is what an operator must see; half-open and closed tell it is over.
        level = logging.WARNING if state == "opened" else logging.INFO
        log.log(level, f"circuit breaker {state}", extra={"peer": self.peer, "state": state})


# (peer, target) -> its breaker: one per peer in a process, however many clients call it.
_BREAKERS: dict[tuple[str, str], Breaker] = {}


def breaker_for(
    peer: str, target: str, settings: BreakerSettings, exclude: list[Any] | None = None
) -> Breaker:
    key = (peer, target)
    if key not in _BREAKERS:
        _BREAKERS[key] = Breaker(peer, settings, exclude)
    return _BREAKERS[key]


class BreakerInterceptor(grpc.aio.UnaryUnaryClientInterceptor):
    """Each unary call on the channel, gRPC's own retries included, is one breaker sample;
    a call without a deadline of its own gets `timeout_seconds`."""

    def __init__(self, breaker: Breaker, timeout_seconds: float) -> None:
        self.breaker = breaker
        self.timeout_seconds = timeout_seconds

    async def intercept_unary_unary(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
        if client_call_details.timeout is None:
            client_call_details = client_call_details._replace(timeout=self.timeout_seconds)

        async def finished_call() -> Any:
            call = await continuation(client_call_details, request)
            await call  # raises the call's error: the breaker counts it
            return call

        return await self.breaker.call(finished_call)
