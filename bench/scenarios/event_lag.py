"""Event lag: from a create's response to the month summary counting it, through the
outbox, NATS and reporting's consumer."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from itertools import count

import grpc
from nats.aio.msg import Msg

from bench.api import bearer, channel, grpc_bearer, rest_outcome
from bench.context import Bench, p99_at_most
from bench.scenarios.common import RPC_TIMEOUT_SECONDS, create_body
from bench.seed import SeededUser
from bench.settings import Profile
from bench.stats import OK, LatencySummary, Measurement, ScenarioResult
from expense.events.v1 import events_pb2
from expense.reporting.v1 import reporting_pb2, reporting_pb2_grpc

LAG_VISIBILITY_TIMEOUT_SECONDS = 60.0

# A create answered 2xx: when (perf_counter) and the expense's id.
Response = tuple[float, str]


class LagProbe:
    """Polls one user's month summary (gRPC, straight to reporting) and notes when
    its expense count grew; listens on NATS for when each event was published."""

    def __init__(self, bench: Bench, user: SeededUser, token: str) -> None:
        self.bench = bench
        self.user = user
        self.metadata = grpc_bearer(token)
        self.interval = bench.profile.lag_poll_ms / 1000
        self.polls: list[tuple[float, int, float]] = []  # (answered at, count, poll latency)
        self.published: dict[str, float] = {}
        self.poll_errors = 0
        self.expected: int | None = None
        self.caught_up = asyncio.Event()

    def on_event(self, message: Msg) -> None:
        envelope = events_pb2.EventEnvelope.FromString(message.data)
        if envelope.user_id != self.user.user_id:
            return
        created = events_pb2.ExpenseCreated()
        envelope.payload.Unpack(created)
        self.published.setdefault(created.expense.expense_id, time.perf_counter())

    async def poll_until(self, stop: asyncio.Event) -> None:
        async with channel(self.bench.mesh.address("reporting")) as reporting_channel:
            stub = reporting_pb2_grpc.ReportingServiceStub(reporting_channel)
            request = reporting_pb2.GetSummaryRequest(period="month", date=self.bench.today.isoformat())
            while not stop.is_set():
                sent = time.perf_counter()
                try:
                    summary = await stub.GetSummary(
                        request, metadata=self.metadata, timeout=RPC_TIMEOUT_SECONDS
                    )
                except grpc.aio.AioRpcError:
                    self.poll_errors += 1
                else:
                    answered = time.perf_counter()
                    seen = sum(block.count for block in summary.currencies)
                    self.polls.append((answered, seen, answered - sent))
                    if self.expected is not None and seen >= self.expected:
                        self.caught_up.set()
                await asyncio.sleep(max(0.0, sent + self.interval - time.perf_counter()))

    def seen(self) -> int:
        return self.polls[-1][1] if self.polls else 0

    def lags_ms(self, responses: list[Response], initial: int) -> tuple[list[float], int]:
        """Per create (in answer order): the first poll answered after its response
        that counts it; reporting applies events in commit order, so the k-th answer
        is visible once the count reached initial + k. Also how many never showed."""
        lags, unseen, poll = [], 0, 0
        for rank, (answered, _) in enumerate(sorted(responses), start=1):
            while poll < len(self.polls) and (
                self.polls[poll][0] < answered or self.polls[poll][1] < initial + rank
            ):
                poll += 1
            if poll == len(self.polls):
                unseen += 1
                continue
            lags.append((self.polls[poll][0] - answered) * 1000)
        return lags, unseen

    def publish_lags_ms(self, responses: list[Response]) -> list[float]:
        """Per create seen on NATS: from its response to its event's publication."""
        return [
            (self.published[expense_id] - answered) * 1000
            for answered, expense_id in responses
            if expense_id in self.published
        ]


async def event_lag(bench: Bench) -> None:
    """Creates at fixed rates (open loop, REST); for each, the time from its response
    to the month summary counting it."""
    user = bench.seed.of_role("lag")[0]
    for rate in bench.profile.lag_rates:
        await _lag_at(bench, user, rate)


async def _lag_at(bench: Bench, user: SeededUser, rate: float) -> None:
    token = await bench.tokens.token(user)
    probe = LagProbe(bench, user, token)
    subject = f"{bench.mesh.event_prefix}.events.expense.created"
    subscription = await bench.nats.subscribe(subject, cb=_sync_callback(probe.on_event))
    stop = asyncio.Event()
    poller = asyncio.create_task(probe.poll_until(stop))
    await asyncio.sleep(0.5)
    initial = probe.seen()
    created, responses = await _create_at(bench, user, token, rate)
    probe.expected = initial + len(responses)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(probe.caught_up.wait(), LAG_VISIBILITY_TIMEOUT_SECONDS)
    stop.set()
    await poller
    await subscription.unsubscribe()
    row = _lag_row(bench.profile, probe, responses, initial, created, rate)
    bench.record(row, p99_at_most(bench.targets.event_lag_max_p99_ms))
    await bench.settle()


async def _create_at(
    bench: Bench, user: SeededUser, token: str, rate: float
) -> tuple[ScenarioResult, list[Response]]:
    """The creates' own step (open loop, REST) and the responses answered 2xx."""
    category = next(iter(user.categories.values()))
    responses: list[Response] = []
    client = bench.rest.get()
    ids = count()

    async def create() -> str:
        # The rate in the id: each step's request ids are new (a repeated id is a replay).
        body = create_body(category, bench.today, f"{bench.nonce}-lag{rate:g}-{next(ids)}")
        response = await client.post("/v1/expenses", content=body, headers=bearer(token))
        if response.is_success:
            responses.append((time.perf_counter(), response.json()["expense_id"]))
        return rest_outcome(response)

    created = await bench.open_step(
        "event lag (create)",
        f"REST {rate:g}/s",
        create,
        rate,
        seconds=bench.profile.lag_seconds,
        warmup=False,
    )
    return created, responses


def _lag_row(
    profile: Profile,
    probe: LagProbe,
    responses: list[Response],
    initial: int,
    created: ScenarioResult,
    rate: float,
) -> ScenarioResult:
    lags, unseen = probe.lags_ms(responses, initial)
    publish = LatencySummary.of(probe.publish_lags_ms(responses))
    poll_latency = LatencySummary.of([latency * 1000 for _, _, latency in probe.polls])
    measurement = Measurement(seconds=created.seconds)
    for lag in lags:
        measurement.add(lag, OK)
    measurement.outcomes["not visible"] += unseen
    row = ScenarioResult.from_measurement(
        "event lag",
        f"create → summary, {rate:g}/s",
        f"open-loop h11, {rate:g}/s",
        measurement,
        unit="events/s",
    )
    row.extra.update(
        created=len(responses),
        create_p99_ms=created.latency.p99,
        publish_lag_ms=publish.__dict__,
        poll_interval_ms=profile.lag_poll_ms,
        poll_latency_ms=poll_latency.__dict__,
        poll_errors=probe.poll_errors,
    )
    row.notes.append(
        f"resolution: a poll every {profile.lag_poll_ms:g} ms (p50 poll {poll_latency.p50:.1f} ms); "
        "lag runs from the create's response to the first poll answered after it that counts it"
    )
    row.notes.append(
        f"published on NATS after the response: p50 {publish.p50:.1f} ms, p99 {publish.p99:.1f} ms"
    )
    return row


def _sync_callback(handler: Callable[[Msg], None]) -> Callable[[Msg], Awaitable[None]]:
    async def callback(message: Msg) -> None:
        handler(message)

    return callback
