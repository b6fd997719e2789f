"""Kong's strict input and error shape (issue 18, items 1-2), run for real in Lua.

kong/kong.yml's global pre-function and post-function hold Lua that only a Kong would
otherwise run, and no Kong runs here. So the committed chunks are compiled by `luac5.4 -p`
and LuaJIT (Kong's VM), then executed in both Lua 5.4 and LuaJIT by tests/kong_pdk_shim.lua:
Kong's sandbox (only its whitelisted globals), its handler's compile-once protocol, its
plugin order and the PDK functions they use, each checked against its documented phases.
The cases mirror Envoy's on a whole mesh (tests/test_gateway_edge.py): the same rules, the
same answers, whichever gateway is in front.

What only a real Kong proves (docs/errors.md, "Kong"): that jwt, rate-limiting and
request-size-limiting answer as assumed here, and that nginx's error pages reach the
post-function."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml
from google.protobuf import any_pb2, duration_pb2, json_format
from google.rpc import error_details_pb2, status_pb2

from services.kit.config.settings import REPO_ROOT
from services.launcher import generated
from services.launcher.routes import rest_surface
from tests.test_deploy_validators import _tool

KONG_FILE = REPO_ROOT / "kong" / "kong.yml"
SHIM = Path(__file__).with_name("kong_pdk_shim.lua")
INTERPRETERS = ("lua5.4", "luajit")
INSTALL = "apt-get install -y lua5.4 luajit lua-cjson"
SURFACE = rest_surface(generated.committed_settings())
INVALID_ARGUMENT, DEADLINE_EXCEEDED, NOT_FOUND, UNAVAILABLE, UNAUTHENTICATED = 3, 4, 5, 14, 16
ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"
RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
QUOTA_FAILURE = "type.googleapis.com/google.rpc.QuotaFailure"
TOKEN = {"Authorization": "Bearer x.y.z"}
JSON = {"Content-Type": "application/json"}
# What Kong's plugins answer themselves (their source, Kong 3.10).
JWT_401 = {"status": 401, "body": '{"message":"Unauthorized"}', "headers": JSON}
RATE_LIMIT_429 = {
    "status": 429,
    "body": '{"message":"API rate limit exceeded"}',
    "headers": {**JSON, "Retry-After": "7"},
}
SIZE_LIMIT_413 = {"status": 413, "body": '{"message":"Request size limit exceeded"}', "headers": JSON}
GRPC_GATEWAY_400 = {
    "status": 400,
    "body": "failed to encode payload",
    "headers": {"Content-Type": "text/plain"},
}


def _route(verb: str, template: str) -> str:
    return next(r.name for r in SURFACE.routes if r.verb == verb and r.template == template)


def _case(case_id: str, verb: str, template: str | None, **request: Any) -> dict[str, Any]:
    """A request to the route of `verb` and `template` (None: no route matches); body a
    dict is sent as JSON, bytes as they are."""
    body = request.pop("body", None)
    if isinstance(body, dict | list):
        body = json.dumps(body)
    elif isinstance(body, bytes):
        body = body.decode()
    headers = {**TOKEN, **JSON, **request.pop("headers", {})}
    if request.pop("anonymous", False):
        headers.pop("Authorization")
    case = {"id": case_id, "headers": headers, **request}
    if template is not None:
        case["route"] = _route(verb, template)
    if body is not None:
        case["body"] = body
        case["headers"].setdefault("Content-Length", str(len(body.encode())))
    return case


def _detail(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


# A service's errors as services/kit/grpc/status.py makes them.
SERVICE_ERRORS = {
    "service_not_found": status_pb2.Status(
        code=NOT_FOUND,
        message="expense not found",
        details=[
            _detail(error_details_pb2.ErrorInfo(reason="NOT_FOUND", domain="expense-mesh")),
            _detail(error_details_pb2.ResourceInfo(resource_type="expense", resource_name="e-1")),
        ],
    ),
    "service_bad_request": status_pb2.Status(
        code=INVALID_ARGUMENT,
        message="invalid argument: amount, period",
        details=[
            _detail(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field="amount", description="must be ≥ ₹1"
                        ),
                        error_details_pb2.BadRequest.FieldViolation(
                            field="period", description='"week" or "month"'
                        ),
                    ]
                )
            ),
            _detail(
                error_details_pb2.ErrorInfo(
                    reason="INVALID_FIELD", domain="expense-mesh", metadata={"a": "b"}
                )
            ),
        ],
    ),
    "service_unavailable": status_pb2.Status(
        code=UNAVAILABLE,
        message="temporarily unavailable; retry",
        details=[
            _detail(error_details_pb2.ErrorInfo(reason="DATABASE_UNAVAILABLE", domain="expense-mesh")),
            _detail(
                error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=1, nanos=500_000_000))
            ),
        ],
    ),
}
# grpc-gateway's HTTP status of each.
HTTP_STATUS = {NOT_FOUND: 404, INVALID_ARGUMENT: 400, UNAVAILABLE: 503}


def _grpc_error(status: status_pb2.Status, padded: bool) -> dict[str, Any]:
    """What grpc-gateway passes on of a service's error: the status, the grpc-* headers
    (details base64, with or without padding: gRPC accepts both), no body."""
    encoded = base64.b64encode(status.SerializeToString()).decode()
    headers = {
        "grpc-status": str(status.code),
        "grpc-message": quote(status.message),
        "grpc-status-details-bin": encoded if padded else encoded.rstrip("="),
    }
    return {"status": HTTP_STATUS[status.code], "body": "", "headers": headers}


EXPENSE = {"request_id": "6f1c2a3e", "amount": "45.00", "currency": "INR"}
CASES = [
    # --- strict input (item 1), as tests/test_gateway_edge.py on Envoy
    _case("unknown_field", "POST", "/v1/expenses", body={**EXPENSE, "date": "2026-11-02"}),
    _case("nested_hint", "PATCH", "/v1/users/me", body={"time_zone": "Asia/Kolkata"}),
    _case("amount_number", "POST", "/v1/expenses", body={**EXPENSE, "amount": 45.5}),
    _case(
        "wrong_types",
        "POST",
        "/v1/expenses",
        body={"request_id": 7, "amount": "1.00", "tags": "food", "merchant": {"name": "x"}},
    ),
    _case(
        "camel_case",
        "POST",
        "/v1/expenses",
        body={"requestId": "a1", "amount": "3.00", "currency": "INR", "spentOn": "2026-11-02"},
    ),
    _case(
        "nested_unknown",
        "PATCH",
        "/v1/expenses/{expense_id}",
        body={"expense": {"amount": "4.00", "colour": "red"}, "update_mask": "amount"},
    ),
    _case("malformed_end", "POST", "/v1/expenses", body=b'{"amount": "1.00",'),
    _case("malformed_colon", "POST", "/v1/expenses", body=b'{"amount" "1"}'),
    _case("not_an_object", "POST", "/v1/expenses", body=b"[1]"),
    _case("query_bad", "GET", "/v1/expenses", query="category=food&page_size=ten"),
    _case("query_fine", "GET", "/v1/expenses", query="page_size=5&q=tea"),
    _case("body_on_get", "GET", "/v1/expenses", body={"q": "tea"}),
    _case("webhook_raw_body", "POST", "/v1/notificationCallbacks/twilio", body=b"MessageStatus=sent&x=1"),
    # A body Kong buffered to disk is not at hand: its query is still checked.
    _case("body_on_disk", "GET", "/v1/expenses", query="colour=red", body_on_disk=True),
    # --- who answers first: jwt, the limits, grpc-gateway before strict input's verdict
    _case(
        "no_token_and_unknown_field",
        "POST",
        "/v1/expenses",
        body={"date": "x"},
        anonymous=True,
        plugin_exit=JWT_401,
    ),
    _case(
        "too_large_unread",
        "POST",
        "/v1/expenses",
        body={"date": "x"},
        headers={"Content-Length": str(2 << 20)},
        plugin_exit=SIZE_LIMIT_413,
    ),
    _case(
        "grpc_gateway_after_refusal", "POST", "/v1/expenses", body={"amount": 1}, plugin_exit=GRPC_GATEWAY_400
    ),
    _case("grpc_gateway_alone", "POST", "/v1/expenses", body=EXPENSE, plugin_exit=GRPC_GATEWAY_400),
    # --- one error shape (item 2): Kong's own answers
    _case("no_route", "GET", None, anonymous=True),
    _case("no_route_with_token", "GET", None),
    _case("token_missing", "GET", "/v1/expenses", anonymous=True, plugin_exit=JWT_401),
    _case("token_invalid", "GET", "/v1/expenses", plugin_exit=JWT_401),
    _case("rate_limited", "GET", "/v1/expenses", plugin_exit=RATE_LIMIT_429),
    _case("upstream_502", "GET", "/v1/expenses", upstream_error=502),
    _case("upstream_504", "GET", "/v1/expenses", upstream_error=504),
    _case("method_not_allowed", "GET", "/v1/expenses", plugin_exit={"status": 405, "body": "no"}),
    # --- services' answers: a gRPC error in Envoy's rendering of its status, the rest as they are
    _case("service_ok", "GET", "/v1/expenses", service={"status": 200, "body": '{"expenses":[]}'}),
    *(
        _case(case_id, "GET", "/v1/expenses/{expense_id}", service=_grpc_error(status, padded=index % 2 == 0))
        for index, (case_id, status) in enumerate(SERVICE_ERRORS.items())
    ),
    _case(
        "service_error_without_details",
        "GET",
        "/v1/expenses",
        service={"status": 500, "headers": {"grpc-status": "13", "grpc-message": "internal%20error"}},
    ),
    _case(
        "service_error_unreadable",
        "GET",
        "/v1/expenses",
        service={"status": 500, "headers": {"grpc-status": "13", "grpc-status-details-bin": "%%%"}},
    ),
    _case("dashboard_404", "GET", "/v1/expenses", service={"status": 404, "body": "<html>not here</html>"}),
]


def _chunks() -> dict[str, str]:
    """The committed kong.yml's global pre-function and post-function chunks."""
    plugins = {
        plugin["name"]: plugin["config"] for plugin in yaml.safe_load(KONG_FILE.read_text())["plugins"]
    }
    pre, post = plugins["pre-function"], plugins["post-function"]
    assert len(pre["access"]) == 1 and set(pre) == {"access"}
    assert {phase: len(chunks) for phase, chunks in post.items()} == {
        "access": 1,
        "header_filter": 1,
        "body_filter": 1,
    }
    return {
        "pre_access": pre["access"][0],
        "post_access": post["access"][0],
        "header_filter": post["header_filter"][0],
        "body_filter": post["body_filter"][0],
    }


@pytest.fixture(scope="module", params=INTERPRETERS)
def answers(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every case run through the chunks by one interpreter: id -> the client's answer."""
    interpreter = _tool(request.param, INSTALL)
    spec = tmp_path_factory.mktemp("kong-lua") / "spec.json"
    spec.write_text(json.dumps({"chunks": _chunks(), "cases": CASES}))
    result = subprocess.run(
        [interpreter, str(SHIM), str(spec)], check=False, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    found = [json.loads(line) for line in result.stdout.splitlines()]
    assert [answer["id"] for answer in found] == [case["id"] for case in CASES]
    return {answer["id"]: answer for answer in found}


def error(answer: dict[str, Any], status: int) -> dict[str, Any]:
    """The body of an error answer, checked to be the one shape (as test_gateway_edge.error)."""
    assert answer["status"] == status, answer
    assert answer["headers"]["content-type"] == "application/json"
    assert answer["headers"]["content-length"] == str(len(answer["body"].encode()))
    body = json.loads(answer["body"])
    assert set(body) == {"code", "message", "details"}, body
    assert isinstance(body["code"], int) and isinstance(body["message"], str)
    infos = [detail for detail in body["details"] if detail["@type"] == ERROR_INFO]
    assert len(infos) == 1 and infos[0]["domain"] == "expense-mesh", body
    return dict(body)


def reason(body: dict[str, Any]) -> str:
    return str(next(d["reason"] for d in body["details"] if d["@type"] == ERROR_INFO))


def violations(body: dict[str, Any]) -> dict[str, str]:
    bad = [d for d in body["details"] if d["@type"] == BAD_REQUEST]
    return {v["field"]: v["description"] for d in bad for v in d["field_violations"]}


@pytest.mark.parametrize("name", ["pre-function access", "post-function"])
def test_the_committed_chunks_compile_in_lua_54_and_luajit(name: str, tmp_path: Path) -> None:
    chunks = _chunks()
    sources = (
        [chunks["pre_access"]] if name.startswith("pre") else [chunks[k] for k in chunks if k != "pre_access"]
    )
    luac = _tool("luac5.4", INSTALL)
    luajit = _tool("luajit", INSTALL)
    for index, source in enumerate(sources):
        path = tmp_path / f"chunk{index}.lua"
        path.write_text(source)
        for argv in ([luac, "-p", str(path)], [luajit, "-b", str(path), str(tmp_path / "out")]):
            result = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=60)
            assert result.returncode == 0, (argv, result.stderr)


def test_a_chunk_using_what_kongs_sandbox_lacks_fails_in_the_shim(tmp_path: Path) -> None:
    """The shim is no rubber stamp: setmetatable is not in Kong's sandbox."""
    chunks = {**_chunks(), "post_access": "return function() setmetatable({}, {}) end"}
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"chunks": chunks, "cases": [CASES[0]]}))
    lua = _tool("lua5.4", INSTALL)
    result = subprocess.run(
        [lua, str(SHIM), str(spec)], check=False, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0 and "setmetatable" in result.stderr


# ------------------------------------------------------------- strict input (item 1)


def test_an_unknown_body_field_is_named(answers: dict[str, Any]) -> None:
    refused = error(answers["unknown_field"], 400)
    assert refused["code"] == INVALID_ARGUMENT and reason(refused) == "UNKNOWN_FIELD"
    assert list(violations(refused)) == ["date"]
    assert refused["message"].startswith("date is not a field of this request")


def test_a_field_of_a_nested_message_gets_a_hint(answers: dict[str, Any]) -> None:
    refused = error(answers["nested_hint"], 400)
    assert "did you mean profile.time_zone?" in violations(refused)["time_zone"]


def test_an_amount_sent_as_a_number_is_explained(answers: dict[str, Any]) -> None:
    refused = error(answers["amount_number"], 400)
    assert refused["message"] == 'amount must be a decimal string such as "45.50"'
    assert reason(refused) == "WRONG_TYPE"


def test_wrong_json_types_name_the_field_and_the_form(answers: dict[str, Any]) -> None:
    assert violations(error(answers["wrong_types"], 400)) == {
        "request_id": "must be a string",
        "tags": "must be an array of strings",
        "merchant": "must be a string",
    }


def test_camel_case_names_pass_and_nested_unknown_fields_are_named_by_path(answers: dict[str, Any]) -> None:
    assert answers["camel_case"]["status"] == 200 and answers["camel_case"]["body"] == "{}"
    assert list(violations(error(answers["nested_unknown"], 400))) == ["expense.colour"]


@pytest.mark.parametrize(
    ("case_id", "words"),
    [
        ("malformed_end", "unexpected end"),
        ("malformed_colon", "expected ':'"),
        ("not_an_object", "JSON object"),
    ],
)
def test_malformed_json_is_a_400_in_our_words(answers: dict[str, Any], case_id: str, words: str) -> None:
    refused = error(answers[case_id], 400)
    assert words in refused["message"] and reason(refused) in {"MALFORMED_JSON", "WRONG_TYPE"}


def test_unknown_and_mistyped_query_parameters(answers: dict[str, Any]) -> None:
    assert violations(error(answers["query_bad"], 400)) == {
        "category": "is not a query parameter of this request",
        "page_size": "must be an integer",
    }
    assert answers["query_fine"]["status"] == 200


def test_a_body_where_none_is_taken_and_a_query_without_its_body(answers: dict[str, Any]) -> None:
    assert reason(error(answers["body_on_get"], 400)) == "UNEXPECTED_BODY"
    on_disk = answers["body_on_disk"]
    assert list(violations(error(on_disk, 400))) == ["colour"]


def test_a_raw_body_route_is_not_checked(answers: dict[str, Any]) -> None:
    """A provider's form-encoded callback (google.api.HttpBody) passes as it came, as in Envoy."""
    webhook = answers["webhook_raw_body"]
    assert webhook["status"] == 200 and webhook["body_reads"] == 0


# ------------------------------------------------------------- who answers first


def test_a_missing_token_is_told_before_a_bad_body(answers: dict[str, Any]) -> None:
    """jwt runs between pre-function and post-function: its 401 wins, as in Envoy's order."""
    refused = error(answers["no_token_and_unknown_field"], 401)
    assert reason(refused) == "TOKEN_MISSING"


def test_a_body_over_the_limit_is_not_read_and_is_a_413(answers: dict[str, Any]) -> None:
    assert answers["too_large_unread"]["body_reads"] == 0
    refused = error(answers["too_large_unread"], 413)
    assert reason(refused) == "BODY_TOO_LARGE" and refused["code"] == INVALID_ARGUMENT


def test_grpc_gateways_own_400_carries_strict_inputs_refusal(answers: dict[str, Any]) -> None:
    """grpc-gateway (access, before post-function) refuses a number for a string in its own
    words; the answer is still strict input's, naming the field."""
    refused = error(answers["grpc_gateway_after_refusal"], 400)
    assert refused["message"] == 'amount must be a decimal string such as "45.50"'
    alone = error(answers["grpc_gateway_alone"], 400)
    assert reason(alone) == "INVALID_REQUEST" and "encode" not in alone["message"]


# ------------------------------------------------------------- one error shape (item 2)


@pytest.mark.parametrize("case_id", ["no_route", "no_route_with_token"])
def test_an_unknown_route_is_a_404_with_or_without_a_token(answers: dict[str, Any], case_id: str) -> None:
    refused = error(answers[case_id], 404)
    assert refused["code"] == NOT_FOUND and reason(refused) == "NO_ROUTE"
    assert refused["message"] == "no such route"


def test_missing_and_invalid_tokens_are_told_apart(answers: dict[str, Any]) -> None:
    missing = error(answers["token_missing"], 401)
    assert missing["code"] == UNAUTHENTICATED and reason(missing) == "TOKEN_MISSING"
    invalid = error(answers["token_invalid"], 401)
    assert reason(invalid) == "TOKEN_INVALID" and "Unauthorized" not in invalid["message"]


def test_the_rate_limit_names_its_limits_and_when_to_retry(answers: dict[str, Any]) -> None:
    answer = answers["rate_limited"]
    refused = error(answer, 429)
    assert reason(refused) == "RATE_LIMITED" and answer["headers"]["retry-after"] == "7"
    details = {detail["@type"]: detail for detail in refused["details"]}
    assert details[RETRY_INFO]["retry_delay"] == "7s"
    subjects = [violation["subject"] for violation in details[QUOTA_FAILURE]["violations"]]
    assert subjects == ["user", "client address", "password routes"]


def test_an_unreachable_service_is_unavailable_and_retryable(answers: dict[str, Any]) -> None:
    answer = answers["upstream_502"]
    refused = error(answer, 502)
    assert refused["code"] == UNAVAILABLE and reason(refused) == "UNAVAILABLE"
    assert answer["headers"]["retry-after"] == "1"
    assert {"@type": RETRY_INFO, "retry_delay": "1s"} in refused["details"]
    timed_out = error(answers["upstream_504"], 504)
    assert timed_out["code"] == DEADLINE_EXCEEDED and reason(timed_out) == "DEADLINE_EXCEEDED"


def test_a_status_without_an_entry_is_unknown_in_the_same_shape(answers: dict[str, Any]) -> None:
    assert reason(error(answers["method_not_allowed"], 405)) == "UNKNOWN"


@pytest.mark.parametrize("case_id", list(SERVICE_ERRORS))
def test_a_service_error_gets_envoys_json_of_its_status(answers: dict[str, Any], case_id: str) -> None:
    """grpc-gateway passes a service's error as a bare status and grpc-* headers; the answer
    is its google.rpc.Status as Envoy's transcoder prints it (snake_case, fields without
    presence printed), checked against protobuf's own JSON printer."""
    status = SERVICE_ERRORS[case_id]
    answer = answers[case_id]
    body = error(answer, HTTP_STATUS[status.code])
    expected = json_format.MessageToDict(
        status, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    assert body == expected
    assert not {"grpc-status", "grpc-message", "grpc-status-details-bin"} & set(answer["headers"])


def test_a_service_error_without_details_keeps_its_code_and_message(answers: dict[str, Any]) -> None:
    answer = answers["service_error_without_details"]
    assert answer["status"] == 500 and answer["headers"]["content-type"] == "application/json"
    assert json.loads(answer["body"]) == {"code": 13, "message": "internal error", "details": []}


def test_other_answers_of_services_pass_unchanged(answers: dict[str, Any]) -> None:
    assert answers["service_ok"]["body"] == '{"expenses":[]}'
    assert answers["dashboard_404"]["body"] == "<html>not here</html>"
    unreadable = answers["service_error_unreadable"]
    assert unreadable["body"] == "" and unreadable["headers"]["grpc-status-details-bin"] == "%%%"
