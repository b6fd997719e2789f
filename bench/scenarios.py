"""The scenarios of issue 5, in the order they run: reads before writes (so that
reporting is idle while reads are measured), the bulk import last (its events keep
reporting busy for a while)."""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import json
import random
import time
from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from itertools import count, cycle

import grpc
from nats.aio.msg import Msg

from bench import wrk
from bench.api import (
    Addresses,
    bearer,
    channel,
    grpc_bearer,
    grpc_outcome,
    rest_outcome,
)
from bench.context import LOGIN_BLOCK, THROTTLE_BLOCK, Bench, Target, p99_at_most
from bench.load import Call
from bench.seed import SeededUser
from bench.stats import OK, LatencySummary, Measurement, ScenarioResult
from expense.auth.v1 import auth_pb2, auth_pb2_grpc
from expense.echo.v1 import echo_pb2, echo_pb2_grpc
from expense.events.v1 import events_pb2
from expense.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from expense.reporting.v1 import reporting_pb2, reporting_pb2_grpc
from services.kit.domain.ids import new_id
from services.kit.domain.money import format_amount

Scenario = Callable[[Bench], Awaitable[None]]
RPC_TIMEOUT_SECONDS = 30.0
IMPORT_TIMEOUT_SECONDS = 300.0
LAG_VISIBILITY_TIMEOUT_SECONDS = 60.0
THROTTLED = "429"


# ------------------------------------------------------------------ helpers


def month_starts(today: date, months: int) -> list[date]:
    """First days of the `months` months up to today's, newest first."""
    first = today.replace(day=1)
    starts = []
    for _ in range(months):
        starts.append(first)
        first = (first - timedelta(days=1)).replace(day=1)
    return starts


def month_end(start: date) -> date:
    return start.replace(day=calendar.monthrange(start.year, start.month)[1])


def heavy_months(bench: Bench) -> list[date]:
    return month_starts(bench.today, 12 * bench.seed_years)


async def _rpc(awaitable: Awaitable[object]) -> str:
    try:
        await awaitable
    except grpc.aio.AioRpcError as error:
        return grpc_outcome(error)
    return OK


# ------------------------------------------------------------------ baseline


BASELINE = "echo (baseline)"
ECHO_BODY = json.dumps({"message": "hello"})


async def baseline(bench: Bench) -> None:
    """The echo service: the same kit, the same Envoy, no work."""
    await _echo_closed_loops(bench, "")
    client = bench.rest.get()

    async def echo_rest() -> str:
        return rest_outcome(await client.post("/v1/echo", content=ECHO_BODY))

    for rate in bench.profile.open_loop_rates:
        await bench.open_step(BASELINE, f"REST {rate:g}/s", echo_rest, rate)


async def baseline_again(bench: Bench, scenario: str) -> None:
    """The baseline's closed loops measured again just before `scenario`'s, unless
    nothing but the baseline ran since: the machine's speed drifts within a run
    (echo REST 2,766 to 4,296 req/s within an hour on one machine), and a ratio is
    only as good as a baseline measured under the same conditions."""
    if bench.ran_since_baseline(BASELINE):
        await _echo_closed_loops(bench, f", before {scenario}")


async def _echo_closed_loops(bench: Bench, when: str) -> None:
    connections = bench.profile.write_connections
    await bench.wrk_step(
        BASELINE, f"REST{when}", [wrk.Variant("POST", "/v1/echo", body=ECHO_BODY)], connections, baseline=True
    )
    async with channel(bench.mesh.address("echo")) as echo_channel:
        stub = echo_pb2_grpc.EchoServiceStub(echo_channel)
        request = echo_pb2.EchoRequest(message="hello")

        def echo() -> Awaitable[str]:
            return _rpc(stub.Echo(request, timeout=RPC_TIMEOUT_SECONDS))

        await bench.closed_step(BASELINE, f"gRPC{when}", echo, connections, baseline=True)


# ------------------------------------------------------------------ list


async def list_expenses(bench: Bench) -> None:
    """One page (50) of the heavy user's expenses in one month, months rotating."""
    profile = bench.profile
    heavy = bench.seed.heavy
    token = await bench.tokens.token(heavy)
    months = heavy_months(bench)
    paths = [f"/v1/expenses?from={m}&to={month_end(m)}&page_size=50" for m in months]
    target = p99_at_most(bench.targets.list_max_p99_ms)
    variants = [wrk.Variant("GET", path, token=token) for path in paths]
    await bench.wrk_step("list month page", "REST", variants, profile.read_connections, target)

    async with channel(bench.mesh.address("ledger")) as ledger_channel:
        stub = ledger_pb2_grpc.LedgerServiceStub(ledger_channel)
        requests = cycle(
            ledger_pb2.ListExpensesRequest(
                page_size=50, **{"from": m.isoformat(), "to": month_end(m).isoformat()}
            )
            for m in months
        )
        metadata = grpc_bearer(token)

        def page() -> Awaitable[str]:
            return _rpc(stub.ListExpenses(next(requests), metadata=metadata, timeout=RPC_TIMEOUT_SECONDS))

        await bench.closed_step("list month page", "gRPC", page, profile.read_connections, target=target)
    client = bench.rest.get()
    rest_paths = cycle(paths)

    async def page_rest() -> str:
        return rest_outcome(await client.get(next(rest_paths), headers=bearer(token)))

    for rate in profile.open_loop_rates:
        await bench.open_step("list month page", f"REST {rate:g}/s", page_rest, rate, target=target)


# ------------------------------------------------------------------ summaries


def _summary_path(period: str, day: date) -> str:
    return f"/v1/reports/summary?period={period}&date={day.isoformat()}"


async def summaries_cached(bench: Bench) -> None:
    """This month's and this year's summary of the heavy user, answered from Redis
    (the warm-up fills the cache; nothing invalidates it meanwhile)."""
    profile = bench.profile
    heavy = bench.seed.heavy
    token = await bench.tokens.token(heavy)
    target = p99_at_most(bench.targets.summary_cached_max_p99_ms)
    await baseline_again(bench, "summaries cached")
    async with channel(bench.mesh.address("reporting")) as reporting_channel:
        stub = reporting_pb2_grpc.ReportingServiceStub(reporting_channel)
        metadata = grpc_bearer(token)
        for period in ("month", "year"):
            variants = [wrk.Variant("GET", _summary_path(period, bench.today), token=token)]
            await bench.wrk_step(
                f"summary {period} cached", "REST", variants, profile.read_connections, target
            )
            request = reporting_pb2.GetSummaryRequest(period=period, date=bench.today.isoformat())

            def summary(request: reporting_pb2.GetSummaryRequest = request) -> Awaitable[str]:
                return _rpc(stub.GetSummary(request, metadata=metadata, timeout=RPC_TIMEOUT_SECONDS))

            await bench.closed_step(
                f"summary {period} cached", "gRPC", summary, profile.read_connections, target=target
            )


async def summaries_uncached(bench: Bench) -> None:
    """Every request misses the cache: just before it is sent, the user's report
    version in Redis is replaced (what reporting does when an event for the user is
    applied), and the period rotates over the 5 years. The step counts the cache
    entries written meanwhile: one per miss."""
    profile = bench.profile
    heavy = bench.seed.heavy
    token = await bench.tokens.token(heavy)
    client = bench.rest.get()
    target = p99_at_most(bench.targets.summary_uncached_max_p99_ms)
    version_key = f"{bench.mesh.redis_prefix}:reporting:report-version:{heavy.user_id}"
    entries = f"{bench.mesh.redis_prefix}:reporting:report:{heavy.user_id}:*"

    def missing_summaries(period: str) -> Call:
        days = [m + timedelta(days=14) for m in heavy_months(bench)]
        if period == "year":
            days = sorted({date(day.year, 6, 15) for day in days})
        paths = cycle([_summary_path(period, day) for day in days])

        async def summary() -> str:
            await bench.redis.set(version_key, new_id(), ex=86_400)
            return rest_outcome(await client.get(next(paths), headers=bearer(token)))

        return summary

    for period in ("month", "year"):
        summary = missing_summaries(period)
        for rate in profile.uncached_rates:
            before = await _count_keys(bench, entries)
            row = await bench.open_step(
                f"summary {period} uncached", f"REST {rate:g}/s", summary, rate, target=target
            )
            written = await _count_keys(bench, entries) - before
            row.extra["cache_entries_written"] = written
            total = row.requests + int(profile.warmup_seconds * rate)
            row.notes.append(f"{written} cache entries written for {total} requests (one per miss)")


async def _count_keys(bench: Bench, pattern: str) -> int:
    return len([key async for key in bench.redis.scan_iter(pattern, count=1000)])


# ------------------------------------------------------------------ create


def _create_body(category_id: str, day: date, request_id: str) -> str:
    return json.dumps(
        {
            "request_id": request_id,
            "amount": "249.50",
            "currency": "INR",
            "spent_on": day.isoformat(),
            "category_id": category_id,
            "merchant": "Bench Cafe",
        }
    )


def _writers(bench: Bench) -> list[SeededUser]:
    return bench.seed.of_role("light")[: bench.profile.token_users]


async def create_expense(bench: Bench) -> None:
    """POST /v1/expenses: JWT verified by Envoy and the ledger, a PostgreSQL commit of
    the expense, its audit entry, its idempotency key and its outbox event."""
    profile = bench.profile
    targets = bench.targets
    writers = _writers(bench)
    tokens = await bench.tokens.tokens(writers)
    categories = [next(iter(user.categories.values())) for user in writers]
    variants = [
        wrk.Variant(
            "POST", "/v1/expenses", token=token, body=_create_body(category, bench.today, wrk.REQUEST_ID_SLOT)
        )
        for token, category in zip(tokens, categories, strict=True)
    ]
    create_target = Target(
        f"≥ {targets.create_min_rps:g} req/s, ≥ {targets.create_min_ratio:g}× baseline, "
        f"p99 ≤ {targets.create_max_p99_ms:g} ms",
        lambda r: (
            r.throughput >= targets.create_min_rps
            and (r.ratio or 0) >= targets.create_min_ratio
            and r.latency.p99 <= targets.create_max_p99_ms
        ),
    )
    await baseline_again(bench, "create expense")
    created = await bench.wrk_step(
        "create expense", "REST", variants, profile.write_connections, create_target
    )
    await _check_committed(bench, created, profile.write_connections)
    await bench.settle()

    ids = count()
    async with channel(bench.mesh.address("ledger")) as ledger_channel:
        stub = ledger_pb2_grpc.LedgerServiceStub(ledger_channel)
        writer_cycle = cycle(list(zip(tokens, categories, strict=True)))

        def create_grpc() -> Awaitable[str]:
            token, category = next(writer_cycle)
            request = ledger_pb2.CreateExpenseRequest(
                request_id=f"{bench.nonce}-g-{next(ids)}",
                amount="249.50",
                currency="INR",
                spent_on=bench.today.isoformat(),
                category_id=category,
                merchant="Bench Cafe",
            )
            return _rpc(stub.CreateExpense(request, metadata=grpc_bearer(token), timeout=RPC_TIMEOUT_SECONDS))

        await bench.closed_step("create expense", "gRPC", create_grpc, profile.write_connections)
    await bench.settle()

    client = bench.rest.get()
    rest_cycle = cycle(list(zip(tokens, categories, strict=True)))

    async def create_rest() -> str:
        token, category = next(rest_cycle)
        body = _create_body(category, bench.today, f"{bench.nonce}-o-{next(ids)}")
        return rest_outcome(await client.post("/v1/expenses", content=body, headers=bearer(token)))

    for rate in profile.open_loop_rates:
        await bench.open_step(
            "create expense",
            f"REST {rate:g}/s",
            create_rest,
            rate,
            target=p99_at_most(targets.create_max_p99_ms),
        )
        await bench.settle()


async def _check_committed(bench: Bench, row: ScenarioResult, in_flight: int) -> None:
    """No cheating: as many creates committed as were answered 2xx (plus at most the
    requests still in flight when wrk stopped), each with its own idempotency key."""
    cursor = await bench.db.execute(
        "SELECT count(*) FROM ledger.idempotency_keys WHERE method = 'CreateExpense' AND request_id LIKE %s",
        (row.extra["request_id_prefix"] + "%",),
    )
    found = await cursor.fetchone()
    committed = int(found[0]) if found else 0
    answered = row.outcomes.get(OK, 0)
    row.extra["committed"] = committed
    row.notes.append(f"{committed} creates committed in PostgreSQL for {answered} answered 2xx")
    if not answered <= committed <= answered + in_flight:
        row.errors += abs(committed - answered)
        row.passed = False


# ------------------------------------------------------------------ event lag


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

    def lags_ms(self, responses: list[tuple[float, str]], initial: int) -> tuple[list[float], int]:
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


async def event_lag(bench: Bench) -> None:
    """Creates at fixed rates (open loop, REST); for each, the time from its response
    to the month summary counting it."""
    user = bench.seed.of_role("lag")[0]
    for rate in bench.profile.lag_rates:
        await _lag_at(bench, user, rate)


async def _lag_at(bench: Bench, user: SeededUser, rate: float) -> None:
    profile = bench.profile
    token = await bench.tokens.token(user)
    category = next(iter(user.categories.values()))
    probe = LagProbe(bench, user, token)
    subject = f"{bench.mesh.event_prefix}.events.expense.created"
    subscription = await bench.nats.subscribe(subject, cb=_sync_callback(probe.on_event))
    stop = asyncio.Event()
    poller = asyncio.create_task(probe.poll_until(stop))
    await asyncio.sleep(0.5)
    initial = probe.seen()
    responses: list[tuple[float, str]] = []
    client = bench.rest.get()
    ids = count()

    async def create() -> str:
        # The rate in the id: each step's request ids are new (a repeated id is a replay).
        body = _create_body(category, bench.today, f"{bench.nonce}-lag{rate:g}-{next(ids)}")
        response = await client.post("/v1/expenses", content=body, headers=bearer(token))
        if response.is_success:
            responses.append((time.perf_counter(), response.json()["expense_id"]))
        return rest_outcome(response)

    created = await bench.open_step(
        "event lag (create)",
        f"REST {rate:g}/s",
        create,
        rate,
        seconds=profile.lag_seconds,
        warmup=False,
    )
    probe.expected = initial + len(responses)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(probe.caught_up.wait(), LAG_VISIBILITY_TIMEOUT_SECONDS)
    stop.set()
    await poller
    await subscription.unsubscribe()
    lags, unseen = probe.lags_ms(responses, initial)
    publish = [
        (probe.published[expense_id] - answered) * 1000
        for answered, expense_id in responses
        if expense_id in probe.published
    ]
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
        publish_lag_ms=LatencySummary.of(publish).__dict__,
        poll_interval_ms=profile.lag_poll_ms,
        poll_latency_ms=poll_latency.__dict__,
        poll_errors=probe.poll_errors,
    )
    row.notes.append(
        f"resolution: a poll every {profile.lag_poll_ms:g} ms (p50 poll {poll_latency.p50:.1f} ms); "
        "lag runs from the create's response to the first poll answered after it that counts it"
    )
    row.notes.append(
        "published on NATS after the response: p50 {p50:.1f} ms, p99 {p99:.1f} ms".format(
            **LatencySummary.of(publish).__dict__
        )
    )
    bench.record(row, p99_at_most(bench.targets.event_lag_max_p99_ms))
    await bench.settle()


def _sync_callback(handler: Callable[[Msg], None]) -> Callable[[Msg], Awaitable[None]]:
    async def callback(message: Msg) -> None:
        handler(message)

    return callback


# ------------------------------------------------------------------ login


async def login(bench: Bench) -> None:
    """argon2id logins through the gateway, each from its own client address (the
    per-address throttle is not what is measured here), then the throttles."""
    profile = bench.profile
    users = cycle(bench.seed.of_role("light"))
    addresses = Addresses(LOGIN_BLOCK)
    password = bench.seed.password

    async def log_in() -> str:
        user = next(users)
        client = bench.rest.get(addresses.next())
        response = await client.post("/v1/auth/login", json_body={"email": user.email, "password": password})
        return rest_outcome(response)

    for rate in profile.login_rates:
        await bench.open_step("login (argon2id)", f"REST {rate:g}/s", log_in, rate)
    await bench.closed_step(
        "login (argon2id)", "REST", log_in, profile.login_connections, path="REST", tool="h11"
    )
    await throttles(bench)


async def throttles(bench: Bench) -> None:
    """Attempts beyond the configured limits get 429 (REST) / RESOURCE_EXHAUSTED (gRPC)."""
    auth = bench.settings.auth
    extra = bench.profile.rate_limit_extra_attempts
    user = bench.seed.of_role("light")[0]
    addresses = Addresses(THROTTLE_BLOCK)

    async def rest_attempts(source: str, password: str, attempts: int) -> Measurement:
        client = bench.rest.get(source)
        measurement = Measurement()
        started = time.perf_counter()
        for _ in range(attempts):
            sent = time.perf_counter()
            response = await client.post(
                "/v1/auth/login", json_body={"email": user.email, "password": password}
            )
            measurement.add((time.perf_counter() - sent) * 1000, rest_outcome(response))
        measurement.seconds = time.perf_counter() - started
        return measurement

    per_ip = auth.login_attempts_per_ip
    measured = await rest_attempts(addresses.next(), bench.seed.password, per_ip + extra)
    _throttle_row(
        bench,
        "per address",
        f"{per_ip} logins/{auth.login_ip_window_seconds}s",
        measured,
        OK,
        per_ip,
        THROTTLED,
        "REST",
    )

    per_account = auth.login_failures_per_account_ip
    measured = await rest_attempts(addresses.next(), "wrong password", per_account + extra)
    _throttle_row(
        bench,
        "failures per account+address",
        f"{per_account} failures/{auth.login_failure_window_seconds}s",
        measured,
        "401",
        per_account,
        THROTTLED,
        "REST",
    )

    async with channel(bench.mesh.address("auth")) as auth_channel:
        stub = auth_pb2_grpc.AuthServiceStub(auth_channel)
        # Straight to the service port the client address comes from x-forwarded-for
        # (only gateways reach service ports); a fresh address for this check.
        metadata = (("x-forwarded-for", f"10.255.{random.randrange(256)}.{random.randrange(1, 255)}"),)
        request = auth_pb2.LogInRequest(email=user.email, password=bench.seed.password)
        measurement = Measurement()
        started = time.perf_counter()
        for _ in range(per_ip + extra):
            sent = time.perf_counter()
            outcome = await _rpc(stub.LogIn(request, metadata=metadata, timeout=RPC_TIMEOUT_SECONDS))
            measurement.add((time.perf_counter() - sent) * 1000, outcome)
        measurement.seconds = time.perf_counter() - started
    _throttle_row(
        bench,
        "per address",
        f"{per_ip} logins/{auth.login_ip_window_seconds}s",
        measurement,
        OK,
        per_ip,
        "RESOURCE_EXHAUSTED",
        "gRPC",
    )


def _throttle_row(
    bench: Bench,
    variant: str,
    limit: str,
    measurement: Measurement,
    allowed_outcome: str,
    allowed: int,
    refused_outcome: str,
    path: str,
) -> None:
    attempts = measurement.requests
    expected = {allowed_outcome: allowed, refused_outcome: attempts - allowed}
    got = dict(measurement.outcomes)
    # Answers beyond what the limit allows for: too many allowed, too many refused, others.
    mismatched = sum(max(0, n - expected.get(outcome, 0)) for outcome, n in got.items())
    row = ScenarioResult.from_measurement(
        "login throttle",
        f"{variant} ({path})",
        f"sequential, {attempts} attempts",
        measurement,
        expected=frozenset(expected),
        path=path,
    )
    row.errors = mismatched
    row.notes.append(f"limit {limit}: expected {expected}, got {got}")
    bench.record(
        row, Target(f"exactly {allowed} allowed, the rest {refused_outcome}", lambda r: mismatched == 0)
    )


# ------------------------------------------------------------------ import


async def bulk_import(bench: Bench) -> None:
    """ImportExpenses (gRPC, straight to the ledger) in batches, a few in flight; then
    how long until reporting has applied every imported expense."""
    profile = bench.profile
    user = bench.seed.of_role("import")[0]
    token = await bench.tokens.token(user)
    categories = list(user.categories.values())
    chooser = random.Random(profile.import_rows)
    span = (bench.today - date(bench.today.year - bench.seed_years, 1, 1)).days
    rows = [
        ledger_pb2.ImportRow(
            request_id=f"{bench.nonce}-imp-{index}",
            amount=f"{chooser.randint(10, 5000)}.{chooser.randint(0, 99):02d}",
            currency="INR",
            spent_on=(bench.today - timedelta(days=chooser.randrange(span))).isoformat(),
            category_id=chooser.choice(categories),
            merchant=chooser.choice(("Amazon", "Swiggy", "Uber", "DMart", "Airtel")),
        )
        for index in range(profile.import_rows)
    ]
    batches = [
        rows[start : start + profile.import_batch_rows]
        for start in range(0, len(rows), profile.import_batch_rows)
    ]
    queue: asyncio.Queue[list[ledger_pb2.ImportRow]] = asyncio.Queue()
    for batch in batches:
        queue.put_nowait(batch)
    calls = Measurement()
    created = 0
    metadata = grpc_bearer(token)
    async with channel(bench.mesh.address("ledger")) as ledger_channel:
        stub = ledger_pb2_grpc.LedgerServiceStub(ledger_channel)

        async def worker() -> None:
            nonlocal created
            while not queue.empty():
                batch = queue.get_nowait()
                sent = time.perf_counter()
                try:
                    answer = await stub.ImportExpenses(
                        ledger_pb2.ImportExpensesRequest(rows=batch),
                        metadata=metadata,
                        timeout=IMPORT_TIMEOUT_SECONDS,
                    )
                except grpc.aio.AioRpcError as error:
                    calls.add((time.perf_counter() - sent) * 1000, grpc_outcome(error))
                    continue
                created += answer.created_count
                outcome = OK if answer.created_count == len(batch) else "rows not created"
                calls.add((time.perf_counter() - sent) * 1000, outcome)

        async with bench.measuring("bulk import", "gRPC", 60.0) as usage:
            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(profile.import_concurrency)))
            seconds = time.perf_counter() - started
    calls.seconds = seconds
    row = ScenarioResult.from_measurement(
        "bulk import",
        f"{profile.import_rows} rows (gRPC)",
        f"{profile.import_concurrency} calls in flight, {profile.import_batch_rows} rows/call",
        calls,
        path="gRPC",
        unit="rows/s",
    )
    row.requests = created
    row.throughput = created / seconds if seconds else 0.0
    row.extra.update(calls=len(batches), created=created)
    row.notes.append("latency columns are per ImportExpenses call")
    caught_up = await bench.settle()
    row.extra["reports_caught_up_seconds"] = round(seconds + caught_up, 1)
    row.notes.append(
        f"reporting had applied every imported expense {seconds + caught_up:.1f} s after the start"
    )
    counted = await _imported_in_reports(bench, user, token)
    row.extra["counted_in_reports"] = counted
    if counted != created:
        row.notes.append(f"reports count {counted} imported expenses, {created} were created")
        row.errors += abs(created - counted)
    bench.record(
        row,
        Target(
            f"≤ {bench.targets.import_max_seconds:g} s",
            lambda r: r.seconds <= bench.targets.import_max_seconds,
        ),
        usage,
    )


async def _imported_in_reports(bench: Bench, user: SeededUser, token: str) -> int:
    """The user's expenses counted by the yearly summaries (cache bypassed)."""
    version_key = f"{bench.mesh.redis_prefix}:reporting:report-version:{user.user_id}"
    await bench.redis.set(version_key, new_id(), ex=86_400)
    client = bench.rest.get()
    total = 0
    for year in range(bench.today.year - bench.seed_years, bench.today.year + 1):
        response = await client.get(_summary_path("year", date(year, 6, 15)), headers=bearer(token))
        response.raise_for_status()
        total += sum(int(block["count"]) for block in response.json()["currencies"])
    return total


# ------------------------------------------------------------------ data check


async def verify_reports(bench: Bench) -> dict[str, object]:
    """One number, two ways: the heavy user's INR total and count of last year from
    the ledger's table and from the yearly summary."""
    heavy = bench.seed.heavy
    year = bench.today.year - 1
    cursor = await bench.db.execute(
        "SELECT count(*), coalesce(sum(amount_minor), 0) FROM ledger.expenses WHERE user_id = %s "
        "AND currency = 'INR' AND delete_time IS NULL AND spent_on BETWEEN %s AND %s",
        (heavy.user_id, date(year, 1, 1), date(year, 12, 31)),
    )
    row = await cursor.fetchone()
    assert row is not None
    expected = {"count": int(row[0]), "total": format_amount(int(row[1]), "INR")}
    token = await bench.tokens.token(heavy)
    response = await bench.rest.get().get(_summary_path("year", date(year, 6, 15)), headers=bearer(token))
    response.raise_for_status()
    block = next((b for b in response.json()["currencies"] if b["currency"] == "INR"), {})
    reported = {"count": int(block.get("count", 0)), "total": block.get("total", "")}
    return {"year": year, "ledger": expected, "summary": reported, "match": expected == reported}


SCENARIOS: dict[str, Scenario] = {
    "baseline": baseline,
    "list": list_expenses,
    "summary-cached": summaries_cached,
    "summary-uncached": summaries_uncached,
    "create": create_expense,
    "event-lag": event_lag,
    "login": login,
    "import": bulk_import,
}
