"""Renders the mesh's OpenAPI 3 document (gen/openapi/expense-mesh.openapi.json) from the
Swagger 2 files protoc-gen-swagger wrote for each proto (Debian's golang-grpc-gateway),
converted by npm's swagger2openapi, then corrected to what the gateway really does:

- only the routes Envoy and Kong serve (services/launcher/routes.py reads the same
  descriptor set), each operationId the gateways' route name;
- JSON names as the transcoder prints them (`preserve_proto_field_names`: snake_case, the
  plugin's default), 64-bit integers as strings (the plugin's output, the proto3 JSON
  mapping), and the well-known types in their JSON forms (Any with `@type`, Struct as an
  object, Value as any JSON), which the plugin of Debian's version writes as their fields;
- google.api.HttpBody as the raw body it is: the CSV download, the providers' callbacks;
- the bearer JWT on every operation but the public ones (mesh.public_methods);
- every non-2xx answer as the one google.rpc.Status shape (docs/errors.md).

Usage: python -m tools.openapi SWAGGER_DIR DESCRIPTOR_SET OUT_FILE   (tools/gen.sh runs it)"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from services.kit.config.settings import REPO_ROOT, MeshSettings, load_settings
from services.launcher.routes import HttpRoute, RestSurface, rest_surface

SWAGGER2OPENAPI = REPO_ROOT / "node_modules" / ".bin" / "swagger2openapi"
DOCUMENT_PATH = "/v1/openapi.json"
SCHEMAS = "#/components/schemas/"
BEARER = "bearer_jwt"
ERROR = "Error"
DOWNLOAD_RESPONSE = "google.api.HttpBody"
# protoc-gen-swagger's names for the types outside the mesh's packages, qualified.
SHARED_DEFINITIONS = {
    "apiHttpBody": "google.api.HttpBody",
    "protobufAny": "google.protobuf.Any",
    "protobufStruct": "google.protobuf.Struct",
    "protobufValue": "google.protobuf.Value",
    "protobufListValue": "google.protobuf.ListValue",
    "protobufNullValue": "google.protobuf.NullValue",
    "rpcStatus": "google.rpc.Status",
}
# The proto3 JSON forms of the well-known types (the plugin writes their proto fields).
WELL_KNOWN_SCHEMAS: dict[str, dict[str, Any]] = {
    "google.protobuf.Any": {
        "type": "object",
        "description": "A message of the type `@type` names, with that message's fields beside it.",
        "required": ["@type"],
        "properties": {"@type": {"type": "string", "example": "type.googleapis.com/google.rpc.ErrorInfo"}},
        "additionalProperties": True,
    },
    "google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    "google.protobuf.Value": {"description": "Any JSON value."},
    "google.protobuf.ListValue": {"type": "array", "items": {}},
    "google.protobuf.NullValue": {"type": "string", "enum": ["NULL_VALUE"], "nullable": True},
    "google.rpc.Status": {
        "type": "object",
        "description": "Every answer that is not a 2xx, the gateway's own included (docs/errors.md).",
        "required": ["code", "message"],
        "properties": {
            "code": {"type": "integer", "format": "int32", "description": "The gRPC code."},
            "message": {"type": "string"},
            "details": {
                "type": "array",
                "description": "Always an ErrorInfo with a stable `reason`; BadRequest, RetryInfo, "
                "QuotaFailure, ResourceInfo where they apply.",
                "items": {"$ref": f"{SCHEMAS}google.protobuf.Any"},
            },
        },
    },
}
# google.api.HttpBody bodies: what the service writes (its api.py) or the provider sends.
RAW_RESPONSES = {
    "/expense.ledger.v1.LedgerService/ExportExpenses": "text/csv",
    "/expense.user.v1.UserService/ExportMyData": "application/json",
    "/expense.notification.v1.NotificationCallbackService/MetaWebhookVerify": "text/plain",
}
RAW_REQUESTS = {
    "/expense.notification.v1.NotificationCallbackService/TwilioStatus": "application/x-www-form-urlencoded",
    "/expense.notification.v1.NotificationCallbackService/MetaWebhook": "application/json",
}
DOWNLOAD_HEADERS = {
    "Content-Disposition": {
        "description": 'attachment; filename="…"',
        "schema": {"type": "string"},
    }
}


def main(argv: list[str]) -> None:
    swagger_dir, descriptor, out = (Path(arg) for arg in argv)
    settings = load_settings()
    surface = rest_surface(settings, descriptor)
    document = finish(convert(merged(swagger_dir, surface)), surface, settings)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=2, ensure_ascii=False, sort_keys=True) + "\n")


def merged(swagger_dir: Path, surface: RestSurface) -> dict[str, Any]:
    """One Swagger 2 document of the routed operations (protoc-gen-swagger 1.6 merges only
    files of one package), definitions named by their proto package."""
    routes = {(route.template, route.verb.lower()): route for route in surface.routes}
    paths: dict[str, dict[str, Any]] = {}
    definitions: dict[str, Any] = {}
    for file in sorted(swagger_dir.rglob("*.swagger.json")):
        package = ".".join(file.relative_to(swagger_dir).parts[:-1])
        names = _qualified_names(json.loads(file.read_text()), package)
        swagger = _renamed(json.loads(file.read_text()), names)
        for template, operations in swagger.get("paths", {}).items():
            for verb, operation in operations.items():
                route = routes.pop((template, verb), None)
                if route is not None:
                    paths.setdefault(template, {})[verb] = {**operation, "operationId": route.name}
        definitions |= {names[name]: schema for name, schema in swagger.get("definitions", {}).items()}
    if routes:
        raise SystemExit(f"protoc-gen-swagger wrote no operation for {sorted(routes)}")
    return {
        "swagger": "2.0",
        "info": {"title": "expense-mesh", "version": "v1"},
        "consumes": ["application/json"],
        "produces": ["application/json"],
        "paths": paths,
        "definitions": definitions,
    }


def _qualified_names(swagger: dict[str, Any], package: str) -> dict[str, str]:
    """`v1Expense` (the plugin's name: the package's last part, then the message) ->
    `expense.ledger.v1.Expense`."""
    last = package.rpartition(".")[2]
    names = {}
    for name in swagger.get("definitions", {}):
        if name in SHARED_DEFINITIONS:
            names[name] = SHARED_DEFINITIONS[name]
        elif name.startswith(last):
            names[name] = f"{package}.{name.removeprefix(last)}"
        else:
            raise SystemExit(f"{package}: a definition of unknown origin: {name}")
    return names


def _renamed(node: Any, names: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {
            key: (
                "#/definitions/" + names[value.removeprefix("#/definitions/")]
                if key == "$ref"
                else _renamed(value, names)
            )
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_renamed(item, names) for item in node]
    return node


def convert(swagger: dict[str, Any]) -> dict[str, Any]:
    if not SWAGGER2OPENAPI.exists():
        raise SystemExit("swagger2openapi is missing: run `npm install` (make does it)")
    with tempfile.TemporaryDirectory() as scratch:
        source, target = Path(scratch) / "swagger.json", Path(scratch) / "openapi.json"
        source.write_text(json.dumps(swagger))
        subprocess.run([str(SWAGGER2OPENAPI), str(source), "--outfile", str(target)], check=True)
        return json.loads(target.read_text())


def finish(document: dict[str, Any], surface: RestSurface, settings: MeshSettings) -> dict[str, Any]:
    document["info"] = {
        "title": "expense-mesh",
        "version": "v1",
        "description": "The REST face of expense-mesh, as the gateway (Envoy or Kong) serves it. "
        "Generated by `make gen` from proto/: do not edit.",
    }
    document["servers"] = [{"url": "/"}]
    document["security"] = [{BEARER: []}]
    components = document.setdefault("components", {})
    components["securitySchemes"] = {
        BEARER: {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "auth's access token.",
        }
    }
    components["schemas"] = components.get("schemas", {}) | WELL_KNOWN_SCHEMAS
    components["responses"] = {
        ERROR: {
            "description": "google.rpc.Status (docs/errors.md)",
            "content": {"application/json": {"schema": {"$ref": f"{SCHEMAS}google.rpc.Status"}}},
        }
    }
    public = {route.name for route in surface.public(settings)}
    for route, operation in _operations(document, surface):
        operation["responses"]["default"] = {"$ref": f"#/components/responses/{ERROR}"}
        if route.name in public:
            operation["security"] = []
        if route.full_method in RAW_REQUESTS:
            media = RAW_REQUESTS[route.full_method]
            operation["requestBody"] = {"required": True, "content": {media: {"schema": _raw_schema(media)}}}
        if route.response_type == DOWNLOAD_RESPONSE:
            if route.full_method not in RAW_RESPONSES:
                raise SystemExit(
                    f"{route.full_method} answers a google.api.HttpBody: add its type to RAW_RESPONSES"
                )
            _raw_response(operation, RAW_RESPONSES[route.full_method])
    document["paths"][DOCUMENT_PATH] = {"get": _document_operation()}
    _drop_unused_schemas(document)
    return document


def _operations(document: dict[str, Any], surface: RestSurface) -> Iterator[tuple[HttpRoute, dict[str, Any]]]:
    for route in surface.routes:
        yield route, document["paths"][route.template][route.verb.lower()]


def _raw_schema(media: str) -> dict[str, Any]:
    if media == "application/x-www-form-urlencoded":
        return {"type": "object", "additionalProperties": {"type": "string"}}
    return {"type": "object", "additionalProperties": True}


def _raw_response(operation: dict[str, Any], media: str) -> None:
    """The body as the service writes it; a streamed one is a download (Content-Disposition)."""
    success = operation["responses"]["200"]
    schema = {"type": "object"} if media == "application/json" else {"type": "string"}
    success["content"] = {media: {"schema": schema}}
    if "(streaming responses)" in success["description"]:
        success["description"] = f"The file ({media}; charset=utf-8), streamed."
        success["headers"] = DOWNLOAD_HEADERS


def _document_operation() -> dict[str, Any]:
    return {
        "operationId": "openapi-document",
        "summary": "This document.",
        "tags": ["OpenAPI"],
        "security": [],
        "responses": {
            "200": {
                "description": "The OpenAPI 3 document.",
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
            "default": {"$ref": f"#/components/responses/{ERROR}"},
        },
    }


def _drop_unused_schemas(document: dict[str, Any]) -> None:
    """Request messages bound whole to the query, and HttpBody's own fields, are no schema
    of the REST face."""
    schemas = document["components"]["schemas"]
    used: set[str] = set()
    pending = list(_refs({key: value for key, value in document.items() if key != "components"}))
    pending += list(_refs(document["components"]["responses"]))
    while pending:
        name = pending.pop()
        if name not in used:
            used.add(name)
            pending += list(_refs(schemas[name]))
    document["components"]["schemas"] = {name: schemas[name] for name in sorted(used)}


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and value.startswith(SCHEMAS):
                yield value.removeprefix(SCHEMAS)
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


if __name__ == "__main__":
    main(sys.argv[1:])
