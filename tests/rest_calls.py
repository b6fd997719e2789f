"""REST calls several end-to-end tests make through the gateway: a fresh user's bearer
header, an expense created with a fresh request_id."""

from __future__ import annotations

import secrets
from typing import Any

import httpx

PASSWORD = "violet-harbor-tune-42-consistency"


async def signed_up(http: httpx.AsyncClient, label: str = "ryw") -> dict[str, str]:
    body = {"email": f"{label}.{secrets.token_hex(6)}@example.org", "password": PASSWORD, "display_name": "R"}
    answer = await http.post("/v1/auth/signup", json=body)
    assert answer.status_code == 200, answer.text
    return {"authorization": f"Bearer {answer.json()['access_token']}"}


async def new_expense(
    http: httpx.AsyncClient, headers: dict[str, str], amount: str, **fields: Any
) -> httpx.Response:
    body = {"request_id": secrets.token_hex(8), "amount": amount, "currency": "INR", **fields}
    created = await http.post("/v1/expenses", json=body, headers=headers)
    assert created.status_code == 200, created.text
    return created
