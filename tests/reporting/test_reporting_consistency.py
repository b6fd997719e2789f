"""Read-your-writes through Envoy on a whole SQLite mesh (issue 18, item 3): every ledger
write answers an X-Consistency-Token; a report read sending it back includes the write,
waiting for the event if need be; a token whose write never arrives is a 503 after the
configured wait, never figures without it; a malformed token is a 400."""

from __future__ import annotations

import statistics
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.mesh import Mesh
from tests.rest_calls import new_expense, signed_up

pytestmark = pytest.mark.e2e
TOKEN = "x-consistency-token"


@pytest.fixture
async def http(mesh_sqlite: Mesh) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=mesh_sqlite.base_url, timeout=15, trust_env=False) as client:
        yield client


@pytest.fixture
async def headers(http: httpx.AsyncClient) -> dict[str, str]:
    return await signed_up(http)


def inr_total(summary: dict) -> str | None:
    return next((c["total"] for c in summary["currencies"] if c["currency"] == "INR"), None)


async def test_a_summary_read_with_the_token_includes_each_write(
    http: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    created = await new_expense(http, headers, "1250.50")
    token = created.headers[TOKEN]
    assert token == f"{created.json()['expense_id']}.1"
    summary = await http.get("/v1/reports/summary?period=month", headers={**headers, TOKEN: token})
    assert summary.status_code == 200, summary.text
    assert inr_total(summary.json()) == "1250.50"
    path = f"/v1/expenses/{created.json()['expense_id']}"
    change = {"expense": {"amount": "100.00"}, "update_mask": "amount"}
    updated = await http.patch(path, json=change, headers=headers)
    assert updated.headers[TOKEN].endswith(".2")
    summary = await http.get("/v1/reports/summary", headers={**headers, TOKEN: updated.headers[TOKEN]})
    assert inr_total(summary.json()) == "100.00"
    deleted = await http.delete(path, headers=headers)
    assert deleted.headers[TOKEN].endswith(".3")
    summary = await http.get("/v1/reports/summary", headers={**headers, TOKEN: deleted.headers[TOKEN]})
    assert inr_total(summary.json()) is None


async def test_a_write_that_never_arrives_is_a_503_not_stale_figures(
    http: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    created = await new_expense(http, headers, "5.00")
    future = f"{created.json()['expense_id']}.9"
    started = time.monotonic()
    answer = await http.get("/v1/reports/summary", headers={**headers, TOKEN: future})
    assert answer.status_code == 503, answer.text
    body = answer.json()
    reasons = [d.get("reason") for d in body["details"]]
    assert "WRITE_NOT_YET_APPLIED" in reasons
    assert 1.5 <= time.monotonic() - started < 5  # consistency_wait_seconds = 2


async def test_a_malformed_token_is_a_400(http: httpx.AsyncClient, headers: dict[str, str]) -> None:
    answer = await http.get("/v1/reports/summary", headers={**headers, TOKEN: "yesterday"})
    assert answer.status_code == 400, answer.text
    assert answer.json()["details"][0]["field_violations"][0]["field"] == TOKEN


async def test_what_the_token_costs(http: httpx.AsyncClient, headers: dict[str, str]) -> None:
    """Not a benchmark (a loaded machine): a read right after each create waits for the
    write, later reads with the token skip the cache. Figures printed for
    docs/consistency.md (`pytest -s`)."""
    timings: dict[str, list[float]] = {"right after a create, with": [], "with": [], "without": []}

    async def timed(name: str, extra: dict[str, str]) -> dict:
        started = time.perf_counter()
        answer = await http.get("/v1/reports/summary", headers={**headers, **extra})
        timings[name].append(time.perf_counter() - started)
        assert answer.status_code == 200, answer.text
        return answer.json()

    for count in range(1, 21):
        token = (await new_expense(http, headers, "1.00")).headers[TOKEN]
        assert inr_total(await timed("right after a create, with", {TOKEN: token})) == f"{count}.00"
        assert inr_total(await timed("with", {TOKEN: token})) == f"{count}.00"
        assert inr_total(await timed("without", {})) == f"{count}.00"
    for name, values in timings.items():
        values.sort()
        print(
            f"{name} token: median {statistics.median(values) * 1000:.1f} ms, max {values[-1] * 1000:.1f} ms"
        )
