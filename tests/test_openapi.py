"""The OpenAPI document (gen/openapi/, written by `make gen`; test_contracts.py checks gen/ is
up to date): a valid OpenAPI 3 document (openapi-spec-validator), true to the gateway
(every routed operation and no other, JSON names as the transcoder prints them, 64-bit
integers as strings, the bearer JWT where the gateway requires it, the one error shape,
HttpBody's real content types), served by Envoy without a token and routed by Kong.
tests/test_api_fuzz_e2e.py holds the mesh's answers to it."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest
from google.protobuf import descriptor_pb2
from openapi_spec_validator import validate

from services.kit.config.settings import load_settings
from services.launcher import envoy, kong
from services.launcher.routes import load_descriptor_set, rest_surface
from services.web.server import OPENAPI_DOCUMENT, OPENAPI_PATH
from tests.mesh import Mesh

SETTINGS = load_settings()
SURFACE = rest_surface(SETTINGS)
DOCUMENT: dict[str, Any] = json.loads(OPENAPI_DOCUMENT.read_text())
SCHEMAS = DOCUMENT["components"]["schemas"]
FieldProto = descriptor_pb2.FieldDescriptorProto
INT64 = {FieldProto.TYPE_INT64, FieldProto.TYPE_UINT64, FieldProto.TYPE_SINT64, FieldProto.TYPE_FIXED64}


def _messages() -> dict[str, descriptor_pb2.DescriptorProto]:
    """Every message of the descriptor set by full name, nested ones included."""
    found: dict[str, descriptor_pb2.DescriptorProto] = {}

    def add(prefix: str, message: descriptor_pb2.DescriptorProto) -> None:
        found[f"{prefix}.{message.name}"] = message
        for nested in message.nested_type:
            add(f"{prefix}.{message.name}", nested)

    for file in load_descriptor_set().file:
        for message in file.message_type:
            add(file.package, message)
    return found


MESSAGES = _messages()
# The mesh's messages (enums are schemas too, of no fields).
MESH_SCHEMAS = {name: SCHEMAS[name] for name in SCHEMAS if name in MESSAGES and name.startswith("expense.")}


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
    for name, schema in MESH_SCHEMAS.items():
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
        assert set(operation["responses"]) == {"200", "default"}, operation["operationId"]
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
