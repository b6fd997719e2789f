"""Read-your-writes through Envoy on a whole PostgreSQL mesh (issue 18, item 3): the
X-Consistency-Token of a ledger write makes reporting's summary, billing's budget
progress and ds's insights wait for the write's event; a write that never arrives is a
503 WRITE_NOT_YET_APPLIED, a malformed token a 400. (PostgreSQL: the reads' fast path
there once broke the wait, which a SQLite mesh never showed.)"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.mesh import Mesh
from tests.rest_calls import new_expense, signed_up

pytestmark = pytest.mark.e2e
TOKEN = "x-consistency-token"
BUDGET = {"period": "month", "amount": "100.00", "currency": "INR", "thresholds": [80]}


@pytest.fixture
async def http(mesh_postgres: Mesh) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=mesh_postgres.base_url, timeout=15, trust_env=False) as client:
        yield client


@pytest.fixture
async def headers(http: httpx.AsyncClient) -> dict[str, str]:
    return await signed_up(http)


async def test_budget_progress_summary_and_insights_include_the_write_named(
    http: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    budget = await http.post(
        "/v1/budgets", json={**BUDGET, "request_id": secrets.token_hex(8)}, headers=headers
    )
    assert budget.status_code == 200, budget.text
    path = f"/v1/budgets/{budget.json()['budget_id']}"
    for count in range(1, 4):
        token = (await new_expense(http, headers, "10.00", merchant="Cafe")).headers[TOKEN]
        read = await http.get(path, headers={**headers, TOKEN: token})
        assert read.status_code == 200, read.text
        assert read.json()["status"]["spent"] == f"{10 * count}.00"
        listed = await http.get("/v1/budgets", headers={**headers, TOKEN: token})
        assert [b["status"]["spent"] for b in listed.json()["budgets"]] == [f"{10 * count}.00"]
        summary = await http.get("/v1/reports/summary", headers={**headers, TOKEN: token})
        assert summary.status_code == 200, summary.text
        assert [c["total"] for c in summary.json()["currencies"]] == [f"{10 * count}.00"]
        insights = await http.get("/v1/insights?period=month", headers={**headers, TOKEN: token})
        assert insights.status_code == 200, insights.text


@pytest.mark.parametrize("path", ["/v1/budgets", "/v1/insights", "/v1/reports/summary"])
async def test_a_write_that_never_arrives_is_a_503_and_a_malformed_token_a_400(
    http: httpx.AsyncClient, headers: dict[str, str], path: str
) -> None:
    created = await new_expense(http, headers, "5.00", merchant="Cafe")
    future = f"{created.json()['expense_id']}.9"
    answer = await http.get(path, headers={**headers, TOKEN: future})
    assert answer.status_code == 503, answer.text
    assert "WRITE_NOT_YET_APPLIED" in [detail.get("reason") for detail in answer.json()["details"]]
    malformed = await http.get(path, headers={**headers, TOKEN: "yesterday"})
    assert malformed.status_code == 400, malformed.text
    assert malformed.json()["details"][0]["field_violations"][0]["field"] == TOKEN
