"""Billing: the heavy user's 20 budgets with their status (100,000 expenses of
history behind them), and the latency from an expense's commit to its alert on the
stream (`alert.raised`), open loop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable
from datetime import timedelta
from itertools import count

from nats.aio.msg import Msg

from bench import wrk
from bench.api import bearer, channel, grpc_bearer, rest_outcome
from bench.context import Bench, p99_at_most
from bench.scenarios.common import RPC_TIMEOUT_SECONDS, rpc_outcome
from bench.stats import OK, Measurement, ScenarioResult
from expense.billing.v1 import billing_pb2, billing_pb2_grpc
from expense.events.v1 import events_pb2

BUDGETS = 20
PERIODS = ("month", "week", "year")
# Above [billing.alerts] large_expense_absolute's INR limit: every create raises one alert
# (amounts differ, so none is also a duplicate charge).
LARGE_AMOUNT_MAJOR = 150000
ALERT_TIMEOUT_SECONDS = 30.0


async def budget_status(bench: Bench) -> None:
    """GET /v1/budgets (20 budgets, each with its current status; some with rollover
    over a year of history) and one budget's GET, for the heavy user."""
    heavy = bench.seed.heavy
    token = await bench.tokens.token(heavy)
    budget_ids = await _budgets_of(bench, token, list(heavy.categories.values()))
    target = p99_at_most(bench.targets.budget_status_max_p99_ms)
    connections = bench.profile.read_connections
    variants = [wrk.Variant("GET", "/v1/budgets?page_size=50", token=token)]
    await bench.wrk_step("budget status", f"REST list of {len(budget_ids)}", variants, connections, target)
    variants = [wrk.Variant("GET", f"/v1/budgets/{budget_id}", token=token) for budget_id in budget_ids]
    await bench.wrk_step("budget status", "REST one", variants, connections, target)
    async with channel(bench.mesh.address("billing")) as billing_channel:
        stub = billing_pb2_grpc.BillingServiceStub(billing_channel)
        metadata = grpc_bearer(token)
        request = billing_pb2.ListBudgetsRequest(page_size=50)

        def listed() -> Awaitable[str]:
            return rpc_outcome(stub.ListBudgets(request, metadata=metadata, timeout=RPC_TIMEOUT_SECONDS))

        await bench.closed_step(
            "budget status", f"gRPC list of {len(budget_ids)}", listed, connections, target=target
        )


async def _budgets_of(bench: Bench, token: str, categories: list[str]) -> list[str]:
    """The heavy user's budgets: all spending and one per category, periods rotating,
    every other one rolling over from a year ago."""
    client = bench.rest.get()
    listed = (await client.get("/v1/budgets?page_size=50", headers=bearer(token))).json()
    existing = [budget["budget_id"] for budget in listed.get("budgets", [])]
    start = (bench.today - timedelta(days=365)).isoformat()
    scopes = ["", *categories][: BUDGETS - len(existing)]
    for number, category_id in enumerate(scopes):
        body = {
            "request_id": f"{bench.nonce}-budget-{number}",
            "category_id": category_id,
            "period": PERIODS[number % len(PERIODS)],
            "amount": "50000.00",
            "currency": "INR",
            "rollover": number % 2 == 0,
            "start_date": start,
        }
        response = await client.post("/v1/budgets", content=json.dumps(body), headers=bearer(token))
        response.raise_for_status()
        existing.append(response.json()["budget_id"])
    return existing


async def alert_latency(bench: Bench) -> None:
    """Creates at a fixed rate (open loop, REST), each a large expense; for each, the
    time from its response to its alert.raised event on NATS."""
    user = bench.seed.of_role("lag")[0]
    token = await bench.tokens.token(user)
    category = next(iter(user.categories.values()))
    raised: dict[str, float] = {}
    responses: list[tuple[float, str]] = []
    all_raised = asyncio.Event()

    async def on_alert(message: Msg) -> None:
        envelope = events_pb2.EventEnvelope.FromString(message.data)
        alert = events_pb2.AlertRaised()
        envelope.payload.Unpack(alert)
        if alert.type == "large_expense":
            raised.setdefault(alert.details["expense_id"], time.perf_counter())
            if sending_done.is_set() and all(expense_id in raised for _, expense_id in responses):
                all_raised.set()

    subject = f"{bench.mesh.event_prefix}.events.alert.raised"
    sending_done = asyncio.Event()
    subscription = await bench.nats.subscribe(subject, cb=on_alert)
    client = bench.rest.get()
    ids = count()
    rate = bench.profile.alert_rate

    async def create() -> str:
        number = next(ids)
        body = {
            "request_id": f"{bench.nonce}-alert-{number}",
            "amount": f"{LARGE_AMOUNT_MAJOR + number // 100}.{number % 100:02d}",
            "currency": "INR",
            "spent_on": bench.today.isoformat(),
            "category_id": category,
            "merchant": "Bench Jeweller",
        }
        response = await client.post("/v1/expenses", content=json.dumps(body), headers=bearer(token))
        if response.is_success:
            responses.append((time.perf_counter(), response.json()["expense_id"]))
        return rest_outcome(response)

    created = await bench.open_step(
        "alert latency (create)",
        f"REST {rate:g}/s",
        create,
        rate,
        seconds=bench.profile.lag_seconds,
        warmup=False,
    )
    sending_done.set()
    if all(expense_id in raised for _, expense_id in responses):
        all_raised.set()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(all_raised.wait(), ALERT_TIMEOUT_SECONDS)
    await subscription.unsubscribe()
    measurement = Measurement(seconds=created.seconds)
    for answered, expense_id in responses:
        if expense_id in raised:
            measurement.add((raised[expense_id] - answered) * 1000, OK)
        else:
            measurement.outcomes["no alert"] += 1
    row = ScenarioResult.from_measurement(
        "alert latency",
        f"create → alert.raised, {rate:g}/s",
        f"open-loop h11, {rate:g}/s",
        measurement,
        unit="alerts/s",
    )
    row.extra.update(created=len(responses), create_p99_ms=created.latency.p99)
    row.notes.append("from the create's response to its large_expense alert.raised event on NATS")
    bench.record(row, p99_at_most(bench.targets.alert_latency_max_p99_ms))
    await bench.settle()
