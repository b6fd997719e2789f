"""Billing's other rules through the gateway, on SQLite and PostgreSQL: other
currencies reported apart, duplicate charges, muted rules, a bill settled by a
matching expense (and a price increase noticed), subscriptions suggested from a
year of history and accepted, etags and page tokens."""

from __future__ import annotations

import asyncio
import secrets
from datetime import date, timedelta

import httpx
import pytest

from tests.billing.test_billing_e2e import Member, eventually, sign_up
from tests.mesh import Mesh

pytestmark = pytest.mark.e2e
QUIET_SECONDS = 1.0


@pytest.fixture
async def client(mesh: Mesh) -> httpx.AsyncClient:
    async with httpx.AsyncClient(base_url=mesh.base_url, timeout=15, trust_env=False) as http:
        yield http


async def spend(
    member: Member, amount: str, merchant: str, day: date, currency: str = "INR", category: str = ""
) -> str:
    body = {
        "request_id": secrets.token_hex(16),
        "amount": amount,
        "currency": currency,
        "spent_on": day.isoformat(),
        "category_id": category,
        "merchant": merchant,
    }
    return (await member.ok("POST", "/v1/expenses", json=body))["expense_id"]


async def test_other_currencies_are_reported_apart(client: httpx.AsyncClient) -> None:
    member = await sign_up(client)
    food = await member.category("Food & dining")
    budget = await member.ok(
        "POST",
        "/v1/budgets",
        json={"category_id": food, "period": "month", "amount": "1000", "currency": "INR"},
    )
    today = date.today()
    await spend(member, "100.00", "Cafe", today, category=food)
    await spend(member, "12.50", "Diner", today, currency="USD", category=food)

    async def status() -> dict:
        return (await member.ok("GET", f"/v1/budgets/{budget['budget_id']}"))["status"]

    seen = await eventually(status, lambda s: s["spent"] == "100.00" and s.get("other_currencies"))
    assert seen["other_currencies"] == [{"amount": "12.50", "currency": "USD"}]
    assert seen["percent"] == "10.0"


async def test_a_duplicate_charge_raises_one_alert_unless_muted(client: httpx.AsyncClient) -> None:
    member = await sign_up(client)
    today = date.today()
    await spend(member, "499.00", "Big Bazaar", today)
    await spend(member, "499.00", "BIG BAZAAR", today)
    alerts = await eventually(lambda: member.alerts("duplicate_charge"), lambda seen: len(seen) == 1)
    assert alerts[0]["details"]["amount"] == "499.00"

    settings = await member.ok("PATCH", "/v1/alertSettings", json={"muted": ["duplicate_charge"]})
    assert {rule["type"]: rule["muted"] for rule in settings["rules"]}["duplicate_charge"] is True
    await spend(member, "75.00", "Chai Point", today)
    await spend(member, "75.00", "Chai Point", today)
    await asyncio.sleep(QUIET_SECONDS)
    assert len(await member.alerts("duplicate_charge")) == 1
    bad = await member.call("PATCH", "/v1/alertSettings", json={"muted": ["everything"]})
    assert bad.status_code == 400 and "muted" in bad.text


async def test_a_matching_charge_settles_the_bill_and_a_higher_one_is_noticed(
    client: httpx.AsyncClient,
) -> None:
    member = await sign_up(client)
    due = date.today() - timedelta(days=1)
    bill = await member.ok(
        "POST",
        "/v1/bills",
        json={
            "payee": "Netflix",
            "amount": "649.00",
            "currency": "INR",
            "recurrence": f"FREQ=MONTHLY;BYMONTHDAY={due.day}",
            "first_due": (due - timedelta(days=62)).isoformat(),
        },
    )
    # 5 % above the bill: within the 10 % tolerance, so it settles; and a price increase.
    expense_id = await spend(member, "681.45", "NETFLIX.COM*8842", due + timedelta(days=1))

    async def latest() -> dict:
        listed = await member.ok("GET", f"/v1/bills/{bill['bill_id']}/occurrences")
        return next(o for o in listed["occurrences"] if o["due_date"] == due.isoformat())

    settled = await eventually(latest, lambda occurrence: occurrence["status"] == "paid")
    assert settled["expense_id"] == expense_id and settled["amount"] == "681.45"
    increase = await eventually(lambda: member.alerts("price_increase"), lambda seen: len(seen) == 1)
    assert (increase[0]["details"]["previous_amount"], increase[0]["details"]["amount"]) == (
        "649.00",
        "681.45",
    )
    # Far off the amount: no settlement of anything.
    await spend(member, "5000.00", "Netflix", due)
    await asyncio.sleep(QUIET_SECONDS)
    statuses = [
        o["status"]
        for o in (await member.ok("GET", f"/v1/bills/{bill['bill_id']}/occurrences"))["occurrences"]
    ]
    assert statuses.count("paid") == 1


async def test_subscriptions_from_a_year_of_history(client: httpx.AsyncClient) -> None:
    member = await sign_up(client)
    today = date.today()
    rows = []
    for months_ago in range(1, 13):  # a monthly service on the 5th, amounts steady
        day = (today.replace(day=1) - timedelta(days=31 * (months_ago - 1))).replace(day=5)
        if day <= today:
            rows.append(("Spotify", "119.00", day))
    for years_ago in range(3):  # a yearly one
        rows.append(
            ("Amazon Prime", "1499.00", today.replace(year=today.year - years_ago) - timedelta(days=20))
        )
    for months_ago, amount in enumerate(("800.00", "1450.00", "300.00", "2100.00")):  # a near miss
        rows.append(("FreshMart", amount, today - timedelta(days=30 * months_ago + 3)))
    body = {
        "rows": [
            {
                "request_id": secrets.token_hex(8),
                "amount": amount,
                "currency": "INR",
                "spent_on": day.isoformat(),
                "merchant": merchant,
            }
            for merchant, amount, day in rows
        ]
    }
    imported = await member.ok("POST", "/v1/expenses:import", json=body)
    assert imported["created_count"] == len(rows)

    async def suggestions() -> dict[str, dict]:
        listed = await member.ok("GET", "/v1/bills:suggestions")
        return {s["payee"]: s for s in listed.get("suggestions", [])}

    found = await eventually(suggestions, lambda seen: {"Spotify", "Amazon Prime"} <= set(seen))
    assert "FreshMart" not in found
    assert (found["Spotify"]["cadence"], found["Amazon Prime"]["cadence"]) == ("monthly", "yearly")
    accepted = await member.ok(
        "POST", "/v1/bills:acceptSuggestion", json={"suggestion_id": found["Spotify"]["suggestion_id"]}
    )
    assert (accepted["payee"], accepted["amount"]) == ("Spotify", "119.00")
    assert "Spotify" not in await suggestions()


async def test_etags_masks_and_page_tokens(client: httpx.AsyncClient) -> None:
    member = await sign_up(client)
    budgets = [
        await member.ok(
            "POST", "/v1/budgets", json={"period": "week", "amount": f"{n + 1}00", "currency": "INR"}
        )
        for n in range(3)
    ]
    first = budgets[0]
    changed = await member.ok(
        "PATCH",
        f"/v1/budgets/{first['budget_id']}",
        json={"budget": {"rollover": True}, "update_mask": "rollover", "etag": first["etag"]},
    )
    assert changed["rollover"] is True and changed["etag"] != first["etag"]
    stale = await member.call(
        "PATCH",
        f"/v1/budgets/{first['budget_id']}",
        json={"budget": {"amount": "5"}, "update_mask": "amount", "etag": first["etag"]},
    )
    assert stale.status_code == 409
    read_only = await member.call(
        "PATCH",
        f"/v1/budgets/{first['budget_id']}",
        json={"budget": {"period": "year"}, "update_mask": "period"},
    )
    assert read_only.status_code == 400 and "update_mask" in read_only.text

    page = await member.ok("GET", "/v1/budgets", params={"page_size": 2})
    assert len(page["budgets"]) == 2 and page["next_page_token"]
    rest = await member.ok(
        "GET", "/v1/budgets", params={"page_size": 2, "page_token": page["next_page_token"]}
    )
    assert [b["budget_id"] for b in page["budgets"] + rest["budgets"]] == [b["budget_id"] for b in budgets]
    forged = await member.call("GET", "/v1/alerts", params={"page_token": page["next_page_token"]})
    assert forged.status_code == 400 and "page_token" in forged.text
    garbage = await member.call("GET", "/v1/budgets", params={"page_token": "%%%not-a-token"})
    assert garbage.status_code == 400


async def test_a_parent_budget_counts_its_children_and_history_rolls_over(client: httpx.AsyncClient) -> None:
    member = await sign_up(client)
    food = await member.category("Food & dining")
    child = await member.ok("POST", "/v1/categories", json={"name": "Street food", "parent_id": food})
    this_month = date.today().replace(day=1)
    two_ago = (this_month - timedelta(days=40)).replace(day=1)
    one_ago = (this_month - timedelta(days=1)).replace(day=1)
    budget = await member.ok(
        "POST",
        "/v1/budgets",
        json={
            "category_id": food,
            "period": "month",
            "amount": "1000",
            "currency": "INR",
            "rollover": True,
            "start_date": two_ago.isoformat(),
        },
    )
    await spend(member, "600.00", "Stall", two_ago + timedelta(days=3), category=child["category_id"])
    await spend(member, "1500.00", "Dhaba", one_ago + timedelta(days=3), category=food)
    await spend(member, "50.00", "Stall", this_month, category=child["category_id"])

    async def status() -> dict:
        return (await member.ok("GET", f"/v1/budgets/{budget['budget_id']}"))["status"]

    # 1000 - 600 = 400 carried into last month; 1400 - 1500 = -100 carried into this one.
    seen = await eventually(status, lambda s: s["spent"] == "50.00" and s["carried"] == "-100.00")
    assert (seen["budgeted"], seen["remaining"]) == ("900.00", "850.00")
    history = await member.ok("GET", f"/v1/budgets/{budget['budget_id']}/history")
    assert [(p["period_start"], p["carried"], p["spent"], p["remaining"]) for p in history["periods"]] == [
        (one_ago.isoformat(), "400.00", "1500.00", "-100.00"),
        (two_ago.isoformat(), "0.00", "600.00", "400.00"),
    ]
