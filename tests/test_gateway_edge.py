"""The gateway's edge on a whole mesh (issue 21, items 6, 7, 9-12): what Envoy refuses
before a service sees it, in the services' JSON error shape, never a 5xx; CORS only for
configured origins; the headers every answer carries. (Retry-After of a service's 429:
tests/auth/test_auth_e2e.py; of the gateway's own: tests/test_gateway_config.py.)"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from services.kit.config.settings import MeshSettings
from tests.mesh import ALLOWED_ORIGIN, Mesh

pytestmark = pytest.mark.e2e
PASSWORD = "violet-harbor-tune-42-edge"
INVALID_ARGUMENT, PERMISSION_DENIED = 3, 7


@pytest.fixture
async def http(mesh_sqlite: Mesh) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=mesh_sqlite.base_url, timeout=10, trust_env=False) as client:
        yield client


@pytest.fixture
async def token(http: httpx.AsyncClient) -> str:
    body = {"email": f"edge.{secrets.token_hex(6)}@example.org", "password": PASSWORD, "display_name": "Edge"}
    answer = await http.post("/v1/auth/signup", json=body)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


def error(response: httpx.Response, status: int) -> dict[str, Any]:
    """The body of an error answer of `status`, checked to be the one JSON error shape."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"code", "message", "details"}, body
    assert isinstance(body["code"], int) and body["details"] == []
    return body


@pytest.mark.parametrize(
    "path",
    [
        "/v1/expenses?q=%FF",
        "/v1/expenses?q=caf%C3",
        "/v1/expenses?category_id=%ED%A0%80",  # a UTF-16 surrogate, not a character
        "/v1/expenses/%FF%FE",
        "/v1/expenses/%C0%AF",  # an overlong "/"
    ],
)
async def test_bytes_that_are_not_utf8_are_a_400(http: httpx.AsyncClient, token: str, path: str) -> None:
    response = await http.get(path, headers={"authorization": f"Bearer {token}"})
    body = error(response, 400)
    assert body["code"] == INVALID_ARGUMENT
    assert "UTF-8" in body["message"] and "Decode" not in body["message"]


async def test_valid_utf8_in_the_url_still_works(http: httpx.AsyncClient, token: str) -> None:
    response = await http.get(
        "/v1/expenses?q=caf%C3%A9+%E2%82%AC", headers={"authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200, response.text


async def test_a_body_that_is_not_utf8_is_a_400(http: httpx.AsyncClient) -> None:
    body = b'{"email": "a\xff@example.org", "password": "x"}'
    response = await http.post("/v1/auth/login", content=body, headers={"content-type": "application/json"})
    assert error(response, 400)["code"] == INVALID_ARGUMENT


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"]
)
async def test_only_json_enters_a_rest_route(http: httpx.AsyncClient, content_type: str) -> None:
    response = await http.post("/v1/auth/login", content=b"{}", headers={"content-type": content_type})
    assert error(response, 415)["code"] == INVALID_ARGUMENT


@pytest.mark.parametrize(
    "content_type", ["application/grpc", "application/grpc+proto", "application/grpc-web"]
)
async def test_a_grpc_body_never_reaches_a_service(http: httpx.AsyncClient, content_type: str) -> None:
    """Raw gRPC frames on a REST route made the service fail (5xx, counted toward outlier
    ejection). They get the 415 any other content type gets, in HTTP's form and the JSON
    error shape (Envoy would answer a gRPC content type in gRPC's form: HTTP 200, grpc-status)."""
    frame = b"\x00\x00\x00\x00\x02\x0a\x00"
    response = await http.post("/v1/auth/login", content=frame, headers={"content-type": content_type})
    body = error(response, 415)
    assert body["code"] == INVALID_ARGUMENT
    assert body["message"] == "content-type must be application/json"
    assert "grpc-status" not in response.headers and "grpc-message" not in response.headers
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_a_grpc_request_with_a_long_url_gets_the_http_answer_too(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/v1/auth/login?" + "x" * 5_000, content=b"", headers={"content-type": "application/grpc"}
    )
    assert error(response, 414)["code"] == INVALID_ARGUMENT


async def test_json_with_parameters_is_json(http: httpx.AsyncClient) -> None:
    body = {"email": f"nobody.{secrets.token_hex(6)}@example.org", "password": "not-the-password-at-all"}
    response = await http.post(
        "/v1/auth/login", json=body, headers={"content-type": "Application/JSON; charset=utf-8"}
    )
    assert response.status_code == 401, response.text


async def test_a_long_url_is_a_414(http: httpx.AsyncClient, token: str, mesh_sqlite: Mesh) -> None:
    limits = MeshSettings(data_dir=mesh_sqlite.data_dir).limits
    url = "/v1/expenses?q=" + "a" * limits.gateway_max_url_bytes
    response = await http.get(url, headers={"authorization": f"Bearer {token}"})
    assert error(response, 414)["message"] == "request URL too long"


@pytest.mark.parametrize("where", ["url", "header"])
async def test_headers_over_the_limit_are_a_431(
    http: httpx.AsyncClient, mesh_sqlite: Mesh, where: str
) -> None:
    """Over 16 KiB this was a 429 naming the service's metadata limit."""
    limits = MeshSettings(data_dir=mesh_sqlite.data_dir).limits
    big = "a" * (limits.gateway_max_request_headers_kib * 1024 + 1)
    url, headers = ("/v1/auth/jwks?q=" + big, {}) if where == "url" else ("/v1/auth/jwks", {"x-big": big})
    response = await http.get(url, headers=headers)
    body = error(response, 431)
    assert body["message"] == "request headers too large"


async def test_a_preflight_from_another_origin_is_refused(http: httpx.AsyncClient) -> None:
    headers = {"origin": "https://evil.example", "access-control-request-method": "POST"}
    response = await http.options("/v1/expenses", headers=headers)
    assert error(response, 403)["code"] == PERMISSION_DENIED
    assert "access-control-allow-origin" not in response.headers
    simple = await http.get("/v1/auth/jwks", headers={"origin": "https://evil.example"})
    assert simple.status_code == 200
    assert "access-control-allow-origin" not in simple.headers


async def test_a_preflight_from_the_allowed_origin_is_answered(http: httpx.AsyncClient) -> None:
    headers = {"origin": ALLOWED_ORIGIN, "access-control-request-method": "POST"}
    response = await http.options("/v1/expenses", headers=headers)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    simple = await http.get("/v1/auth/jwks", headers={"origin": ALLOWED_ORIGIN})
    assert simple.headers["access-control-allow-origin"] == ALLOWED_ORIGIN


async def test_token_answers_are_not_stored(http: httpx.AsyncClient) -> None:
    body = {"email": f"store.{secrets.token_hex(6)}@example.org", "password": PASSWORD, "display_name": "S"}
    signed_up = await http.post("/v1/auth/signup", json=body)
    assert signed_up.headers["cache-control"] == "no-store"
    logged_in = await http.post("/v1/auth/login", json={"email": body["email"], "password": PASSWORD})
    assert logged_in.headers["cache-control"] == "no-store"
    refreshed = await http.post("/v1/auth/refresh", json={"refresh_token": logged_in.json()["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("GET", "/v1/auth/jwks", {}),  # a service's answer
        ("GET", "/v1/expenses", {}),  # jwt_authn's 401
        ("GET", "/v1/nowhere", {"authorization": "Bearer x.y.z"}),
        ("GET", "/healthz", {}),
        ("OPTIONS", "/v1/expenses", {"origin": ALLOWED_ORIGIN, "access-control-request-method": "GET"}),
        ("GET", "/v1/expenses?q=%FF", {}),
    ],
)
async def test_every_answer_has_the_security_headers(
    http: httpx.AsyncClient, method: str, path: str, headers: dict[str, str]
) -> None:
    response = await http.request(method, path, headers=headers)
    assert response.status_code < 500, response.text
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
