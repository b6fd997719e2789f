"""The profile through Envoy's REST port on a whole mesh (`services.launcher up`),
on SQLite and on PostgreSQL: signup, an immediate read, a partial update,
validation errors as 400 with the field, and no token as 401."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.mesh import Mesh

pytestmark = pytest.mark.e2e
PASSWORD = "violet-harbor-tune-42-e2e"
BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"


@pytest.fixture
async def client(mesh: Mesh) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=mesh.base_url, timeout=10, trust_env=False) as http:
        yield http


async def sign_up(client: httpx.AsyncClient, display_name: str) -> dict:
    email = f"e2e.{secrets.token_hex(6)}@example.org"
    body = {"email": email, "password": PASSWORD, "display_name": display_name}
    response = await client.post("/v1/auth/signup", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def bearer(tokens: dict) -> dict[str, str]:
    return {"authorization": f"Bearer {tokens['access_token']}"}


def field_violations(response: httpx.Response) -> dict[str, str]:
    status = response.json()
    found = {}
    for detail in status["details"]:
        if detail["@type"] == BAD_REQUEST_TYPE:
            found.update({v["field"]: v["description"] for v in detail["field_violations"]})
    return found


async def test_signup_then_read_and_change_the_profile(client: httpx.AsyncClient) -> None:
    tokens = await sign_up(client, "Meera E2E")
    # Right after signup: no waiting for the user.registered event.
    first = await client.get("/v1/users/me", headers=bearer(tokens))
    assert first.status_code == 200, first.text
    profile = first.json()
    assert profile["user_id"] == tokens["user"]["user_id"]
    assert profile["email"] == tokens["user"]["email"]
    assert profile["display_name"] == "Meera E2E"
    assert profile["default_currency"] == "INR"
    assert profile["sms_auto_import"] is False  # always_print_primitive_fields

    patch = {
        "profile": {"time_zone": "Asia/Kolkata", "display_name": "Not Masked"},
        "update_mask": "time_zone",
    }
    changed = await client.patch("/v1/users/me", json=patch, headers=bearer(tokens))
    assert changed.status_code == 200, changed.text
    assert changed.json()["time_zone"] == "Asia/Kolkata"

    again = (await client.get("/v1/users/me", headers=bearer(tokens))).json()
    assert again["time_zone"] == "Asia/Kolkata"
    assert again["display_name"] == "Meera E2E"
    assert again["create_time"] == profile["create_time"]


async def test_a_bad_time_zone_is_a_400_naming_the_field(client: httpx.AsyncClient) -> None:
    tokens = await sign_up(client, "Typo E2E")
    patch = {"profile": {"time_zone": "Asia/Kolkatta"}, "update_mask": "time_zone"}
    response = await client.patch("/v1/users/me", json=patch, headers=bearer(tokens))
    assert response.status_code == 400, response.text
    assert "Asia/Kolkatta" in field_violations(response)["profile.time_zone"]
    unchanged = (await client.get("/v1/users/me", headers=bearer(tokens))).json()
    assert unchanged["time_zone"] == "UTC"


async def test_an_output_only_field_in_the_mask_is_a_400(client: httpx.AsyncClient) -> None:
    tokens = await sign_up(client, "Sneaky E2E")
    patch = {"profile": {"email": "someone.else@example.org"}, "update_mask": "email"}
    response = await client.patch("/v1/users/me", json=patch, headers=bearer(tokens))
    assert response.status_code == 400, response.text
    assert set(field_violations(response)) == {"update_mask"}


@pytest.mark.parametrize("headers", [{}, {"authorization": "Bearer not.a.jwt"}])
async def test_no_valid_token_is_a_401(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    assert (await client.get("/v1/users/me", headers=headers)).status_code == 401
    patch = {"profile": {"display_name": "Nobody"}, "update_mask": "display_name"}
    assert (await client.patch("/v1/users/me", json=patch, headers=headers)).status_code == 401
