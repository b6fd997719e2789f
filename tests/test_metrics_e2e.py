"""Prometheus metrics of a whole mesh (`services.launcher up`), on SQLite and on
PostgreSQL+Redis: each service answers GET /metrics on its own port, and after a
signup, a budget, an expense crossing its threshold, lists, a report and a miss,
the counters moved where they should: gRPC calls by method and code with their
latency histogram, the ledger's outbox, the reporting and billing consumers, the
alert billing raised, the pools, the cache (with Redis) and the breakers."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Callable
from datetime import date

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.mesh import Mesh

pytestmark = pytest.mark.e2e
PASSWORD = "violet-harbor-tune-42-metrics"
LEDGER = "expense.ledger.v1.LedgerService"
KIT_FAMILIES = (
    "em_grpc_server_handled_total counter",
    "em_grpc_server_handling_seconds histogram",
    "em_db_pool_connections gauge",
    "em_circuit_breaker_open gauge",
)
# Labels -> value of every sample of a scrape, by sample name.
Scrape = dict[str, dict[frozenset[tuple[str, str]], float]]


@pytest.fixture
async def client(mesh: Mesh) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=mesh.base_url, timeout=15, trust_env=False) as http:
        yield http


async def scrape(mesh: Mesh, service: str) -> Scrape:
    async with httpx.AsyncClient(timeout=5, trust_env=False) as http:
        response = await http.get(mesh.metrics_url(service))
    assert response.status_code == 200, response.text
    samples: Scrape = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[frozenset(sample.labels.items())] = sample.value
    return samples


def value(samples: Scrape, name: str, **labels: str) -> float:
    """The sum of `name`'s samples carrying these labels (0 when none)."""
    wanted = set(labels.items())
    return sum(v for key, v in samples.get(name, {}).items() if wanted <= key)


async def eventually(
    read: Callable[[], object], check: Callable[[object], bool], within: float = 10.0
) -> None:
    deadline = time.monotonic() + within
    while True:
        seen = await read()
        if check(seen):
            return
        assert time.monotonic() < deadline, f"not seen within {within} s: {seen}"
        await asyncio.sleep(0.2)


async def test_every_service_serves_its_metrics(mesh: Mesh) -> None:
    assert all(mesh.metrics_url(service) in mesh.log for service in mesh.services)  # `up` says where
    async with httpx.AsyncClient(timeout=5, trust_env=False) as http:
        for service in mesh.services:
            text = (await http.get(mesh.metrics_url(service))).text
            for family in KIT_FAMILIES:
                assert f"# TYPE {family}\n" in text, (service, family)

    async def pools_sampled() -> list[str]:
        return [s for s in mesh.services if "em_db_pool_connections" not in await scrape(mesh, s)]

    await eventually(pools_sampled, lambda unsampled: unsampled == [])


async def test_calls_events_and_alerts_move_the_counters(mesh: Mesh, client: httpx.AsyncClient) -> None:
    before = {service: await scrape(mesh, service) for service in mesh.services}
    signup = {
        "email": f"metrics.{secrets.token_hex(6)}@example.org",
        "password": PASSWORD,
        "display_name": "M",
    }
    response = await client.post("/v1/auth/signup", json=signup)
    assert response.status_code == 200, response.text
    headers = {"authorization": f"Bearer {response.json()['access_token']}"}
    budget = {"period": "month", "amount": "100.00", "currency": "INR", "thresholds": [50]}
    assert (await client.post("/v1/budgets", json=budget, headers=headers)).status_code == 200
    expense = {
        "request_id": secrets.token_hex(16),
        "amount": "60.00",
        "currency": "INR",
        "spent_on": date.today().isoformat(),  # the budget's month
        "merchant": "Metrics Cafe",
    }
    created = await client.post("/v1/expenses", json=expense, headers=headers)
    assert created.status_code == 200, created.text
    assert (await client.get("/v1/expenses", headers=headers)).status_code == 200
    missing = await client.get(f"/v1/expenses/{'0' * 8}-0000-4000-8000-{'0' * 12}", headers=headers)
    assert missing.status_code == 404

    ledger = await scrape(mesh, "ledger")
    calls = "em_grpc_server_handled_total"
    old = before["ledger"]
    for method, code in (("CreateExpense", "OK"), ("ListExpenses", "OK"), ("GetExpense", "NOT_FOUND")):
        labels = {"grpc_service": LEDGER, "grpc_method": method, "grpc_code": code}
        assert value(ledger, calls, **labels) - value(old, calls, **labels) == 1, (method, code)
    created_seconds = {"grpc_service": LEDGER, "grpc_method": "CreateExpense"}
    count = "em_grpc_server_handling_seconds_count"
    assert value(ledger, count, **created_seconds) - value(old, count, **created_seconds) == 1
    bucket = "em_grpc_server_handling_seconds_bucket"
    assert value(ledger, bucket, le="10.0", **created_seconds) > value(
        old, bucket, le="10.0", **created_seconds
    )
    assert value(ledger, "em_outbox_published_total", producer="ledger") > value(
        old, "em_outbox_published_total", producer="ledger"
    )
    auth = await scrape(mesh, "auth")
    signups = {"grpc_method": "SignUp", "grpc_code": "OK"}
    assert value(auth, calls, **signups) - value(before["auth"], calls, **signups) == 1

    for service, consumer in (("reporting", "reporting_expenses"), ("billing", "billing_expenses")):
        await _consumer_applied(mesh, service, consumer, before[service])

    async def alerts_raised() -> float:
        samples = await scrape(mesh, "billing")
        name = "em_billing_alerts_raised_total"
        return value(samples, name, type="budget_threshold") - value(
            before["billing"], name, type="budget_threshold"
        )

    # At least: billing may still be applying an earlier test's events on the shared mesh.
    await eventually(alerts_raised, lambda raised: raised >= 1)
    # Once reporting applied the expense (which invalidates the user's cached reports):
    for _ in range(2):  # the second one from the cache, when there is Redis
        assert (await client.get("/v1/reports/summary?period=month", headers=headers)).status_code == 200
    await _sampled_gauges(mesh)
    if "REDIS_URL" in mesh.env:
        reporting = await scrape(mesh, "reporting")
        reads = "em_cache_requests_total"
        for result in ("hit", "miss"):
            labels = {"cache": "reporting", "result": result}
            assert value(reporting, reads, **labels) > value(before["reporting"], reads, **labels), result
    # Ledger asks the user service for preferences through that peer's breaker: closed.
    assert value(ledger, "em_circuit_breaker_open", peer="user") == 0
    assert "em_circuit_breaker_open" in ledger


async def _consumer_applied(mesh: Mesh, service: str, consumer: str, before: Scrape) -> None:
    applied = "em_consumer_events_applied_total"

    async def moved() -> float:
        return value(await scrape(mesh, service), applied, consumer=consumer) - value(
            before, applied, consumer=consumer
        )

    await eventually(moved, lambda count: count >= 1)
    samples = await scrape(mesh, service)
    lag = "em_consumer_event_lag_seconds_count"
    assert value(samples, lag, consumer=consumer) > value(before, lag, consumer=consumer)
    assert value(samples, "em_consumer_dead_letters_total", consumer=consumer) == 0


async def _sampled_gauges(mesh: Mesh) -> None:
    """The outbox's backlog drains and the consumers catch up, as sampled."""

    async def ledger_gauges() -> tuple[float, float, float]:
        samples = await scrape(mesh, "ledger")
        return (
            value(samples, "em_outbox_backlog", producer="ledger"),
            value(samples, "em_outbox_oldest_unpublished_seconds", producer="ledger"),
            len(samples.get("em_outbox_backlog", {})),
        )

    await eventually(ledger_gauges, lambda seen: seen == (0, 0, 1))

    async def reporting_lag() -> tuple[float, int]:
        samples = await scrape(mesh, "reporting")
        pending = samples.get("em_consumer_pending", {})
        return value(samples, "em_consumer_pending", consumer="reporting_expenses"), len(pending)

    await eventually(reporting_lag, lambda seen: seen[0] == 0 and seen[1] >= 3)
    pools = await scrape(mesh, "ledger")
    assert value(pools, "em_db_pool_connections", service="ledger", pool="write") >= 1
