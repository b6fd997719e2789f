"""Report periods through Envoy on a whole SQLite mesh (issue 18, item 4): quarter and
custom ranges, a trend ending at a chosen date with one series per currency (zeros only
inside its span), and summaries without blocks for currencies absent from the period."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.mesh import Mesh

pytestmark = pytest.mark.e2e
PASSWORD = "violet-harbor-tune-42-periods"
TOKEN = "x-consistency-token"
SPENDING = [
    ("7.00", "INR", "2025-12-31"),
    ("100.00", "INR", "2026-01-15"),
    ("10.00", "USD", "2026-02-10"),
    ("50.00", "INR", "2026-03-20"),
]


@pytest.fixture
async def shopper(mesh_sqlite: Mesh) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    async with httpx.AsyncClient(base_url=mesh_sqlite.base_url, timeout=15, trust_env=False) as http:
        body = {
            "email": f"periods.{secrets.token_hex(6)}@example.org",
            "password": PASSWORD,
            "display_name": "P",
        }
        answer = await http.post("/v1/auth/signup", json=body)
        assert answer.status_code == 200, answer.text
        headers = {"authorization": f"Bearer {answer.json()['access_token']}"}
        for amount, currency, day in SPENDING:
            expense = {
                "request_id": secrets.token_hex(8),
                "amount": amount,
                "currency": currency,
                "spent_on": day,
            }
            created = await http.post("/v1/expenses", json=expense, headers=headers)
            assert created.status_code == 200, created.text
            # Each read below then includes every write (read-your-writes).
            settled = await http.get(
                "/v1/reports/summary", headers={**headers, TOKEN: created.headers[TOKEN]}
            )
            assert settled.status_code == 200, settled.text
        yield http, headers


async def get(shopper: tuple[httpx.AsyncClient, dict[str, str]], path: str, status: int = 200) -> Any:
    http, headers = shopper
    answer = await http.get(path, headers=headers)
    assert answer.status_code == status, answer.text
    return answer.json()


def totals(summary: dict[str, Any]) -> dict[str, str]:
    return {block["currency"]: block["total"] for block in summary["currencies"]}


async def test_quarter_and_custom_periods(shopper: tuple[httpx.AsyncClient, dict[str, str]]) -> None:
    quarter = await get(shopper, "/v1/reports/summary?period=quarter&date=2026-02-01")
    assert (quarter["period_start"], quarter["period_end"]) == ("2026-01-01", "2026-03-31")
    assert totals(quarter) == {"INR": "150.00", "USD": "10.00"}
    inr = next(block for block in quarter["currencies"] if block["currency"] == "INR")
    assert [point["total"] for point in inr["series"]] == ["100.00", "0.00", "50.00"]
    assert inr["previous_total"] == "7.00"  # Q4 2025
    custom = await get(shopper, "/v1/reports/summary?period=custom&from=2025-12-31&to=2026-01-15")
    # No USD block: no USD was spent in the range.
    assert totals(custom) == {"INR": "107.00"}
    assert len(custom["currencies"][0]["series"]) == 16  # one point per day


async def test_a_currency_spent_only_before_the_period_has_no_block(
    shopper: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    march = await get(shopper, "/v1/reports/summary?period=month&date=2026-03-05")
    assert totals(march) == {"INR": "50.00"}  # USD was spent in February only


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("period=custom&from=2025-01-01&to=2026-01-02", "to"),  # 367 days
        ("period=custom&to=2026-01-02", "from"),
        ("period=custom&from=2026-01-05&to=2026-01-02", "to"),
        ("period=month&from=2026-01-01", "from"),
        ("period=day", "period"),
    ],
)
async def test_bad_periods_name_the_field(
    shopper: tuple[httpx.AsyncClient, dict[str, str]], query: str, field: str
) -> None:
    refused = await get(shopper, f"/v1/reports/summary?{query}", status=400)
    violations = [v for d in refused["details"] for v in d.get("field_violations", [])]
    assert [v["field"] for v in violations] == [field], refused
    assert "Input should" not in refused["message"] + str(violations)


async def test_a_trend_ends_at_a_chosen_date_with_one_series_per_currency(
    shopper: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    trend = await get(shopper, "/v1/reports/trend?period=month&count=4&end=2026-03-31")
    series = {s["currency"]: [(p["period_start"], p["total"]) for p in s["points"]] for s in trend["series"]}
    assert series == {
        "INR": [
            ("2025-12-01", "7.00"),
            ("2026-01-01", "100.00"),
            ("2026-02-01", "0.00"),
            ("2026-03-01", "50.00"),
        ],
        "USD": [("2026-02-01", "10.00"), ("2026-03-01", "0.00")],  # from its first spending on
    }
    quarters = await get(shopper, "/v1/reports/trend?period=quarter&count=2&end=2026-03-01")
    inr = next(s for s in quarters["series"] if s["currency"] == "INR")
    assert [(p["period_start"], p["period_end"], p["total"]) for p in inr["points"]] == [
        ("2025-10-01", "2025-12-31", "7.00"),
        ("2026-01-01", "2026-03-31", "150.00"),
    ]
