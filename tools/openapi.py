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
- every non-2xx answer as the one google.rpc.Status shape (docs/errors.md), a 429's
  Retry-After beside it;
- the protos' `google.api.field_behavior`: OUTPUT_ONLY fields `readOnly`, REQUIRED ones
  `required` in requests; a response `required`s every field the transcoder always prints
  (`always_print_primitive_fields`: all but message fields, oneof members and proto3
  optionals), so a message used both ways has a request copy, `<name>-Input`;
- the headers the services read and send (services/kit/grpc/etags.py,
  services/kit/consistency.py): ETag, If-Match, X-Consistency-Token;
- links from each Create to the operations of the resource it made (its id in their path,
  its ETag as their If-Match), which stateful clients and fuzzers follow.

Usage: python -m tools.openapi SWAGGER_DIR DESCRIPTOR_SET OUT_FILE   (tools/gen.sh runs it)"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from google.api import field_behavior_pb2
from google.protobuf import descriptor_pb2

from services.kit.config.settings import REPO_ROOT, MeshSettings, load_settings
from services.kit.domain.money import currencies
from services.launcher.routes import HttpRoute, RestSurface, load_descriptor_set, rest_surface

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
# The request copy of a message a response uses too (pydantic's convention).
INPUT_SUFFIX = "-Input"
Field = descriptor_pb2.FieldDescriptorProto
MESSAGE_TYPES = {Field.TYPE_MESSAGE, Field.TYPE_GROUP}
# Which RPCs read or send which header (a test holds this to the servicers' code).
LEDGER, BILLING = "/expense.ledger.v1.LedgerService/", "/expense.billing.v1.BillingService/"
ETAG_RESPONSES = frozenset(
    f"{service}{verb}{resource}"
    for service, resources in ((LEDGER, ["Expense"]), (BILLING, ["Budget", "Bill"]))
    for resource in resources
    for verb in ("Create", "Get", "Update")
)
IF_MATCH_REQUESTS = frozenset(
    f"{service}{verb}{resource}"
    for service, resources in ((LEDGER, ["Expense"]), (BILLING, ["Budget", "Bill"]))
    for resource in resources
    for verb in ("Update", "Delete")
)
CONSISTENCY_WRITES = frozenset(f"{LEDGER}{verb}Expense" for verb in ("Create", "Update", "Delete"))
CONSISTENCY_READS = frozenset(
    {
        "/expense.reporting.v1.ReportingService/GetSummary",
        "/expense.reporting.v1.ReportingService/GetTrend",
        "/expense.reporting.v1.ReportingService/GetCategoryReport",
        "/expense.ds.v1.DsService/GetInsights",
        f"{BILLING}GetBudget",
        f"{BILLING}ListBudgets",
    }
)
ETAG_HEADER = {
    "description": "The resource's etag (its `etag` field): send it back as If-Match.",
    "required": True,
    "schema": {"type": "string", "example": '"3"'},
}
CONSISTENCY_HEADER = {
    "description": "Names this write: send it as X-Consistency-Token to a read of reporting, "
    "billing or ds that must include it (docs/consistency.md).",
    "required": True,
    "schema": {"type": "string", "example": "0b5c2f0e-8d1a-4f3e-9a57-2c1d3e4f5a6b.2"},
}
IF_MATCH_PARAMETER = {
    "in": "header",
    "name": "If-Match",
    "required": False,
    "description": "The etag the client read (or `*`); a mismatch answers 409 ABORTED. The same "
    "as the body's `etag`: send one of them, or both naming the same version.",
    "schema": {"type": "string"},
}
CONSISTENCY_PARAMETER = {
    "in": "header",
    "name": "X-Consistency-Token",
    "required": False,
    "description": "A ledger write's X-Consistency-Token: the answer includes that write, "
    "waiting for it a bounded time (then 503 WRITE_NOT_YET_APPLIED, with Retry-After). "
    "Malformed: 400.",
    # WrittenVersion.parse: an expense id (36 characters at most), a dot, its version.
    "schema": {"type": "string", "pattern": "^[^.]{1,36}\\.[0-9]+$"},
}
RATE_LIMITED = "RateLimited"
CURRENCY = "Currency"
# What a valid request's string fields hold, where the proto says it only in words: kept
# to the validating code by tests/test_openapi.py. Requests only: an answer may hold more
# (a negative carried amount, a period a report names).
# The dates the services accept (ledger's and reporting's EARLIEST_DATE, LATEST_DATE).
DATE = {
    "type": "string",
    "format": "date",
    "pattern": "^(19[0-9]{2}|2[0-9]{3})-[0-9]{2}-[0-9]{2}$",
    "example": "2026-01-15",
}
# services/ledger/inputs.py's _REQUEST_ID (billing's RequestIdInput the same).
REQUEST_ID = {
    "type": "string",
    "pattern": "^[A-Za-z0-9._:-]{1,100}$",
    "example": "0b5c2f0e-8d1a-4f3e-9a57-2c1d3e4f5a6b",
}
EMAIL = {"type": "string", "format": "email"}
COLOR = {"type": "string", "pattern": "^#[0-9A-Fa-f]{6}$", "example": "#3366FF"}
# Examples only (a valid request to start from: the fuzz's explicit cases, its scenarios).
CATEGORY_NAME = {"example": "Board games"}  # not one of the categories a user starts with
PAYEE = {"example": "Landlord"}
RRULE = {"example": "FREQ=MONTHLY;BYMONTHDAY=5"}


def _mask(*fields: str) -> dict[str, Any]:
    """An update_mask: comma-separated names of the fields the update may change."""
    one = "(" + "|".join(fields) + ")"
    return {"type": "string", "pattern": f"^{one}(,{one})*$", "example": fields[0]}


# What an update may change (ledger's EXPENSE_FIELDS and CATEGORY_FIELDS, billing's
# BUDGET_UPDATABLE and BILL_UPDATABLE).
EXPENSE_MASK = _mask("amount", "currency", "spent_on", "category_id", "merchant", "note", "tags")
CATEGORY_MASK = _mask("name", "parent_id", "color", "icon")
BUDGET_MASK = _mask("category_id", "amount", "currency", "rollover", "thresholds")
BILL_MASK = _mask(
    "payee", "amount", "currency", "category_id", "recurrence", "first_due", "remind_days_before", "autopay"
)
BUDGET_PERIOD = {"type": "string", "enum": ["week", "month", "year"]}
# services/kit/domain/money.py's _AMOUNT, unsigned: requests carry no negative amounts.
AMOUNT = {"type": "string", "pattern": "^[0-9]{1,18}(\\.[0-9]{1,18})?$", "example": "12.50"}
MONEY = {"amount": AMOUNT, "currency": {"$ref": f"{SCHEMAS}{CURRENCY}"}}
REPORT_PERIODS = ("week", "month", "quarter", "year", "custom")
REQUEST_FIELDS: dict[str, dict[str, dict[str, Any]]] = {
    "expense.ledger.v1.CreateExpenseRequest": MONEY | {"spent_on": DATE, "request_id": REQUEST_ID},
    "expense.ledger.v1.Expense": MONEY | {"spent_on": DATE},
    "expense.ledger.v1.ImportRow": MONEY | {"spent_on": DATE, "request_id": REQUEST_ID},
    "expense.ledger.v1.ListExpensesRequest": {
        "from": DATE,
        "to": DATE,
        "min_amount": AMOUNT,
        "max_amount": AMOUNT,
        "currency": MONEY["currency"],
        "order_by": {
            "type": "string",
            "enum": [f"{f}{o}" for f in ("spent_on", "amount") for o in ("", " asc", " desc")],
        },
    },
    "expense.ledger.v1.ExportExpensesRequest": {
        "from": DATE,
        "to": DATE,
        "format": {"type": "string", "enum": ["csv"]},
    },
    "expense.ledger.v1.UpdateExpenseRequest": {"update_mask": EXPENSE_MASK},
    "expense.ledger.v1.UpdateCategoryRequest": {"update_mask": CATEGORY_MASK},
    "expense.billing.v1.UpdateBudgetRequest": {"update_mask": BUDGET_MASK},
    "expense.billing.v1.UpdateBillRequest": {"update_mask": BILL_MASK},
    "expense.ledger.v1.ImportExpensesRequest": {
        "mapping": {"type": "string", "enum": ["hdfc", "icici", "sbi", "debit_credit", "signed_amount"]}
    },
    "expense.billing.v1.CreateBudgetRequest": MONEY
    | {"start_date": DATE, "period": BUDGET_PERIOD, "request_id": REQUEST_ID},
    "expense.billing.v1.Budget": MONEY | {"start_date": DATE, "period": BUDGET_PERIOD},
    "expense.billing.v1.CreateBillRequest": MONEY
    | {"first_due": DATE, "request_id": REQUEST_ID, "payee": PAYEE, "recurrence": RRULE},
    "expense.billing.v1.AcceptBillSuggestionRequest": {"request_id": REQUEST_ID},
    "expense.billing.v1.Bill": MONEY | {"first_due": DATE},
    "expense.billing.v1.ListBillOccurrencesRequest": {"from": DATE, "to": DATE},
    "expense.billing.v1.PayBillOccurrenceRequest": {"due_date": DATE, "paid_on": DATE, "amount": AMOUNT},
    "expense.billing.v1.SkipBillOccurrenceRequest": {"due_date": DATE},
    "expense.reporting.v1.GetSummaryRequest": {
        "period": {"type": "string", "enum": list(REPORT_PERIODS)},
        "date": DATE,
        "from": DATE,
        "to": DATE,
    },
    "expense.reporting.v1.GetCategoryReportRequest": {
        "period": {"type": "string", "enum": list(REPORT_PERIODS)},
        "date": DATE,
        "from": DATE,
        "to": DATE,
    },
    "expense.reporting.v1.ExportExpensesRequest": {
        "period": {"type": "string", "enum": list(REPORT_PERIODS)},
        "date": DATE,
    },
    "expense.reporting.v1.GetTrendRequest": {
        "period": {"type": "string", "enum": list(REPORT_PERIODS[:-1])},
        "end": DATE,
        # 0: the default count (reporting's trend_default_count); trend_max_count at most.
        "count": {"type": "integer", "format": "int32", "minimum": 0, "maximum": 36},
    },
    "expense.ds.v1.GetInsightsRequest": {"period": {"type": "string", "enum": ["week", "month", "year"]}},
    "expense.ds.v1.SmsCorrections": MONEY | {"txn_date": DATE},
    "expense.user.v1.Profile": {
        "default_currency": MONEY["currency"],
        "first_day_of_week": {
            "type": "string",
            "enum": ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"],
        },
    },
    "expense.ledger.v1.CreateCategoryRequest": {
        "request_id": REQUEST_ID,
        "color": COLOR,
        "name": CATEGORY_NAME,
    },
    "expense.ledger.v1.Category": {"color": COLOR},
    "expense.auth.v1.SignUpRequest": {"email": EMAIL},
    "expense.auth.v1.LogInRequest": {"email": EMAIL},
    "expense.auth.v1.RequestPasswordResetRequest": {"email": EMAIL},
    "expense.notification.v1.CreateContactPointRequest": {
        "channel": {"type": "string", "enum": ["email", "sms", "whatsapp", "webhook"]}
    },
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
    apply_field_behavior(document, surface, messages(load_descriptor_set(descriptor)))
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
    error_content = {"application/json": {"schema": {"$ref": f"{SCHEMAS}google.rpc.Status"}}}
    components["responses"] = {
        ERROR: {"description": "google.rpc.Status (docs/errors.md)", "content": error_content},
        RATE_LIMITED: {
            "description": "RESOURCE_EXHAUSTED: a rate limit (the gateway's, a service's) or a quota "
            "(categories per user). RetryInfo in the details says when to retry.",
            "headers": {
                "Retry-After": {
                    "description": "Seconds to wait: on every rate limit, absent on a quota "
                    "(time does not lift it).",
                    "schema": {"type": "integer", "format": "int32", "minimum": 0},
                }
            },
            "content": error_content,
        },
    }
    public = {route.name for route in surface.public(settings)}
    for route, operation in _operations(document, surface):
        operation["responses"]["default"] = {"$ref": f"#/components/responses/{ERROR}"}
        operation["responses"]["429"] = {"$ref": f"#/components/responses/{RATE_LIMITED}"}
        _add_headers(operation, route.full_method)
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
            "429": {"$ref": f"#/components/responses/{RATE_LIMITED}"},
            "default": {"$ref": f"#/components/responses/{ERROR}"},
        },
    }


def _add_headers(operation: dict[str, Any], full_method: str) -> None:
    """The HTTP headers the servicer reads (gRPC metadata) and sends (initial metadata)."""
    parameters = operation.setdefault("parameters", [])
    if full_method in IF_MATCH_REQUESTS:
        parameters.append(IF_MATCH_PARAMETER)
    if full_method in CONSISTENCY_READS:
        parameters.append(CONSISTENCY_PARAMETER)
    if not parameters:
        del operation["parameters"]
    headers = {}
    if full_method in ETAG_RESPONSES:
        headers["ETag"] = ETAG_HEADER
    if full_method in CONSISTENCY_WRITES:
        headers["X-Consistency-Token"] = CONSISTENCY_HEADER
    if headers:
        operation["responses"]["200"]["headers"] = headers


def messages(descriptor_set: descriptor_pb2.FileDescriptorSet) -> dict[str, descriptor_pb2.DescriptorProto]:
    """Every message of the descriptor set by full name, nested ones included."""
    found: dict[str, descriptor_pb2.DescriptorProto] = {}

    def add(prefix: str, message: descriptor_pb2.DescriptorProto) -> None:
        found[f"{prefix}.{message.name}"] = message
        for nested in message.nested_type:
            add(f"{prefix}.{message.name}", nested)

    for file in descriptor_set.file:
        for message in file.message_type:
            add(file.package, message)
    return found


def behaviors(field: descriptor_pb2.FieldDescriptorProto) -> set[int]:
    return set(field.options.Extensions[field_behavior_pb2.field_behavior])


def always_printed(field: descriptor_pb2.FieldDescriptorProto) -> bool:
    """Whether the transcoder prints the field in every answer (always_print_primitive_fields):
    scalars, enums, repeated fields and maps; not a message field, a oneof member or a proto3
    optional (a synthetic oneof), which it prints only when set."""
    if field.label == Field.LABEL_REPEATED:
        return True
    return field.type not in MESSAGE_TYPES and not field.HasField("oneof_index")


def apply_field_behavior(
    document: dict[str, Any], surface: RestSurface, found: dict[str, descriptor_pb2.DescriptorProto]
) -> None:
    """readOnly and required from the protos; a message both requests and responses use is
    split, since `required` differs: what a client must send vs what the gateway prints."""
    schemas = document["components"]["schemas"]
    mesh = {name for name in schemas if name.startswith("expense.") and name in found}
    requests, responses = _request_parts(document), _response_parts(document)
    inputs, outputs = _closure(schemas, requests), _closure(schemas, responses)
    renamed = {name: name + INPUT_SUFFIX for name in inputs & outputs & mesh}
    for name, copy_name in renamed.items():
        schemas[copy_name] = copy.deepcopy(schemas[name])
    for part in [*requests, *(schemas[renamed.get(name, name)] for name in inputs)]:
        _retarget(part, renamed)
    # A path-bound field of a `body: "*"` request comes from the path, not the body.
    in_path = {(route.request_type, field) for route in surface.routes for field in route.path_fields}
    for name in mesh:
        fields = found[name].field
        if name in outputs:
            _describe(schemas[name], fields, [f.name for f in fields if always_printed(f)])
        if name in inputs:
            required = [
                f.name
                for f in fields
                if field_behavior_pb2.REQUIRED in behaviors(f) and (name, f.name) not in in_path
            ]
            _describe(schemas[renamed.get(name, name)], fields, required)
            _close(schemas[renamed.get(name, name)], required)
    _require_parameters(document, surface, found)
    schemas[CURRENCY] = {
        "type": "string",
        "description": "ISO 4217, a currency the mesh knows (config/currencies.toml).",
        "example": "INR",
        "enum": sorted(currencies().exponents),
    }
    for name, constraints in REQUEST_FIELDS.items():
        if name in inputs:
            _constrain(schemas[renamed.get(name, name)]["properties"], constraints, name)
    _constrain_parameters(document, surface)
    _link_creations(document, surface, found)
    document["components"]["schemas"] = {name: schemas[name] for name in sorted(schemas)}


def _link_creations(
    document: dict[str, Any], surface: RestSurface, found: dict[str, descriptor_pb2.DescriptorProto]
) -> None:
    """A Create answering its resource (a message with `<resource>_id`) links to every
    operation of its service with `{<resource>_id}` in its path."""
    for route, operation in _operations(document, surface):
        resource = route.method.removeprefix("Create")
        if not route.method.startswith("Create") or route.response_type.rpartition(".")[2] != resource:
            continue
        id_field = f"{_snake(resource)}_id"
        if id_field not in {field.name for field in found[route.response_type].field}:
            continue
        links = {}
        for target in surface.routes:
            if target.grpc_service == route.grpc_service and id_field in target.path_fields:
                parameters = {id_field: f"$response.body#/{id_field}"}
                if route.full_method in ETAG_RESPONSES and target.full_method in IF_MATCH_REQUESTS:
                    parameters["header.If-Match"] = "$response.header.ETag"
                links[target.name] = {"operationId": target.name, "parameters": parameters}
        if links:
            operation["responses"]["200"]["links"] = links


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


def _constrain(properties: dict[str, Any], constraints: dict[str, dict[str, Any]], name: str) -> None:
    for field, constraint in constraints.items():
        if field not in properties:
            raise SystemExit(f"REQUEST_FIELDS: {name} has no field {field}")
        if "$ref" in constraint:
            # A $ref takes no sibling keywords in OpenAPI 3.0.
            described = {key: value for key, value in properties[field].items() if key == "description"}
            properties[field] = {"allOf": [constraint]} | described
        else:
            properties[field] = properties[field] | constraint


def _constrain_parameters(document: dict[str, Any], surface: RestSurface) -> None:
    """A query or path parameter is a field of the request message."""
    for route, operation in _operations(document, surface):
        constraints = REQUEST_FIELDS.get(route.request_type, {})
        for parameter in operation.get("parameters", []):
            if parameter["in"] in ("query", "path") and parameter["name"] in constraints:
                parameter["schema"] = constraints[parameter["name"]]


def _describe(schema: dict[str, Any], fields: Any, required: list[str]) -> None:
    properties = schema.get("properties", {})
    for field in fields:
        if field_behavior_pb2.OUTPUT_ONLY in behaviors(field) and field.name in properties:
            prop = properties[field.name]
            # A $ref takes no sibling keywords in OpenAPI 3.0.
            properties[field.name] = (
                {"allOf": [prop], "readOnly": True} if "$ref" in prop else prop | {"readOnly": True}
            )
    if required:
        schema["required"] = required


def _close(schema: dict[str, Any], required: list[str]) -> None:
    """A request names only its message's fields (strict_input.py: both gateways answer 400
    to any other), and a required string is not empty."""
    schema["additionalProperties"] = False
    for name in required:
        if schema["properties"][name].get("type") == "string":
            schema["properties"][name]["minLength"] = 1


def _require_parameters(
    document: dict[str, Any], surface: RestSurface, found: dict[str, descriptor_pb2.DescriptorProto]
) -> None:
    """A REQUIRED field bound to the query is a required query parameter."""
    for route, operation in _operations(document, surface):
        request = found.get(route.request_type)
        if request is None:
            continue
        required = {f.name for f in request.field if field_behavior_pb2.REQUIRED in behaviors(f)}
        for parameter in operation.get("parameters", []):
            if parameter["in"] == "query" and parameter["name"] in required:
                parameter["required"] = True
                parameter["schema"]["minLength"] = 1
            if parameter["name"] == "page_size":
                parameter["schema"]["minimum"] = 0  # every list refuses a negative one


def _request_parts(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        part
        for operations in document["paths"].values()
        for operation in operations.values()
        for part in (operation.get("requestBody", {}), {"parameters": operation.get("parameters", [])})
    ] + list(document["components"].get("requestBodies", {}).values())


def _response_parts(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        operation["responses"]
        for operations in document["paths"].values()
        for operation in operations.values()
    ] + list(document["components"]["responses"].values())


def _closure(schemas: dict[str, Any], roots: list[dict[str, Any]]) -> set[str]:
    """The schemas the roots reach."""
    reached: set[str] = set()
    pending = [name for root in roots for name in _refs(root)]
    while pending:
        name = pending.pop()
        if name not in reached:
            reached.add(name)
            pending += list(_refs(schemas[name]))
    return reached


def _retarget(node: Any, renamed: dict[str, str]) -> None:
    """Points the node's schema references at the request copies, in place."""
    if isinstance(node, dict):
        ref = node.get("$ref", "")
        if ref.startswith(SCHEMAS) and ref.removeprefix(SCHEMAS) in renamed:
            node["$ref"] = SCHEMAS + renamed[ref.removeprefix(SCHEMAS)]
        for value in node.values():
            _retarget(value, renamed)
    elif isinstance(node, list):
        for item in node:
            _retarget(item, renamed)


def _drop_unused_schemas(document: dict[str, Any]) -> None:
    """Request messages bound whole to the query, and HttpBody's own fields, are no schema
    of the REST face."""
    schemas = document["components"]["schemas"]
    used: set[str] = set()
    pending = list(_refs({key: value for key, value in document.items() if key != "components"}))
    # Shared request bodies too: swagger2openapi moves a body two operations share there.
    pending += list(_refs(document["components"]["responses"]))
    pending += list(_refs(document["components"].get("requestBodies", {})))
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
