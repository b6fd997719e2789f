"""The ledger's hot paths: one month's page of the heavy user's expenses, and creates."""

from __future__ import annotations

from collections.abc import Awaitable, Iterator
from itertools import count, cycle

from bench import wrk
from bench.api import bearer, channel, grpc_bearer, rest_outcome
from bench.context import Bench, Target, p99_at_most
from bench.scenarios.baseline import baseline_again
from bench.scenarios.common import RPC_TIMEOUT_SECONDS, create_body, heavy_months, month_end, rpc_outcome
from bench.seed import SeededUser
from bench.settings import Targets
from bench.stats import OK, ScenarioResult
from expense.ledger.v1 import ledger_pb2, ledger_pb2_grpc

# A writer's access token and the category its creates use.
Writer = tuple[str, str]


async def list_expenses(bench: Bench) -> None:
    """One page (50) of the heavy user's expenses in one month, months rotating."""
    profile = bench.profile
    token = await bench.tokens.token(bench.seed.heavy)
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
            return rpc_outcome(
                stub.ListExpenses(next(requests), metadata=metadata, timeout=RPC_TIMEOUT_SECONDS)
            )

        await bench.closed_step("list month page", "gRPC", page, profile.read_connections, target=target)
    client = bench.rest.get()
    rest_paths = cycle(paths)

    async def page_rest() -> str:
        return rest_outcome(await client.get(next(rest_paths), headers=bearer(token)))

    for rate in profile.open_loop_rates:
        await bench.open_step("list month page", f"REST {rate:g}/s", page_rest, rate, target=target)


def _writers(bench: Bench) -> list[SeededUser]:
    return bench.seed.of_role("light")[: bench.profile.token_users]


def _create_target(targets: Targets) -> Target:
    return Target(
        f"≥ {targets.create_min_rps:g} req/s, ≥ {targets.create_min_ratio:g}× baseline, "
        f"p99 ≤ {targets.create_max_p99_ms:g} ms",
        lambda r: (
            r.throughput >= targets.create_min_rps
            and (r.ratio or 0) >= targets.create_min_ratio
            and r.latency.p99 <= targets.create_max_p99_ms
        ),
    )


async def create_expense(bench: Bench) -> None:
    """POST /v1/expenses: JWT verified by Envoy and the ledger, a PostgreSQL commit of
    the expense, its audit entry, its idempotency key and its outbox event."""
    users = _writers(bench)
    tokens = await bench.tokens.tokens(users)
    categories = [next(iter(user.categories.values())) for user in users]
    writers = list(zip(tokens, categories, strict=True))
    await baseline_again(bench, "create expense")
    await _create_closed_rest(bench, writers)
    await bench.settle()
    ids = count()
    await _create_closed_grpc(bench, writers, ids)
    await bench.settle()
    await _create_open_loops(bench, writers, ids)


async def _create_closed_rest(bench: Bench, writers: list[Writer]) -> None:
    """wrk, each request with its own request id; then the commits are counted."""
    variants = [
        wrk.Variant(
            "POST", "/v1/expenses", token=token, body=create_body(category, bench.today, wrk.REQUEST_ID_SLOT)
        )
        for token, category in writers
    ]
    connections = bench.profile.write_connections
    created = await bench.wrk_step(
        "create expense", "REST", variants, connections, _create_target(bench.targets)
    )
    await _check_committed(bench, created, connections)


async def _create_closed_grpc(bench: Bench, writers: list[Writer], ids: Iterator[int]) -> None:
    async with channel(bench.mesh.address("ledger")) as ledger_channel:
        stub = ledger_pb2_grpc.LedgerServiceStub(ledger_channel)
        writer_cycle = cycle(writers)

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
            return rpc_outcome(
                stub.CreateExpense(request, metadata=grpc_bearer(token), timeout=RPC_TIMEOUT_SECONDS)
            )

        await bench.closed_step("create expense", "gRPC", create_grpc, bench.profile.write_connections)


async def _create_open_loops(bench: Bench, writers: list[Writer], ids: Iterator[int]) -> None:
    client = bench.rest.get()
    rest_cycle = cycle(writers)

    async def create_rest() -> str:
        token, category = next(rest_cycle)
        body = create_body(category, bench.today, f"{bench.nonce}-o-{next(ids)}")
        return rest_outcome(await client.post("/v1/expenses", content=body, headers=bearer(token)))

    target = p99_at_most(bench.targets.create_max_p99_ms)
    for rate in bench.profile.open_loop_rates:
        await bench.open_step("create expense", f"REST {rate:g}/s", create_rest, rate, target=target)
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


# `q` over the heavy user's 100,000 expenses, no date range: a merchant's word, a
# category's name, a tag, a rare word and one that matches nothing (the whole-index case).
SEARCH_TERMS = ("coffee", "fuel", "reimb", "bookmy", "zzqx")


async def list_expenses_by_text(bench: Bench) -> None:
    """One page (50) of the heavy user's expenses matching `q`, terms rotating, as the web
    app asks for it (skip_total_size: it shows no total), then, for comparison, with the
    count of up to 1,000 matches (closed loop only, report only)."""
    token = await bench.tokens.token(bench.seed.heavy)
    target = p99_at_most(bench.targets.list_max_p99_ms)
    counted = [f"/v1/expenses?q={term}&page_size=50" for term in SEARCH_TERMS]
    paths = [f"{path}&skip_total_size=true" for path in counted]
    variants = [wrk.Variant("GET", path, token=token) for path in paths]
    await bench.wrk_step("list q page", "REST", variants, bench.profile.read_connections, target)
    variants = [wrk.Variant("GET", path, token=token) for path in counted]
    await bench.wrk_step("list q page", "REST, counted", variants, bench.profile.read_connections)
    client = bench.rest.get()
    rest_paths = cycle(paths)

    async def page_rest() -> str:
        return rest_outcome(await client.get(next(rest_paths), headers=bearer(token)))

    for rate in bench.profile.open_loop_rates:
        await bench.open_step("list q page", f"REST {rate:g}/s", page_rest, rate, target=target)
