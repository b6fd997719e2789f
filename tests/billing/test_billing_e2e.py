"""Billing through Envoy's REST port on a whole mesh (`services.launcher up`), on
SQLite and on PostgreSQL+Redis: budget thresholds fire exactly once per threshold
and period (an edit down and up again fires nothing, a new amount re-arms), a
bill's occurrence paid twice makes one expense, bad input is a 400 naming the
field, and another user's ids are 404."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from datetime import date, timedelta
from typing import Any

import httpx
import pytest

from services.billing import storage
from services.kit.config.settings import REPO_ROOT
from services.kit.db.engine import Database
from tests.mesh import Mesh

pytestmark = pytest.mark.e2e
PASSWORD = "violet-harbor-tune-42-billing"
WITHIN_SECONDS = 10.0
# How long "nothing more arrives" is watched for.
QUIET_SECONDS = 1.5


@pytest.fixture
async def client(mesh: Mesh) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=mesh.base_url, timeout=15, trust_env=False) as http:
        yield http


class Member:
    def __init__(self, client: httpx.AsyncClient, tokens: dict[str, Any]) -> None:
        self.client = client
        self.user_id: str = tokens["user"]["user_id"]
        self.headers = {"authorization": f"Bearer {tokens['access_token']}"}

    async def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return await self.client.request(method, path, headers=self.headers, **kwargs)

    async def ok(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = await self.call(method, path, **kwargs)
        assert response.status_code == 200, f"{method} {path}: {response.status_code} {response.text}"
        return response.json()

    async def category(self, name: str) -> str:
        listed = await self.ok("GET", "/v1/categories")
        return next(c["category_id"] for c in listed["categories"] if c["name"] == name)

    async def spend(
        self, amount: str, category_id: str, merchant: str = "Cafe", day: str = ""
    ) -> dict[str, Any]:
        body = {
            "request_id": secrets.token_hex(16),
            "amount": amount,
            "currency": "INR",
            "spent_on": day or date.today().isoformat(),
            "category_id": category_id,
            "merchant": merchant,
        }
        return await self.ok("POST", "/v1/expenses", json=body)

    async def alerts(self, kind: str) -> list[dict[str, Any]]:
        listed = await self.ok("GET", "/v1/alerts", params={"page_size": 200})
        return [alert for alert in listed.get("alerts", []) if alert["type"] == kind]


async def sign_up(client: httpx.AsyncClient) -> Member:
    body = {"email": f"billing.{secrets.token_hex(6)}@example.org", "password": PASSWORD, "display_name": "B"}
    response = await client.post("/v1/auth/signup", json=body)
    assert response.status_code == 200, response.text
    return Member(client, response.json())


async def eventually(
    read: Callable[[], Any], check: Callable[[Any], bool], within: float = WITHIN_SECONDS
) -> Any:
    started = time.monotonic()
    while True:
        seen = await read()
        if check(seen):
            return seen
        if time.monotonic() - started > within:
            pytest.fail(f"not seen within {within} s: {seen!r}")
        await asyncio.sleep(0.05)


async def threshold_alerts(member: Member) -> list[str]:
    return sorted(alert["details"]["threshold"] for alert in await member.alerts("budget_threshold"))


async def stays(member: Member, expected: list[str]) -> None:
    """Nothing but `expected` for QUIET_SECONDS."""
    deadline = time.monotonic() + QUIET_SECONDS
    while time.monotonic() < deadline:
        assert await threshold_alerts(member) == expected
        await asyncio.sleep(0.1)


async def test_budget_thresholds_fire_once_and_rearm_on_a_new_amount(client: httpx.AsyncClient) -> None:
    member = await sign_up(client)
    food = await member.category("Food & dining")
    budget = await member.ok(
        "POST",
        "/v1/budgets",
        json={
            "request_id": secrets.token_hex(8),
            "category_id": food,
            "period": "month",
            "amount": "10000.00",
            "currency": "INR",
            "thresholds": [80, 100],
        },
    )
    assert budget["status"]["spent"] == "0.00" and budget["status"]["budgeted"] == "10000.00"

    await member.spend("7000.00", food)
    crossing = await member.spend("1500.00", food)  # 85 %
    await eventually(lambda: threshold_alerts(member), lambda seen: seen == ["80"])
    await member.spend("1600.00", food)  # 101 %
    await eventually(lambda: threshold_alerts(member), lambda seen: seen == ["100", "80"])

    # Down under 80 % and back up: the period's alerts already fired.
    path = f"/v1/expenses/{crossing['expense_id']}"
    lowered = await member.ok(
        "PATCH",
        path,
        json={"expense": {"amount": "100.00"}, "update_mask": "amount", "etag": crossing["etag"]},
    )
    await member.ok(
        "PATCH",
        path,
        json={"expense": {"amount": "1500.00"}, "update_mask": "amount", "etag": lowered["etag"]},
    )
    await stays(member, ["100", "80"])

    status = (await member.ok("GET", f"/v1/budgets/{budget['budget_id']}"))["status"]
    assert (status["spent"], status["percent"], status["remaining"]) == ("10100.00", "101.0", "-100.00")

    # A new amount re-arms: 20,000 puts spending at 50 %, and 80 % fires again when crossed.
    current = await member.ok("GET", f"/v1/budgets/{budget['budget_id']}")
    await member.ok(
        "PATCH",
        f"/v1/budgets/{budget['budget_id']}",
        json={"budget": {"amount": "20000.00"}, "update_mask": "amount", "etag": current["etag"]},
    )
    await stays(member, ["100", "80"])
    await member.spend("6000.00", food)  # 16,100 of 20,000: 80.5 %
    await eventually(lambda: threshold_alerts(member), lambda seen: seen == ["100", "80", "80"])
    alert = (await member.alerts("budget_threshold"))[0]
    assert alert["severity"] in ("warning", "critical") and alert["title"]
    acked = await member.ok("POST", f"/v1/alerts/{alert['alert_id']}:ack", json={})
    assert acked["acknowledge_time"]


async def test_twenty_concurrent_creates_crossing_a_threshold_raise_one_alert(
    client: httpx.AsyncClient,
) -> None:
    member = await sign_up(client)
    budget = {"period": "month", "amount": "1000.00", "currency": "INR", "thresholds": [50]}
    await member.ok("POST", "/v1/budgets", json=budget)
    food = await member.category("Food & dining")
    await asyncio.gather(*(member.spend("30.00", food) for _ in range(20)))  # 60 %
    await eventually(lambda: threshold_alerts(member), lambda seen: seen == ["50"])
    await stays(member, ["50"])


async def test_the_scheduler_reminds_and_flags_overdue_once(client: httpx.AsyncClient) -> None:
    member = await sign_up(client)
    today = date.today()
    for payee, first_due in (
        ("Water board", today + timedelta(days=2)),
        ("Landlord", today - timedelta(days=5)),
    ):
        body = {
            "payee": payee,
            "amount": "1500",
            "currency": "INR",
            "recurrence": "FREQ=YEARLY",
            "first_due": first_due.isoformat(),
            "remind_days_before": 3,
        }
        await member.ok("POST", "/v1/bills", json=body)
    due = await eventually(lambda: member.alerts("bill_due"), lambda seen: len(seen) == 1)
    overdue = await eventually(lambda: member.alerts("bill_overdue"), lambda seen: len(seen) == 1)
    assert due[0]["details"]["payee"] == "Water board" and overdue[0]["details"]["payee"] == "Landlord"
    await asyncio.sleep(QUIET_SECONDS)  # several more rounds: still one of each
    assert len(await member.alerts("bill_due")) == 1 and len(await member.alerts("bill_overdue")) == 1


async def test_a_bill_paid_twice_makes_one_expense(client: httpx.AsyncClient) -> None:
    member = await sign_up(client)
    due = date.today() - timedelta(days=3)
    bill = await member.ok(
        "POST",
        "/v1/bills",
        json={
            "request_id": secrets.token_hex(8),
            "payee": "Airtel Postpaid",
            "amount": "799.00",
            "currency": "INR",
            "recurrence": f"FREQ=MONTHLY;BYMONTHDAY={due.day}",
            "first_due": due.isoformat(),
            "remind_days_before": 3,
        },
    )
    occurrences = (await member.ok("GET", f"/v1/bills/{bill['bill_id']}/occurrences"))["occurrences"]
    assert occurrences[0]["due_date"] == due.isoformat() and occurrences[0]["status"] == "overdue"
    path = f"/v1/bills/{bill['bill_id']}/occurrences/{due.isoformat()}:pay"
    first = await member.ok("POST", path, json={})
    second = await member.ok("POST", path, json={})
    assert first["status"] == "paid" and first["expense_id"] == second["expense_id"]
    expense = await member.ok("GET", f"/v1/expenses/{first['expense_id']}")
    assert (expense["amount"], expense["source"], expense["merchant"]) == (
        "799.00",
        "recurring",
        "Airtel Postpaid",
    )
    listed = await member.ok("GET", "/v1/expenses", params={"q": "Airtel"})
    assert len(listed["expenses"]) == 1
    bad = await member.call(
        "POST",
        f"/v1/bills/{bill['bill_id']}/occurrences/{(due + timedelta(days=1)).isoformat()}:pay",
        json={},
    )
    assert bad.status_code == 400 and "due_date" in bad.text
    # Skipping the paid occurrence, or paying a skipped one, is refused: not a 200 that
    # says the other status and records nothing.
    refused = await member.call("POST", path.replace(":pay", ":skip"), json={})
    assert refused.status_code == 400 and refused.json()["code"] == 9, refused.text
    listed = (await member.ok("GET", f"/v1/bills/{bill['bill_id']}/occurrences"))["occurrences"]
    upcoming = next(o["due_date"] for o in listed if o["status"] == "upcoming")
    later = f"/v1/bills/{bill['bill_id']}/occurrences/{upcoming}"
    assert (await member.ok("POST", f"{later}:skip", json={}))["status"] == "skipped"
    assert (await member.ok("POST", f"{later}:skip", json={}))["status"] == "skipped"
    refused = await member.call("POST", f"{later}:pay", json={})
    assert refused.status_code == 400 and "skipped" in refused.json()["message"], refused.text


async def test_a_payment_the_ledger_refuses_is_400_and_a_deleted_category_pays_uncategorized(
    client: httpx.AsyncClient,
) -> None:
    """The payment's expense is the ledger's to validate: its refusal is the client's
    400 naming the field it sent, never a 500; a bill whose category was deleted since
    still pays, uncategorized (the ledger refuses a deleted category)."""
    member = await sign_up(client)
    gym = await member.ok("POST", "/v1/categories", json={"name": "Gym"})
    due = date.today()
    bill = await member.ok(
        "POST",
        "/v1/bills",
        json={
            "payee": "Cult Fit",
            "amount": "1500",
            "currency": "INR",
            "recurrence": "FREQ=MONTHLY",
            "first_due": due.isoformat(),
            "category_id": gym["category_id"],
        },
    )
    path = f"/v1/bills/{bill['bill_id']}/occurrences/{due.isoformat()}:pay"
    refused = await member.call("POST", path, json={"paid_on": "2099-01-01"})
    assert refused.status_code == 400, refused.text
    violations = refused.json()["details"][0]["field_violations"]
    assert [v["field"] for v in violations] == ["paid_on"], violations
    await member.ok("DELETE", f"/v1/categories/{gym['category_id']}")

    def paid_or_refused(response: httpx.Response) -> bool:
        # Until billing hears of the deletion the ledger refuses the category: a 400, not a 500.
        assert response.status_code in (200, 400), response.text
        return response.status_code == 200

    paid = await eventually(lambda: member.call("POST", path, json={}), paid_or_refused)
    expense = await member.ok("GET", f"/v1/expenses/{paid.json()['expense_id']}")
    assert (expense["merchant"], expense["category_id"]) == ("Cult Fit", "")


async def test_a_budget_and_a_bill_whose_category_was_deleted_still_take_other_changes(
    client: httpx.AsyncClient,
) -> None:
    """Changing the amount re-checked the category the budget (bill) already had: once it
    was deleted, every update was a 400 naming category_id, a field the client never sent."""
    member = await sign_up(client)
    pets = await member.ok("POST", "/v1/categories", json={"name": "Pets"})
    budget = await member.ok(
        "POST",
        "/v1/budgets",
        json={"period": "month", "amount": "500", "currency": "INR", "category_id": pets["category_id"]},
    )
    bill = await member.ok(
        "POST",
        "/v1/bills",
        json={
            "payee": "Vet",
            "amount": "900",
            "currency": "INR",
            "recurrence": "FREQ=MONTHLY",
            "first_due": date.today().isoformat(),
            "category_id": pets["category_id"],
        },
    )
    await member.ok("DELETE", f"/v1/categories/{pets['category_id']}")
    probe = {"period": "week", "amount": "1", "currency": "INR", "category_id": pets["category_id"]}
    # Billing has heard of the deletion once a new budget in that category is refused.
    await eventually(
        lambda: member.call("POST", "/v1/budgets", json=probe), lambda response: response.status_code == 400
    )
    changed = await member.ok(
        "PATCH",
        f"/v1/budgets/{budget['budget_id']}",
        json={"budget": {"amount": "750"}, "update_mask": "amount"},
    )
    assert changed["amount"] == "750.00"
    changed_bill = await member.ok(
        "PATCH", f"/v1/bills/{bill['bill_id']}", json={"bill": {"amount": "950"}, "update_mask": "amount"}
    )
    assert changed_bill["amount"] == "950.00"


async def test_another_users_ids_are_not_found(client: httpx.AsyncClient) -> None:
    owner, stranger = await sign_up(client), await sign_up(client)
    budget = await owner.ok(
        "POST", "/v1/budgets", json={"period": "week", "amount": "500", "currency": "INR"}
    )
    bill = await owner.ok(
        "POST",
        "/v1/bills",
        json={
            "payee": "Gym",
            "amount": "1000",
            "currency": "INR",
            "recurrence": "FREQ=MONTHLY",
            "first_due": date.today().isoformat(),
        },
    )
    food = await owner.category("Food & dining")
    await owner.spend("500000.00", food, merchant="Jeweller")  # above the absolute large-expense limit
    alert = (await eventually(lambda: owner.alerts("large_expense"), lambda seen: len(seen) == 1))[0]
    for method, path in (
        ("GET", f"/v1/budgets/{budget['budget_id']}"),
        ("DELETE", f"/v1/budgets/{budget['budget_id']}"),
        ("GET", f"/v1/budgets/{budget['budget_id']}/history"),
        ("GET", f"/v1/bills/{bill['bill_id']}"),
        ("GET", f"/v1/bills/{bill['bill_id']}/occurrences"),
        ("POST", f"/v1/alerts/{alert['alert_id']}:ack"),
    ):
        response = await stranger.call(method, path, json={} if method == "POST" else None)
        assert response.status_code == 404, f"{method} {path}: {response.status_code}"
    assert (await stranger.ok("GET", "/v1/alerts")).get("alerts", []) == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"period": "month", "amount": "0", "currency": "INR"}, "amount"),
        ({"period": "month", "amount": "-5", "currency": "INR"}, "amount"),
        ({"period": "month", "amount": "10", "currency": "INR", "thresholds": [0]}, "thresholds"),
        ({"period": "month", "amount": "10", "currency": "INR", "thresholds": [1001]}, "thresholds"),
        ({"period": "fortnight", "amount": "10", "currency": "INR"}, "period"),
        (
            {
                "period": "month",
                "amount": "10",
                "currency": "INR",
                "category_id": "0190aaaa-0000-7000-8000-000000000000",
            },
            "category_id",
        ),
    ],
)
async def test_bad_budgets_are_400_naming_the_field(
    client: httpx.AsyncClient, body: dict, field: str
) -> None:
    member = await sign_up(client)
    response = await member.call("POST", "/v1/budgets", json=body)
    assert response.status_code == 400, response.text
    assert field in response.text


async def test_an_invalid_rrule_is_400_naming_recurrence(client: httpx.AsyncClient) -> None:
    member = await sign_up(client)
    body = {
        "payee": "Rent",
        "amount": "100",
        "currency": "INR",
        "recurrence": "FREQ=SOMETIMES",
        "first_due": "2026-01-31",
    }
    response = await member.call("POST", "/v1/bills", json=body)
    assert response.status_code == 400 and "recurrence" in response.text


async def spend_view(database: Database, user_id: str) -> list[tuple[Any, ...]]:
    async with database.transaction() as session:
        rows = await session.execute(
            storage.daily_spend.select()
            .where(storage.daily_spend.c.user_id == user_id)
            .order_by("day", "category_id")
        )
        return [tuple(row) for row in rows]


async def test_a_rebuild_from_the_ledger_equals_what_the_events_built(
    client: httpx.AsyncClient, mesh: Mesh
) -> None:
    member = await sign_up(client)
    food = await member.category("Food & dining")
    budget = await member.ok(
        "POST", "/v1/budgets", json={"period": "year", "amount": "90000", "currency": "INR"}
    )
    spent = [
        await member.spend(amount, food, day=f"{date.today().year}-01-0{day}")
        for day, amount in ((1, "10.00"), (2, "20.50"), (3, "30.25"))
    ]
    await member.ok("DELETE", f"/v1/expenses/{spent[0]['expense_id']}")

    async def status() -> str:
        return (await member.ok("GET", f"/v1/budgets/{budget['budget_id']}"))["status"]["spent"]

    await eventually(status, lambda seen: seen == "50.75")
    url = mesh.env.get("DATABASE_URL") or f"sqlite+aiosqlite:///{mesh.data_dir / 'billing.sqlite3'}"
    database = Database(url, schema="billing")
    try:
        incremental = await spend_view(database, member.user_id)
        command = [sys.executable, "-m", "services.billing", "rebuild", "--user-id", member.user_id]
        done = await asyncio.to_thread(
            subprocess.run, command, env=mesh.env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        assert "rebuilt 1 user(s), 2 expense(s)" in done.stdout
        assert await spend_view(database, member.user_id) == incremental
    finally:
        await database.dispose()
    assert await status() == "50.75"
