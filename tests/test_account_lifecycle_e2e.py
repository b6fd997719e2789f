"""The account lifecycle through Envoy on a whole mesh (PostgreSQL, secured NATS): a
password reset request answered alike for any email, logout of every session with only an
access token, and account deletion that leaves no row of the user in any schema (but the
record of the erasure, by id alone, until the retention purge)."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from datetime import date, timedelta

import httpx
import psycopg
import pytest

from tests.infra import REDIS_URL, fresh_postgres_database, require
from tests.mesh import Mesh, forget_run, on_secured_nats

pytestmark = pytest.mark.e2e
PASSWORD = "violet-harbor-tune-42-life"
ERASURE_TIMEOUT_SECONDS = 30.0
SCHEMAS = ("auth", "user", "ledger", "reporting", "billing", "ds", "notification")


# Every service holding user data (templating holds none: templates only).
SERVICES = ["auth", "user", "ledger", "reporting", "billing", "ds", "notification"]


@pytest.fixture(scope="module")
def lifecycle_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    require("Redis", "127.0.0.1", 6379)
    with fresh_postgres_database() as database_url:
        env = {"DATABASE_URL": database_url, "REDIS_URL": REDIS_URL}
        mesh = Mesh(tmp_path_factory.mktemp("mesh-lifecycle"), SERVICES, env=env)
        with on_secured_nats(mesh):
            try:
                mesh.start()
                yield mesh
            finally:
                mesh.stop()
                forget_run(mesh)


@pytest.fixture
async def client(lifecycle_mesh: Mesh) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=lifecycle_mesh.base_url, timeout=10, trust_env=False) as http:
        yield http


def _dsn(mesh: Mesh) -> str:
    return mesh.env["DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")


async def _sign_up(client: httpx.AsyncClient) -> tuple[str, dict]:
    email = f"life.{secrets.token_hex(6)}@example.org"
    response = await client.post(
        "/v1/auth/signup", json={"email": email, "password": PASSWORD, "display_name": "Life Cycle"}
    )
    assert response.status_code == 200, response.text
    return email, response.json()


def _bearer(tokens: dict) -> dict[str, str]:
    return {"authorization": f"Bearer {tokens['access_token']}"}


async def _rows_of(dsn: str, user_id: str) -> dict[str, int]:
    """Rows naming the user in every table of every service schema with a user_id column
    (auth's users by their id)."""
    found: dict[str, int] = {}
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as connection:
        columns = await connection.execute(
            "SELECT table_schema, table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = ANY(%s) AND column_name = ANY(%s)",
            (list(SCHEMAS), ["user_id", "erased_user_id"]),
        )
        targets = [*await columns.fetchall(), ("auth", "users", "id")]
        for schema, table, column in targets:
            result = await connection.execute(
                f'SELECT count(*) FROM "{schema}"."{table}" WHERE "{column}" = %s', (user_id,)
            )
            (count,) = await result.fetchone()  # type: ignore[misc]
            if count:
                found[f"{schema}.{table}"] = count
    return found


async def _until(check, timeout: float = ERASURE_TIMEOUT_SECONDS):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.25)


async def test_reset_request_answers_alike_and_logout_needs_only_an_access_token(
    client: httpx.AsyncClient,
) -> None:
    email, tokens = await _sign_up(client)
    known = await client.post("/v1/auth/password:reset-request", json={"email": email})
    unknown = await client.post("/v1/auth/password:reset-request", json={"email": f"x{email}"})
    assert (known.status_code, known.content) == (unknown.status_code, unknown.content) == (200, b"{}")

    second = (await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})).json()
    logout = await client.post("/v1/auth/logout", json={"all_sessions": True}, headers=_bearer(tokens))
    assert logout.status_code == 200, logout.text
    assert logout.json()["revoked_sessions"] == 2
    for session in (tokens, second):
        refused = await client.get("/v1/auth/sessions", headers=_bearer(session))
        assert refused.status_code == 401


async def test_the_export_holds_all_of_the_users_data_and_no_one_elses(client: httpx.AsyncClient) -> None:
    email, tokens = await _sign_up(client)
    _, other = await _sign_up(client)
    expenses = []
    for index in range(3):
        body = {
            "request_id": secrets.token_hex(8),
            "amount": f"1{index}.00",
            "currency": "INR",
            "note": "tea",
        }
        created = await client.post("/v1/expenses", json=body, headers=_bearer(tokens))
        assert created.status_code == 200, created.text
        expenses.append(created.json()["expense_id"])
    others = {"request_id": secrets.token_hex(8), "amount": "99.00", "currency": "INR"}
    assert (await client.post("/v1/expenses", json=others, headers=_bearer(other))).status_code == 200
    budget = {"request_id": secrets.token_hex(8), "period": "month", "amount": "500.00", "currency": "INR"}
    made = await client.post("/v1/budgets", json=budget, headers=_bearer(tokens))
    assert made.status_code == 200, made.text
    first_due = (date.today() - timedelta(days=45)).isoformat()
    bill = {
        "request_id": secrets.token_hex(8),
        "payee": "Power Co",
        "amount": "900.00",
        "currency": "INR",
        "recurrence": "FREQ=MONTHLY",
        "first_due": first_due,
    }
    billed = await client.post("/v1/bills", json=bill, headers=_bearer(tokens))
    assert billed.status_code == 200, billed.text

    answer = await client.get("/v1/users/me:export", headers=_bearer(tokens))
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    assert "attachment" in answer.headers["content-disposition"]
    document = answer.json()
    assert document["account"]["email"] == email and document["profile"]["display_name"] == "Life Cycle"
    assert sorted(e["expense_id"] for e in document["expenses"]) == sorted(expenses)
    assert {e["note"] for e in document["expenses"]} == {"tea"}
    assert [b["budget_id"] for b in document["budgets"]] == [made.json()["budget_id"]]
    assert len(document["categories"]) >= 10  # the defaults
    for part in ("alerts", "notifications", "contact_points", "sms_reviews"):
        assert isinstance(document[part], list), part
    # Past periods only (the current one is the budget's status): none yet for a new budget.
    history = {"budget_id": made.json()["budget_id"], "currency": "INR", "periods": []}
    assert document["budget_history"] == [history]
    (occurrences,) = document["bill_occurrences"]
    assert occurrences["bill_id"] == billed.json()["bill_id"] == document["bills"][0]["bill_id"]
    assert occurrences["occurrences"][0]["due_date"] == first_due
    # This month's summary (reporting applies the creates' events: it may lag a moment).
    assert all(report["period"] == "month" for report in document["monthly_reports"])
    assert "time_zone" in document["notification_preferences"]
    assert document["export_status"] == {"complete": True}
    assert (await client.get("/v1/users/me:export")).status_code == 401


async def test_a_deleted_account_leaves_no_row_in_any_schema(
    client: httpx.AsyncClient, lifecycle_mesh: Mesh
) -> None:
    dsn = _dsn(lifecycle_mesh)
    email, tokens = await _sign_up(client)
    user_id = tokens["user"]["user_id"]
    expense = {"request_id": secrets.token_hex(8), "amount": "45.00", "currency": "INR", "merchant": "Cafe"}
    created = await client.post("/v1/expenses", json=expense, headers=_bearer(tokens))
    assert created.status_code == 200, created.text

    async def everywhere() -> bool:
        rows = await _rows_of(dsn, user_id)
        return all(f"{schema}.expenses" in rows for schema in ("ledger", "reporting", "billing"))

    # Every copy made first: an expense event applied after the erasure would bring one back.
    assert await _until(everywhere), await _rows_of(dsn, user_id)
    assert "user.profiles" in await _rows_of(dsn, user_id)

    wrong = await client.request("DELETE", "/v1/users/me", json={"password": "nope"}, headers=_bearer(tokens))
    assert wrong.status_code == 400, wrong.text
    assert wrong.json()["details"][0]["field_violations"][0]["field"] == "password", wrong.text
    deleted = await client.request(
        "DELETE", "/v1/users/me", json={"password": PASSWORD}, headers=_bearer(tokens)
    )
    assert deleted.status_code == 200, deleted.text

    # What stays is the record of the erasure, the id alone, in the services fed by other
    # producers' events: a late expense, profile or signup event of the user is skipped, then
    # the record goes with retention.inbox_hours.
    erasure_records = {
        "user.erased_users": 1,
        "reporting.erased_users": 1,
        "billing.erased_users": 1,
        "ds.erased_users": 1,
        "notification.erased_users": 1,
    }

    async def nothing_left() -> bool:
        return await _rows_of(dsn, user_id) == erasure_records

    assert await _until(nothing_left), await _rows_of(dsn, user_id)
    assert (await client.get("/v1/users/me", headers=_bearer(tokens))).status_code == 401
    login = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 401
