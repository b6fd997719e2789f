"""The gateway's edge on a whole mesh (issue 21, items 6, 7, 9-12): what Envoy refuses
before a service sees it, in the services' JSON error shape, never a 5xx; CORS only for
configured origins; the headers every answer carries. (Retry-After of a service's 429:
tests/auth/test_auth_e2e.py; of the gateway's own: tests/test_gateway_config.py.)"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from services.kit.config.settings import MeshSettings
from tests.mesh import ALLOWED_ORIGIN, Mesh

pytestmark = pytest.mark.e2e
PASSWORD = "violet-harbor-tune-42-edge"
INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED, UNAUTHENTICATED = 3, 5, 7, 16
ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"


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
    """The body of an error answer of `status`, checked to be the one JSON error shape:
    google.rpc.Status with an ErrorInfo naming a stable reason."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"code", "message", "details"}, body
    assert isinstance(body["code"], int) and isinstance(body["message"], str)
    infos = [detail for detail in body["details"] if detail["@type"] == ERROR_INFO]
    assert len(infos) == 1 and infos[0]["domain"] == "expense-mesh", body
    return body


def reason(body: dict[str, Any]) -> str:
    return str(next(d["reason"] for d in body["details"] if d["@type"] == ERROR_INFO))


def violations(body: dict[str, Any]) -> dict[str, str]:
    bad = [d for d in body["details"] if d["@type"] == BAD_REQUEST]
    return {v["field"]: v["description"] for d in bad for v in d["field_violations"]}


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


# ------------------------------------------------------------- strict input (issue 18, item 1)


def auth(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def test_an_unknown_body_field_is_named(http: httpx.AsyncClient, token: str) -> None:
    """`date` was dropped silently and the expense booked today."""
    body = {"request_id": secrets.token_hex(8), "amount": "45.00", "currency": "INR", "date": "2026-11-02"}
    response = await http.post("/v1/expenses", json=body, headers=auth(token))
    refused = error(response, 400)
    assert refused["code"] == INVALID_ARGUMENT and reason(refused) == "UNKNOWN_FIELD"
    assert list(violations(refused)) == ["date"]
    assert refused["message"].startswith("date is not a field of this request")


async def test_a_name_beyond_the_bmp_is_quoted_back_as_utf8(http: httpx.AsyncClient, token: str) -> None:
    """Found by schemathesis: an escaped surrogate pair (`"\\ud83d\\udcb8"`, as json.dumps
    writes 💸) came back as two 3-byte halves, and the refusal was not UTF-8."""
    body = json.dumps({"request_id": secrets.token_hex(8), "💸tip": "1"})  # ASCII, the pair escaped
    headers = {**auth(token), "content-type": "application/json"}
    response = await http.post("/v1/expenses", content=body, headers=headers)
    assert list(violations(error(response, 400))) == ["💸tip"]
    lone = await http.post("/v1/expenses", content='{"merchant": "\\ud83d"}', headers=headers)
    refused = error(lone, 400)
    assert reason(refused) == "MALFORMED_JSON" and "lone UTF-16 surrogate" in refused["message"]


async def test_headers_grpc_metadata_cannot_carry_are_dropped(http: httpx.AsyncClient, token: str) -> None:
    """Found by schemathesis: a header named with `~` (an HTTP token character, no gRPC
    metadata key's) made the service's gRPC server fail the call: a 500."""
    response = await http.get("/v1/budgets", headers={**auth(token), "x-odd~name": "1", "j^k": "2"})
    assert response.status_code == 200, response.text


async def test_a_field_of_a_nested_message_gets_a_hint(http: httpx.AsyncClient, token: str) -> None:
    response = await http.patch("/v1/users/me", json={"time_zone": "Asia/Kolkata"}, headers=auth(token))
    refused = error(response, 400)
    assert "did you mean profile.time_zone?" in violations(refused)["time_zone"]


async def test_an_amount_sent_as_a_number_is_explained(http: httpx.AsyncClient, token: str) -> None:
    body = {"request_id": secrets.token_hex(8), "amount": 45.5, "currency": "INR"}
    response = await http.post("/v1/expenses", json=body, headers=auth(token))
    refused = error(response, 400)
    assert refused["message"] == 'amount must be a decimal string such as "45.50"'
    assert reason(refused) == "WRONG_TYPE"


async def test_wrong_json_types_name_the_field_and_the_form(http: httpx.AsyncClient, token: str) -> None:
    body = {"request_id": 7, "amount": "1.00", "tags": "food", "merchant": {"name": "x"}}
    response = await http.post("/v1/expenses", json=body, headers=auth(token))
    assert violations(error(response, 400)) == {
        "request_id": "must be a string",
        "tags": "must be an array of strings",
        "merchant": "must be a string",
    }


async def test_nested_unknown_fields_and_camel_case_names(http: httpx.AsyncClient, token: str) -> None:
    """lowerCamel names are the proto3 JSON mapping's too; a nested unknown field is named by path."""
    created = await http.post(
        "/v1/expenses",
        json={
            "requestId": secrets.token_hex(8),
            "amount": "3.00",
            "currency": "INR",
            "spentOn": "2026-11-02",
        },
        headers=auth(token),
    )
    assert created.status_code == 200, created.text
    assert created.json()["spent_on"] == "2026-11-02"
    expense_id = created.json()["expense_id"]
    response = await http.patch(
        f"/v1/expenses/{expense_id}",
        json={"expense": {"amount": "4.00", "colour": "red"}, "update_mask": "amount"},
        headers=auth(token),
    )
    assert list(violations(error(response, 400))) == ["expense.colour"]


@pytest.mark.parametrize(
    ("body", "words"),
    [(b'{"amount": "1.00",', "unexpected end"), (b'{"amount" "1"}', "expected ':'"), (b"[1]", "JSON object")],
)
async def test_malformed_json_is_a_400_in_our_words(
    http: httpx.AsyncClient, token: str, body: bytes, words: str
) -> None:
    headers = {**auth(token), "content-type": "application/json"}
    response = await http.post("/v1/expenses", content=body, headers=headers)
    refused = error(response, 400)
    assert words in refused["message"] and "Unexpected" not in refused["message"]


async def test_unknown_and_mistyped_query_parameters(http: httpx.AsyncClient, token: str) -> None:
    response = await http.get("/v1/expenses?category=food&page_size=ten", headers=auth(token))
    assert violations(error(response, 400)) == {
        "category": "is not a query parameter of this request",
        "page_size": "must be an integer",
    }
    fine = await http.get("/v1/expenses?page_size=5&q=tea", headers=auth(token))
    assert fine.status_code == 200, fine.text


# ------------------------------------------------------------- one error shape (item 2)


async def test_an_unknown_route_is_a_404_with_or_without_a_token(http: httpx.AsyncClient, token: str) -> None:
    for headers in ({}, auth(token)):
        refused = error(await http.get("/v1/nowhere", headers=headers), 404)
        assert refused["code"] == NOT_FOUND and reason(refused) == "NO_ROUTE"


async def test_missing_and_invalid_tokens_are_told_apart(http: httpx.AsyncClient) -> None:
    missing = error(await http.get("/v1/expenses"), 401)
    assert missing["code"] == UNAUTHENTICATED and reason(missing) == "TOKEN_MISSING"
    invalid = error(await http.get("/v1/expenses", headers={"authorization": "Bearer x.y.z"}), 401)
    assert reason(invalid) == "TOKEN_INVALID" and "Jwt" not in invalid["message"]


async def test_the_bearer_scheme_is_case_insensitive(http: httpx.AsyncClient, token: str) -> None:
    """RFC 9110 11.1: "bearer <token>" is the same credential (the services and Kong took
    it; Envoy's prefix match did not, and answered the valid token TOKEN_INVALID)."""
    for scheme in ("bearer", "Bearer"):
        answer = await http.get("/v1/categories", headers={"authorization": f"{scheme} {token}"})
        assert answer.status_code == 200, (scheme, answer.text)
    invalid = error(await http.get("/v1/expenses", headers={"authorization": "bearer x.y.z"}), 401)
    assert reason(invalid) == "TOKEN_INVALID"


async def test_a_body_over_the_limit_is_a_413(http: httpx.AsyncClient, token: str, mesh_sqlite: Mesh) -> None:
    limits = MeshSettings(data_dir=mesh_sqlite.data_dir).limits
    body = b'{"note": "' + b"a" * limits.gateway_max_body_bytes + b'"}'
    headers = {**auth(token), "content-type": "application/json"}
    refused = error(await http.post("/v1/expenses", content=body, headers=headers), 413)
    assert reason(refused) == "BODY_TOO_LARGE"


async def test_a_service_error_has_the_same_shape(http: httpx.AsyncClient, token: str) -> None:
    refused = error(
        await http.get("/v1/expenses/00000000-0000-4000-8000-000000000000", headers=auth(token)), 404
    )
    assert refused["code"] == NOT_FOUND and reason(refused) == "NOT_FOUND"


# ------------------------------------------------------------- etags (item 5)


async def test_etags_travel_as_headers_and_bare_values_match(http: httpx.AsyncClient, token: str) -> None:
    body = {"request_id": secrets.token_hex(8), "amount": "10.00", "currency": "INR"}
    created = await http.post("/v1/expenses", json=body, headers=auth(token))
    assert created.status_code == 200, created.text
    expense = created.json()
    assert created.headers["etag"] == expense["etag"] == '"1"'
    path = f"/v1/expenses/{expense['expense_id']}"
    read = await http.get(path, headers=auth(token))
    assert read.headers["etag"] == '"1"'
    bare = {"expense": {"amount": "11.00"}, "update_mask": "amount", "etag": "1"}
    updated = await http.patch(path, json=bare, headers=auth(token))
    assert updated.status_code == 200, updated.text
    assert updated.headers["etag"] == updated.json()["etag"] == '"2"'


async def test_if_match_is_honoured_on_patch_and_delete(http: httpx.AsyncClient, token: str) -> None:
    body = {"request_id": secrets.token_hex(8), "amount": "10.00", "currency": "INR"}
    expense = (await http.post("/v1/expenses", json=body, headers=auth(token))).json()
    path = f"/v1/expenses/{expense['expense_id']}"
    change = {"expense": {"note": "x"}, "update_mask": "note"}
    stale = await http.patch(path, json=change, headers={**auth(token), "if-match": '"7"'})
    assert reason(error(stale, 409)) == "ETAG_MISMATCH"
    fresh = await http.patch(path, json=change, headers={**auth(token), "if-match": '"1"'})
    assert fresh.status_code == 200, fresh.text
    clash = await http.patch(path, json={**change, "etag": "2"}, headers={**auth(token), "if-match": "3"})
    assert list(violations(error(clash, 400))) == ["etag"]
    refused = await http.delete(path, headers={**auth(token), "if-match": "1"})
    assert reason(error(refused, 409)) == "ETAG_MISMATCH"
    deleted = await http.delete(path, headers={**auth(token), "if-match": 'W/"2"'})
    assert deleted.status_code == 200, deleted.text
