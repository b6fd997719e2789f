"""End to end through Envoy (REST/JSON, snake_case) to auth, user and ledger: create,
get, list with each filter, paginate 1,000 expenses while inserts happen,
update with and without a stale etag, delete, history, and 400s naming fields."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest

from tests.ledger.harness import PASSWORD, User
from tests.mesh import Mesh

pytestmark = pytest.mark.e2e


@pytest.fixture
async def http(ledger_mesh: Mesh) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=ledger_mesh.base_url, timeout=30, trust_env=False) as client:
        yield client


async def _sign_up(http: httpx.AsyncClient) -> User:
    body = {"email": f"rest.{secrets.token_hex(6)}@example.org", "password": PASSWORD, "display_name": "Rest"}
    answer = await http.post("/v1/auth/signup", json=body)
    assert answer.status_code == 200, answer.text
    tokens = answer.json()
    return User(tokens["user"]["user_id"], tokens["access_token"])


async def _ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, (response.status_code, response.text)
    return response.json()


def _violations(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 400, (response.status_code, response.text)
    body = response.json()
    found = {}
    for detail in body.get("details", []):
        for violation in detail.get("field_violations", []):
            found[violation["field"]] = violation["description"]
    return found


async def test_create_get_update_delete_history(http: httpx.AsyncClient) -> None:
    user = await _sign_up(http)
    headers = user.headers
    body = {
        "request_id": secrets.token_hex(8),
        "amount": "1250.50",
        "currency": "INR",
        "spent_on": "2026-11-21",
        "merchant": "Cafe",
        "note": "lunch",
        "tags": ["work"],
    }
    created = await _ok(await http.post("/v1/expenses", json=body, headers=headers))
    assert {key: created[key] for key in ("amount", "currency", "spent_on", "merchant", "source")} == {
        "amount": "1250.50",
        "currency": "INR",
        "spent_on": "2026-11-21",
        "merchant": "Cafe",
        "source": "manual",
    }
    assert await _ok(await http.post("/v1/expenses", json=body, headers=headers)) == created  # AIP-155 retry
    path = f"/v1/expenses/{created['expense_id']}"
    assert await _ok(await http.get(path, headers=headers)) == created

    patch = {"expense": {"amount": "99.99"}, "update_mask": "amount", "etag": created["etag"]}
    updated = await _ok(await http.patch(path, json=patch, headers=headers))
    assert updated["amount"] == "99.99" and updated["etag"] != created["etag"]
    stale = await http.patch(path, json={**patch, "expense": {"amount": "1.00"}}, headers=headers)
    assert stale.status_code == 409
    no_etag = await _ok(await http.patch(path, json={"expense": {"note": "dinner"}}, headers=headers))
    assert (no_etag["note"], no_etag["amount"]) == ("dinner", "99.99")

    stale_delete = await http.delete(path, params={"etag": created["etag"]}, headers=headers)
    assert stale_delete.status_code == 409
    assert (await http.delete(path, params={"etag": no_etag["etag"]}, headers=headers)).status_code == 200
    assert (await http.get(path, headers=headers)).status_code == 404
    history = (await _ok(await http.get(f"{path}/history", headers=headers)))["entries"]
    assert [(entry["version"], entry["action"]) for entry in history] == [
        (1, "create"),
        (2, "update"),
        (3, "update"),
        (4, "delete"),
    ]
    assert history[1]["before"]["amount"] == "1250.50" and history[1]["after"]["amount"] == "99.99"


async def test_list_with_each_filter(http: httpx.AsyncClient) -> None:
    user = await _sign_up(http)
    headers = user.headers
    categories = {
        c["name"]: c for c in (await _ok(await http.get("/v1/categories", headers=headers)))["categories"]
    }
    food = categories["Food & dining"]["category_id"]
    snacks = await _ok(
        await http.post("/v1/categories", json={"name": "Snacks", "parent_id": food}, headers=headers)
    )
    rows = [
        {"amount": "10.00", "spent_on": "2026-03-01", "category_id": food, "merchant": "Deli", "tags": ["a"]},
        {"amount": "20.00", "spent_on": "2026-03-02", "category_id": snacks["category_id"], "note": "chips"},
        {"amount": "30.00", "spent_on": "2026-03-03", "merchant": "Fuel Stop", "tags": ["car", "A"]},
    ]
    ids = []
    for row in rows:
        ids.append(
            (await _ok(await http.post("/v1/expenses", json={"currency": "INR", **row}, headers=headers)))[
                "expense_id"
            ]
        )

    async def listed(**params: str) -> list[str]:
        answer = await _ok(await http.get(f"/v1/expenses?{_query(params)}", headers=headers))
        assert answer["total_size"] == len(answer["expenses"])
        return [ids.index(expense["expense_id"]) for expense in answer["expenses"]]

    assert await listed() == [2, 1, 0]
    assert await listed(**{"from": "2026-03-02", "to": "2026-03-02"}) == [1]
    assert await listed(category_id=food) == [1, 0]
    assert await listed(q="fuel") == [2]
    assert await listed(q="CHIPS") == [1]
    assert await listed(currency="INR", min_amount="15", max_amount="30.00") == [2, 1]
    assert await listed(currency="JPY") == []
    assert await listed(tag="a") == [2, 0]
    assert await listed(order_by="amount asc") == [0, 1, 2]
    assert await listed(order_by="spent_on") == [0, 1, 2]
    # Through the gateway: a count that stopped at no cap says so; a skipped one is 0.
    counted = await _ok(await http.get("/v1/expenses?q=fuel", headers=headers))
    assert (counted["total_size"], counted["total_size_capped"]) == (1, False)
    bare = await _ok(await http.get("/v1/expenses?q=fuel&skip_total_size=true", headers=headers))
    assert (len(bare["expenses"]), bare["total_size"], bare["total_size_capped"]) == (1, 0, False)

    bad = await http.get("/v1/expenses", params={"page_size": "-1", "order_by": "color"}, headers=headers)
    assert {"page_size", "order_by"} <= set(_violations(bad))


async def test_form_encoded_spaces_in_query_parameters(http: httpx.AsyncClient) -> None:
    user = await _sign_up(http)
    answer = await http.get("/v1/expenses", params={"order_by": "amount desc"}, headers=user.headers)
    assert answer.status_code == 200, answer.text


def _query(params: dict[str, str]) -> str:
    """Spaces as %20: see test_form_encoded_spaces_in_query_parameters."""
    return urlencode(params, quote_via=quote)


async def test_paginate_a_thousand_expenses_while_inserts_happen(http: httpx.AsyncClient) -> None:
    user = await _sign_up(http)
    headers = user.headers
    for start in range(0, 1000, 500):
        rows = [
            {
                "request_id": f"e2e-{i}",
                "amount": f"{i % 97 + 1}.50",
                "currency": "INR",
                "spent_on": f"2026-0{i % 9 + 1}-0{i % 9 + 1}",
            }
            for i in range(start, start + 500)
        ]
        answer = await _ok(await http.post("/v1/expenses:import", json={"rows": rows}, headers=headers))
        assert answer["created_count"] == 500
    inserted: list[str] = []
    stop = asyncio.Event()

    async def insert_meanwhile() -> None:
        count = 0
        while not stop.is_set():
            count += 1
            body = {"amount": "1.00", "currency": "INR", "spent_on": f"2026-0{count % 9 + 1}-05"}
            inserted.append(
                (await _ok(await http.post("/v1/expenses", json=body, headers=headers)))["expense_id"]
            )

    writer = asyncio.create_task(insert_meanwhile())
    seen: list[str] = []
    params = {"page_size": "45"}
    try:
        while True:
            page = await _ok(await http.get("/v1/expenses", params=params, headers=headers))
            seen.extend(expense["expense_id"] for expense in page["expenses"])
            if not page["next_page_token"]:
                break
            params = {"page_size": "45", "page_token": page["next_page_token"]}
    finally:
        stop.set()
        await writer
    assert inserted
    assert len(seen) == len(set(seen)), "an expense appeared on two pages"
    assert len(set(seen) - set(inserted)) == 1000, "an expense that existed before the first page was missed"


async def test_bad_input_is_a_400_naming_the_field_never_a_500(http: httpx.AsyncClient) -> None:
    user = await _sign_up(http)
    headers = user.headers
    cases = [
        ({"amount": "1.234", "currency": "INR"}, "amount"),
        ({"amount": "0", "currency": "INR"}, "amount"),
        ({"amount": "-3", "currency": "INR"}, "amount"),
        ({"amount": "ten", "currency": "INR"}, "amount"),
        ({"amount": "1", "currency": "BTC"}, "currency"),
        ({"amount": "1", "currency": "INR", "spent_on": "2026-02-31"}, "spent_on"),
        ({"amount": "1", "currency": "INR", "tags": ["x" * 40]}, "tags"),
        ({"amount": "1", "currency": "INR", "request_id": "no spaces please"}, "request_id"),
    ]
    for body, field in cases:
        assert field in _violations(await http.post("/v1/expenses", json=body, headers=headers)), body
    assert (await _ok(await http.get("/v1/expenses", headers=headers)))["expenses"] == []
    unauthenticated = await http.get("/v1/expenses")
    assert unauthenticated.status_code == 401
