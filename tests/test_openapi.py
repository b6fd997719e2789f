"""The OpenAPI document (gen/openapi/, written by `make gen`; test_contracts.py checks gen/ is
up to date): a valid OpenAPI 3 document (openapi-spec-validator), true to the gateway
(every routed operation and no other, JSON names as the transcoder prints them, 64-bit
integers as strings, the bearer JWT where the gateway requires it, the one error shape,
HttpBody's real content types, the protos' field_behavior, the headers the servicers read
and send, request constraints as the validating code has them), served by Envoy without a
token and routed by Kong.
tests/test_api_fuzz_e2e.py holds the mesh's answers to it."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any, get_args

import httpx
import pytest
from google.api import field_behavior_pb2
from google.protobuf import descriptor_pb2
from openapi_spec_validator import validate

from services.kit.config.settings import load_settings
from services.launcher import envoy, kong
from services.launcher.routes import load_descriptor_set, rest_surface
from services.web.server import OPENAPI_DOCUMENT, OPENAPI_PATH
from tests.mesh import Mesh
from tools import openapi

SETTINGS = load_settings()
SURFACE = rest_surface(SETTINGS)
DOCUMENT: dict[str, Any] = json.loads(OPENAPI_DOCUMENT.read_text())
SCHEMAS = DOCUMENT["components"]["schemas"]
FieldProto = descriptor_pb2.FieldDescriptorProto
INT64 = {FieldProto.TYPE_INT64, FieldProto.TYPE_UINT64, FieldProto.TYPE_SINT64, FieldProto.TYPE_FIXED64}


MESSAGES = openapi.messages(load_descriptor_set())
# The mesh's messages (enums are schemas too, of no fields).
MESH_SCHEMAS = {name: SCHEMAS[name] for name in SCHEMAS if name in MESSAGES and name.startswith("expense.")}
# Their request copies (a message both requests and answers use).
INPUT_SCHEMAS = {
    name: SCHEMAS[name + openapi.INPUT_SUFFIX]
    for name in MESH_SCHEMAS
    if name + openapi.INPUT_SUFFIX in SCHEMAS
}
REQUIRED, OUTPUT_ONLY = field_behavior_pb2.REQUIRED, field_behavior_pb2.OUTPUT_ONLY


def test_the_document_is_valid_openapi_3() -> None:
    validate(DOCUMENT)
    assert DOCUMENT["openapi"].startswith("3.")


def test_every_routed_operation_is_documented_and_nothing_else() -> None:
    documented = {
        (verb.upper(), path): operation["operationId"]
        for path, operations in DOCUMENT["paths"].items()
        for verb, operation in operations.items()
    }
    routed = {(route.verb, route.template): route.name for route in SURFACE.routes}
    assert documented == routed | {("GET", OPENAPI_PATH): "openapi-document"}


def test_json_names_are_the_ones_the_transcoder_prints() -> None:
    transcoder = _envoy_filter("envoy.filters.http.grpc_json_transcoder")
    assert transcoder["print_options"]["preserve_proto_field_names"] is True
    assert MESH_SCHEMAS, "no message schema found"
    for name, schema in [*MESH_SCHEMAS.items(), *INPUT_SCHEMAS.items()]:
        if MESSAGES[name].field:
            assert set(schema["properties"]) == {field.name for field in MESSAGES[name].field}, name


def test_64_bit_integers_are_strings() -> None:
    """The proto3 JSON mapping (and the transcoder) writes 64-bit integers as strings: a JSON
    number would lose digits in a client. No routed message has one today; the document's
    integers are all 32-bit, and a 64-bit field of a documented message would be a string."""
    integers = [node for node in _nodes(DOCUMENT) if node.get("type") == "integer"]
    assert integers and all(node.get("format") == "int32" for node in integers)
    for name, schema in MESH_SCHEMAS.items():
        for field in MESSAGES[name].field:
            if field.type in INT64:
                property_schema = schema["properties"][field.name]
                assert property_schema.get("items", property_schema)["type"] == "string", (name, field)


def test_the_bearer_token_is_required_where_the_gateway_requires_it() -> None:
    assert DOCUMENT["components"]["securitySchemes"]["bearer_jwt"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "auth's access token.",
    }
    assert DOCUMENT["security"] == [{"bearer_jwt": []}]
    public = {route.name for route in SURFACE.public(SETTINGS)} | {"openapi-document"}
    for operation in _operations():
        is_open = "security" in operation and operation["security"] == []
        assert is_open == (operation["operationId"] in public), operation["operationId"]


def test_every_error_is_one_google_rpc_status() -> None:
    error = {"$ref": "#/components/responses/Error"}
    assert DOCUMENT["components"]["responses"]["Error"]["content"] == {
        "application/json": {"schema": {"$ref": "#/components/schemas/google.rpc.Status"}}
    }
    for operation in _operations():
        assert operation["responses"]["default"] == error, operation["operationId"]
        assert operation["responses"]["429"] == {"$ref": "#/components/responses/RateLimited"}
        assert set(operation["responses"]) == {"200", "429", "default"}, operation["operationId"]
    rate_limited = DOCUMENT["components"]["responses"]["RateLimited"]
    assert rate_limited["content"] == DOCUMENT["components"]["responses"]["Error"]["content"]
    assert rate_limited["headers"]["Retry-After"]["schema"]["type"] == "integer"
    status = SCHEMAS["google.rpc.Status"]
    assert status["properties"]["details"]["items"] == {"$ref": "#/components/schemas/google.protobuf.Any"}
    assert SCHEMAS["google.protobuf.Any"]["required"] == ["@type"]


def test_http_bodies_have_their_real_content_types() -> None:
    export = DOCUMENT["paths"]["/v1/expenses:export"]["get"]["responses"]["200"]
    assert list(export["content"]) == ["text/csv"]
    assert "Content-Disposition" in export["headers"]
    portability = DOCUMENT["paths"]["/v1/users/me:export"]["get"]["responses"]["200"]
    assert list(portability["content"]) == ["application/json"]
    assert "Content-Disposition" in portability["headers"]
    verify = DOCUMENT["paths"]["/v1/notificationCallbacks/meta"]["get"]["responses"]["200"]
    assert list(verify["content"]) == ["text/plain"]
    twilio = DOCUMENT["paths"]["/v1/notificationCallbacks/twilio"]["post"]["requestBody"]
    assert list(twilio["content"]) == ["application/x-www-form-urlencoded"]
    meta = DOCUMENT["paths"]["/v1/notificationCallbacks/meta"]["post"]["requestBody"]
    assert list(meta["content"]) == ["application/json"]
    # No schema keeps HttpBody's proto fields (content_type, data): its bytes are the body.
    assert "google.api.HttpBody" not in SCHEMAS


def test_kong_routes_the_document_to_the_web_service_without_a_token() -> None:
    web = next(s for s in kong.kong_config(SETTINGS, SURFACE)["services"] if s["name"] == "web")
    route = next(route for route in web["routes"] if route["name"] == "web-openapi")
    assert route["methods"] == ["GET"]
    assert all(re.fullmatch(path.removeprefix("~"), OPENAPI_PATH) for path in route["paths"])
    assert not any(plugin["name"] == "jwt" for plugin in route["plugins"])


@pytest.mark.e2e
def test_envoy_serves_the_document_without_a_token(mesh_postgres: Mesh) -> None:
    response = httpx.get(f"{mesh_postgres.base_url}{OPENAPI_PATH}", timeout=10, trust_env=False)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == DOCUMENT


def _operations() -> list[dict[str, Any]]:
    return [operation for operations in DOCUMENT["paths"].values() for operation in operations.values()]


def _nodes(node: Any) -> list[dict[str, Any]]:
    """Every JSON object in the document."""
    if isinstance(node, dict):
        return [node, *(found for value in node.values() for found in _nodes(value))]
    if isinstance(node, list):
        return [found for item in node for found in _nodes(item)]
    return []


def _envoy_filter(name: str) -> dict[str, Any]:
    config = envoy.envoy_config(SETTINGS, SURFACE, "local")
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    return next(f["typed_config"] for f in manager["http_filters"] if f["name"] == name)


def test_field_behavior_reads_the_protos() -> None:
    """OUTPUT_ONLY is readOnly wherever the message is; a request requires its REQUIRED
    fields (not empty, those of the path aside) and names no other field; an answer requires
    every field the transcoder always prints."""
    annotated = {(name, f.name) for name, m in MESSAGES.items() for f in m.field if openapi.behaviors(f)}
    assert len(annotated) > 40, "the protos lost their field_behavior annotations"
    in_path = {(route.request_type, field) for route in SURFACE.routes for field in route.path_fields}
    for name, schema in MESH_SCHEMAS.items():
        request = INPUT_SCHEMAS.get(name, schema) if _is_request_side(name) else None
        for field in MESSAGES[name].field:
            for variant in filter(None, (schema, request)):
                read_only = (
                    variant["properties"][field.name].get("readOnly", False)
                    if field.name in variant.get("properties", {})
                    else False
                )
                assert read_only == (OUTPUT_ONLY in openapi.behaviors(field)), (name, field.name)
            if request is not None:
                must = REQUIRED in openapi.behaviors(field) and (name, field.name) not in in_path
                assert (field.name in request.get("required", [])) == must, (name, field.name)
        if request is not None:
            assert request["additionalProperties"] is False, name
        if name in INPUT_SCHEMAS or not _is_request_side(name):
            printed = [f.name for f in MESSAGES[name].field if openapi.always_printed(f)]
            assert schema.get("required", []) == printed, name


def test_a_required_field_is_required_in_the_document() -> None:
    create = SCHEMAS["expense.ledger.v1.CreateExpenseRequest"]
    assert create["required"] == ["amount"] and create["properties"]["amount"]["minLength"] == 1
    expense = SCHEMAS["expense.ledger.v1.Expense"]
    assert {"expense_id", "etag", "amount", "tags"} <= set(expense["required"])
    assert "required" not in SCHEMAS["expense.ledger.v1.Expense-Input"]
    assert expense["properties"]["expense_id"]["readOnly"] is True
    update = DOCUMENT["paths"]["/v1/expenses/{expense_id}"]["patch"]["requestBody"]["content"][
        "application/json"
    ]
    assert "Expense-Input" in json.dumps(SCHEMAS[update["schema"]["$ref"].rpartition("/")[2]])


def test_a_create_links_to_what_it_made() -> None:
    links = DOCUMENT["paths"]["/v1/expenses"]["post"]["responses"]["200"]["links"]
    assert set(links) == {
        "ledger-get-expense",
        "ledger-update-expense",
        "ledger-delete-expense",
        "ledger-get-expense-history",
    }
    assert links["ledger-update-expense"]["parameters"] == {
        "expense_id": "$response.body#/expense_id",
        "header.If-Match": "$response.header.ETag",
    }
    linked = [
        o for ops in DOCUMENT["paths"].values() for o in ops.values() if "links" in o["responses"]["200"]
    ]
    assert len(linked) == 4  # expenses, categories, budgets, bills


def test_headers_are_the_ones_the_servicers_read_and_send() -> None:
    """Held to the servicers' code: send_etag with an etag, requested_etag (If-Match), a ledger
    write's token (written or CONSISTENCY_HEADER), written_version (a read's token)."""
    calls = _servicer_calls()
    routed = {route.full_method for route in SURFACE.routes}
    expected = {
        "ETag": {m for m in routed if _sends_etag(calls.get(m, set()))},
        "If-Match": {m for m in routed if "requested_etag" in calls.get(m, set())},
        "X-Consistency-Token write": {
            m for m in routed if calls.get(m, set()) & {"written", "CONSISTENCY_HEADER"}
        },
        "X-Consistency-Token read": {m for m in routed if "written_version" in calls.get(m, set())},
    }
    assert expected == {
        "ETag": openapi.ETAG_RESPONSES,
        "If-Match": openapi.IF_MATCH_REQUESTS,
        "X-Consistency-Token write": openapi.CONSISTENCY_WRITES,
        "X-Consistency-Token read": openapi.CONSISTENCY_READS,
    }
    for route in SURFACE.routes:
        operation = DOCUMENT["paths"][route.template][route.verb.lower()]
        headers = set(operation["responses"]["200"].get("headers", {}))
        parameters = {p["name"] for p in operation.get("parameters", []) if p["in"] == "header"}
        assert ("ETag" in headers) == (route.full_method in openapi.ETAG_RESPONSES), route.name
        assert ("If-Match" in parameters) == (route.full_method in openapi.IF_MATCH_REQUESTS), route.name
        assert ("X-Consistency-Token" in headers) == (route.full_method in openapi.CONSISTENCY_WRITES), (
            route.name
        )
        assert ("X-Consistency-Token" in parameters) == (route.full_method in openapi.CONSISTENCY_READS), (
            route.name
        )


def test_request_constraints_are_the_validating_codes() -> None:
    from services.billing.api import BILL_UPDATABLE, BUDGET_UPDATABLE
    from services.billing.domain import BUDGET_PERIODS
    from services.billing.inputs import _REQUEST_ID as BILLING_REQUEST_ID
    from services.ds.api import PERIODS as INSIGHT_PERIODS
    from services.kit.domain.money import _AMOUNT, MAX_WHOLE_DIGITS
    from services.ledger.domain import CATEGORY_FIELDS, EXPENSE_FIELDS, ORDER_FIELDS
    from services.ledger.inputs import _REQUEST_ID, EARLIEST_DATE
    from services.ledger.settings import LedgerSettings
    from services.ledger.statements import load_mappings
    from services.notification.domain import CONTACT_CHANNELS
    from services.reporting.api import EARLIEST_DATE as REPORT_EARLIEST
    from services.reporting.api import PeriodKind, TrendKind
    from services.reporting.settings import ReportingSettings
    from services.user.domain import WEEKDAYS

    fields = openapi.REQUEST_FIELDS
    ledger = fields["expense.ledger.v1.ListExpensesRequest"]["order_by"]["enum"]
    assert {value.split()[0] for value in ledger} == set(ORDER_FIELDS)
    assert fields["expense.billing.v1.Budget"]["period"]["enum"] == list(BUDGET_PERIODS)
    assert fields["expense.ds.v1.GetInsightsRequest"]["period"]["enum"] == list(INSIGHT_PERIODS)
    assert fields["expense.reporting.v1.GetSummaryRequest"]["period"]["enum"] == list(
        get_args(get_args(PeriodKind)[0])
    )
    assert fields["expense.reporting.v1.GetTrendRequest"]["period"]["enum"] == list(
        get_args(get_args(TrendKind)[0])
    )
    assert (
        fields["expense.reporting.v1.GetTrendRequest"]["count"]["maximum"]
        == ReportingSettings().trend_max_count
    )
    assert fields["expense.user.v1.Profile"]["first_day_of_week"]["enum"] == list(WEEKDAYS)
    assert fields["expense.notification.v1.CreateContactPointRequest"]["channel"]["enum"] == list(
        CONTACT_CHANNELS
    )
    masks = {
        openapi.EXPENSE_MASK["pattern"]: EXPENSE_FIELDS,
        openapi.CATEGORY_MASK["pattern"]: CATEGORY_FIELDS,
        openapi.BUDGET_MASK["pattern"]: BUDGET_UPDATABLE,
        openapi.BILL_MASK["pattern"]: BILL_UPDATABLE,
    }
    for pattern, updatable in masks.items():
        assert re.fullmatch(pattern, ",".join(updatable)) and not re.fullmatch(pattern, "etag"), pattern
        assert pattern.count("|") == 2 * (len(updatable) - 1), pattern
    mappings = load_mappings(LedgerSettings().import_mappings_file)
    assert fields["expense.ledger.v1.ImportExpensesRequest"]["mapping"]["enum"] == list(mappings)
    assert openapi.REQUEST_ID["pattern"] == _REQUEST_ID.pattern == BILLING_REQUEST_ID.pattern
    for text in ("1", "1250.50", "0012.0", "1.", ".5", "-1", "1e5", "1" * 18, "1" * 19, "1.5 "):
        match = _AMOUNT.fullmatch(text)
        # Longer whole parts parse, then are refused as too large: the document refuses them.
        unsigned = match is not None and not match["sign"] and len(match["int"]) <= MAX_WHOLE_DIGITS
        assert (re.fullmatch(openapi.AMOUNT["pattern"].strip("^$"), text) is not None) == unsigned, text
    assert EARLIEST_DATE.year == REPORT_EARLIEST.year == 1900 and re.match(
        openapi.DATE["pattern"], "1900-01-01"
    )
    assert not re.match(openapi.DATE["pattern"], "1899-12-31")


def _is_request_side(name: str) -> bool:
    return name in INPUT_SCHEMAS or SCHEMAS[name].get("additionalProperties") is False


def _servicer_calls() -> dict[str, set[str]]:
    """{full method: the functions each servicer method calls (and CONSISTENCY_HEADER if it
    names it)}, from services/*/api.py."""
    found: dict[str, set[str]] = {}
    for api in sorted(Path("services").glob("*/api.py")):
        tree = ast.parse(api.read_text())
        for cls in (node for node in tree.body if isinstance(node, ast.ClassDef)):
            bases = [ast.unparse(base).rpartition(".")[2] for base in cls.bases]
            service = next((b.removesuffix("Servicer") for b in bases if b.endswith("Servicer")), None)
            if service is None:
                continue
            for method in (n for n in cls.body if isinstance(n, ast.AsyncFunctionDef | ast.FunctionDef)):
                names = set()
                for node in ast.walk(method):
                    if isinstance(node, ast.Call):
                        callee = ast.unparse(node.func).rpartition(".")[2]
                        # send_etag(context, "") sends no ETag (a deletion's token only).
                        blank = callee == "send_etag" and ast.unparse(node.args[1]) in ("''", '""')
                        names.add("send_etag:blank" if blank else callee)
                    elif isinstance(node, ast.Name) and node.id == "CONSISTENCY_HEADER":
                        names.add(node.id)  # a header sent by name (a deletion's token)
                found[f"/expense.{api.parent.name}.v1.{service}/{method.name}"] = names
    return found


def _sends_etag(names: set[str]) -> bool:
    return "send_etag" in names
