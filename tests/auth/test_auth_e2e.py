"""The auth API through Envoy's REST port on a whole mesh (`services.launcher up`),
on SQLite and on PostgreSQL: the token lifecycle, sessions, password change,
and every client mistake answered with its own 4xx status, never a 500."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from services.auth.keys import load_key_ring
from services.auth.settings import AuthMeshSettings
from services.kit.config.settings import MeshSettings
from services.kit.domain.ids import new_id
from tests.mesh import Mesh

pytestmark = pytest.mark.e2e
PASSWORD = "violet-harbor-tune-42-auth"
BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"
RETRY_INFO_TYPE = "type.googleapis.com/google.rpc.RetryInfo"
# Revocation reaches every service within a second (session checks are cached 0.5 s).
REVOCATION_WAIT_SECONDS = 3.0


class Gateway:
    """An HTTP client of the gateway that fails the test on any 5xx."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = await self.http.request(method, path, **kwargs)
        assert response.status_code < 500, f"{method} {path} -> {response.status_code} {response.text}"
        return response

    async def post(
        self, path: str, body: Any = None, token: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return await self.request("POST", path, json=body, headers=headers, **kwargs)

    async def get(self, path: str, token: str | None = None) -> httpx.Response:
        headers = {"authorization": f"Bearer {token}"} if token is not None else {}
        return await self.request("GET", path, headers=headers)

    async def delete(self, path: str, token: str) -> httpx.Response:
        return await self.request("DELETE", path, headers={"authorization": f"Bearer {token}"})

    async def sign_up(self, display_name: str = "Auth E2E") -> dict[str, Any]:
        email = f"auth.e2e.{secrets.token_hex(6)}@example.org"
        body = {"email": email, "password": PASSWORD, "display_name": display_name}
        response = await self.post("/v1/auth/signup", body)
        assert response.status_code == 200, response.text
        return response.json()

    async def log_in(self, email: str, password: str = PASSWORD) -> httpx.Response:
        return await self.post("/v1/auth/login", {"email": email, "password": password})

    async def eventually(self, path: str, token: str, status: int) -> int:
        """The status of GET path once it is `status`, or the last one after the wait."""
        deadline = time.monotonic() + REVOCATION_WAIT_SECONDS
        while True:
            answer = (await self.get(path, token)).status_code
            if answer == status or time.monotonic() > deadline:
                return answer
            await asyncio.sleep(0.1)


@pytest.fixture
async def gateway(mesh: Mesh) -> AsyncIterator[Gateway]:
    async with httpx.AsyncClient(base_url=mesh.base_url, timeout=10, trust_env=False) as http:
        yield Gateway(http)


def field_violations(response: httpx.Response) -> dict[str, str]:
    found = {}
    for detail in response.json()["details"]:
        if detail["@type"] == BAD_REQUEST_TYPE:
            found.update({v["field"]: v["description"] for v in detail["field_violations"]})
    return found


# --- the token lifecycle ------------------------------------------------------------------


async def test_signup_login_refresh_logout(gateway: Gateway) -> None:
    signed_up = await gateway.sign_up("Lifecycle E2E")
    assert set(signed_up) == {
        "access_token",
        "refresh_token",
        "token_type",
        "expires_in",
        "user",
        "session_id",
    }
    assert (signed_up["token_type"], signed_up["expires_in"]) == ("Bearer", 900)
    assert set(signed_up["user"]) == {"user_id", "email", "display_name", "email_verified"}
    assert signed_up["user"]["email_verified"] is False  # until the mailed link is followed
    email = signed_up["user"]["email"]

    login = await gateway.log_in(email.upper())
    assert login.status_code == 200, login.text
    logged_in = login.json()
    assert logged_in["user"] == signed_up["user"]
    sessions = await gateway.get("/v1/auth/sessions", logged_in["access_token"])
    assert sessions.status_code == 200, sessions.text
    current = {s["session_id"]: s["current"] for s in sessions.json()["sessions"]}
    assert current == {signed_up["session_id"]: False, logged_in["session_id"]: True}

    # Refresh rotates; the old token is refused and its reuse ends the whole family.
    refreshed = await gateway.post("/v1/auth/refresh", {"refresh_token": logged_in["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.text
    newest = refreshed.json()
    assert newest["session_id"] == logged_in["session_id"]
    assert (await gateway.get("/v1/auth/sessions", newest["access_token"])).status_code == 200
    reuse = await gateway.post("/v1/auth/refresh", {"refresh_token": logged_in["refresh_token"]})
    assert reuse.status_code == 401
    assert (
        await gateway.post("/v1/auth/refresh", {"refresh_token": newest["refresh_token"]})
    ).status_code == 401
    assert await gateway.eventually("/v1/auth/sessions", newest["access_token"], 401) == 401

    # Logout ends the signup session: its token stops working at every service.
    logout = await gateway.post("/v1/auth/logout", {"refresh_token": signed_up["refresh_token"]})
    assert logout.status_code == 200, logout.text
    assert logout.json() == {"revoked_sessions": 1}
    assert await gateway.eventually("/v1/auth/sessions", signed_up["access_token"], 401) == 401
    assert await gateway.eventually("/v1/users/me", signed_up["access_token"], 401) == 401
    assert (
        await gateway.post("/v1/auth/refresh", {"refresh_token": signed_up["refresh_token"]})
    ).status_code == 401


async def test_logout_of_all_sessions(gateway: Gateway) -> None:
    first = await gateway.sign_up()
    second = (await gateway.log_in(first["user"]["email"])).json()
    logout = await gateway.post(
        "/v1/auth/logout", {"refresh_token": second["refresh_token"], "all_sessions": True}
    )
    assert logout.json() == {"revoked_sessions": 2}
    for tokens in (first, second):
        assert await gateway.eventually("/v1/users/me", tokens["access_token"], 401) == 401


async def test_password_change_ends_other_sessions_only(gateway: Gateway) -> None:
    current = await gateway.sign_up()
    other = (await gateway.log_in(current["user"]["email"])).json()
    body = {"current_password": PASSWORD, "new_password": "amber-lantern-drift-77-e2e"}
    changed = await gateway.post("/v1/auth/password", body, token=current["access_token"])
    assert changed.status_code == 200, changed.text
    assert changed.json() == {"revoked_sessions": 1}
    assert await gateway.eventually("/v1/auth/sessions", other["access_token"], 401) == 401
    assert (await gateway.get("/v1/auth/sessions", current["access_token"])).status_code == 200
    assert (await gateway.get("/v1/users/me", current["access_token"])).status_code == 200
    wrong = await gateway.post("/v1/auth/password", body, token=current["access_token"])
    assert wrong.status_code == 400
    assert set(field_violations(wrong)) == {"current_password"}


async def test_another_users_session_is_not_found_like_an_unknown_one(gateway: Gateway) -> None:
    mine, theirs = await gateway.sign_up(), await gateway.sign_up()
    foreign = await gateway.delete(f"/v1/auth/sessions/{theirs['session_id']}", mine["access_token"])
    unknown = await gateway.delete(f"/v1/auth/sessions/{new_id()}", mine["access_token"])
    assert foreign.status_code == unknown.status_code == 404
    assert foreign.json()["message"] == unknown.json()["message"] == "session not found"
    assert (await gateway.get("/v1/auth/sessions", theirs["access_token"])).status_code == 200
    own = await gateway.delete(f"/v1/auth/sessions/{mine['session_id']}", mine["access_token"])
    assert own.status_code == 200, own.text
    assert await gateway.eventually("/v1/auth/sessions", mine["access_token"], 401) == 401


async def test_jwks_is_public(gateway: Gateway) -> None:
    response = await gateway.get("/v1/auth/jwks")
    assert response.status_code == 200
    keys = response.json()["keys"]
    assert keys and all(key["alg"] == "RS256" and key["kty"] == "RSA" for key in keys)


# --- client mistakes ------------------------------------------------------------------------


async def test_malformed_json_is_400(gateway: Gateway) -> None:
    for path in ("/v1/auth/signup", "/v1/auth/login", "/v1/auth/refresh"):
        response = await gateway.request(
            "POST", path, content=b'{"email": "a@b.org", ', headers={"content-type": "application/json"}
        )
        assert response.status_code == 400, response.text


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, {"email", "password", "display_name"}),
        ({"email": "not-an-email", "password": PASSWORD, "display_name": "A"}, {"email"}),
        ({"email": "weak@example.org", "password": "password1", "display_name": "A"}, {"password"}),
        ({"email": "short@example.org", "password": "short", "display_name": "A"}, {"password"}),
    ],
)
async def test_invalid_signups_are_400_naming_the_field(
    gateway: Gateway, body: dict[str, str], fields: set[str]
) -> None:
    response = await gateway.post("/v1/auth/signup", body)
    assert response.status_code == 400, response.text
    assert set(field_violations(response)) == fields


async def test_duplicate_email_is_409(gateway: Gateway) -> None:
    first = await gateway.sign_up()
    body = {"email": first["user"]["email"].upper(), "password": PASSWORD, "display_name": "Again"}
    response = await gateway.post("/v1/auth/signup", body)
    assert response.status_code == 409, response.text


async def test_oversized_body_is_413(gateway: Gateway, mesh: Mesh) -> None:
    limit = MeshSettings(data_dir=mesh.data_dir).limits.gateway_max_body_bytes
    body = {"email": "big@example.org", "password": PASSWORD, "display_name": "x" * (limit + 1)}
    response = await gateway.post("/v1/auth/signup", body)
    assert response.status_code == 413


async def test_wrong_password_and_unknown_email_are_the_same_401(gateway: Gateway) -> None:
    known = await gateway.sign_up()
    wrong = await gateway.log_in(known["user"]["email"], "not-the-password-at-all")
    unknown = await gateway.log_in(f"nobody.{secrets.token_hex(6)}@example.org", "not-the-password-at-all")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()


async def test_repeated_failures_are_429_with_retry_info(gateway: Gateway, mesh: Mesh) -> None:
    limit = AuthMeshSettings(data_dir=mesh.data_dir).auth.login_failures_per_account_ip
    victim = await gateway.sign_up()
    email = victim["user"]["email"]
    for _ in range(limit):
        assert (await gateway.log_in(email, "guessing-the-password")).status_code == 401
    throttled = await gateway.log_in(email)
    assert throttled.status_code == 429, throttled.text
    assert RETRY_INFO_TYPE in {detail["@type"] for detail in throttled.json()["details"]}
    # RFC 9110 Retry-After, whole seconds, at most the failure window.
    window = AuthMeshSettings(data_dir=mesh.data_dir).auth.login_failure_window_seconds
    assert 1 <= int(throttled.headers["retry-after"]) <= window


# --- tokens the gateway or the services refuse -------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _bad_tokens(mesh: Mesh, good: str) -> dict[str, str]:
    settings = MeshSettings(data_dir=mesh.data_dir)
    key = load_key_ring(settings).current
    claims = jwt.decode(good, options={"verify_signature": False})
    now = int(time.time())
    expired = {**claims, "iat": now - 4000, "exp": now - 3000}
    headers = {"kid": key.kid, "typ": "at+jwt"}
    unsigned = f"{_b64(json.dumps({'alg': 'none', **headers}).encode())}.{_b64(json.dumps(claims).encode())}."
    head, _, signature = good.split(".")
    return {
        "garbage": "not.a.jwt",
        "expired": jwt.encode(expired, key.private_key, algorithm="RS256", headers=headers),
        "forged": jwt.encode(
            claims, rsa.generate_private_key(65537, 2048), algorithm="RS256", headers=headers
        ),
        "alg none": unsigned,
        "tampered": f"{head}.{_b64(json.dumps({**claims, 'sub': new_id()}).encode())}.{signature}",
        "wrong typ": jwt.encode(
            claims, key.private_key, algorithm="RS256", headers={**headers, "typ": "JWT"}
        ),
        "wrong audience": jwt.encode(
            {**claims, "aud": "elsewhere"}, key.private_key, "RS256", headers=headers
        ),
    }


async def test_missing_and_bad_tokens_are_401(gateway: Gateway, mesh: Mesh) -> None:
    tokens = await gateway.sign_up()
    assert (await gateway.get("/v1/auth/sessions", tokens["access_token"])).status_code == 200
    assert (await gateway.get("/v1/auth/sessions")).status_code == 401
    for name, token in _bad_tokens(mesh, tokens["access_token"]).items():
        # Envoy's jwt_authn answers a foreign audience with 403 ("Audiences in Jwt are not allowed").
        expected = 403 if name == "wrong audience" else 401
        for path in ("/v1/auth/sessions", "/v1/users/me"):
            status = (await gateway.get(path, token)).status_code
            assert status == expected, f"{name} token on {path}: {status}"


async def test_clients_cannot_choose_the_address_they_are_throttled_by(gateway: Gateway) -> None:
    """Envoy (use_remote_address) overwrites what a client claims about its address."""
    spoofed = {"x-envoy-external-address": "203.0.113.9", "x-forwarded-for": "203.0.113.10"}
    body = {
        "email": f"spoof.{secrets.token_hex(6)}@example.org",
        "password": PASSWORD,
        "display_name": "Spoof",
    }
    tokens = (await gateway.request("POST", "/v1/auth/signup", json=body, headers=spoofed)).json()
    sessions = (await gateway.get("/v1/auth/sessions", tokens["access_token"])).json()["sessions"]
    assert [session["ip_address"] for session in sessions] == ["127.0.0.1"]
