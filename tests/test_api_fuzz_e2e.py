"""Schemathesis fuzzes every operation of the OpenAPI document, as the gateway serves it, on a
whole mesh through Envoy (PostgreSQL, Redis, secured NATS), each request with a real user's
access token. Positive and negative cases: no answer may be a 5xx, and every answer must
be one the document allows (status code, content type, body schema, required headers).

Then the operations the document links from each Create are fuzzed on a resource it made.

Bounded for CI (2 cores): a few examples per operation, no example database (each run
starts afresh), derandomized so a failure reproduces. EM_FUZZ_EXAMPLES raises the count
for a deeper run by hand."""

from __future__ import annotations

import os
import secrets
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.failures import FailureGroup

from services.kit.consistency import CONSISTENCY_HEADER, WrittenVersion
from tests.mesh import Mesh

pytestmark = pytest.mark.e2e
PASSWORD = "amber-lantern-quiet-58-fox"
EXAMPLES = int(os.environ.get("EM_FUZZ_EXAMPLES", "12"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
# Not fuzzed, because a success would end the run's own session rather than test anything:
# logout revokes the session (all of them with all_sessions) and the token dies; account
# deletion (both its bindings) erases the user whose token every other request carries.
UNFUZZABLE = ["auth-log-out", "auth-delete-account", "auth-delete-account-2"]
# Operations that must accept at least one positive case (a 2xx): the document's
# required fields, formats and enums lead generation past validation (27 or 28 of 70 at 12
# examples; 24 before the document had them).
MIN_ACCEPTED = int(os.environ.get("EM_FUZZ_MIN_ACCEPTED", "25"))


@pytest.fixture(scope="module")
def fuzz_user(mesh_postgres: Mesh) -> str:
    """A real user's access token (signed up through the gateway)."""
    email = f"fuzz.{secrets.token_hex(6)}@example.org"
    body = {"email": email, "password": PASSWORD, "display_name": "Fuzz"}
    response = httpx.post(f"{mesh_postgres.base_url}/v1/auth/signup", json=body, timeout=10, trust_env=False)
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


@pytest.fixture(scope="module")
def served_document(mesh_postgres: Mesh) -> schemathesis.BaseSchema:
    """The document as the gateway serves it, its base URL the gateway's."""
    return schemathesis.openapi.from_url(f"{mesh_postgres.base_url}/v1/openapi.json").exclude(
        operation_id=UNFUZZABLE
    )


# About a minute on 2 idle cores at 12 examples; the margin is for a loaded CI machine.
@pytest.mark.timeout(900)
def test_no_operation_answers_a_server_error_or_outside_the_document(
    served_document: schemathesis.BaseSchema, fuzz_user: str
) -> None:
    """Every operation in both modes; the findings of all of them are reported together.
    Each operation must also get past the token at least once: a run answered only 401
    (a session ended mid-run) would test nothing behind the gateway. And the document must
    lead the positive cases past validation: most operations answer some of them 2xx."""
    headers = {"Authorization": f"Bearer {fuzz_user}"}
    findings: list[str] = []
    tally: Counter[tuple[str, GenerationMode, int]] = Counter()
    operations = [result.ok() for result in served_document.get_all_operations()]
    assert len(operations) > 60, "the document lost its operations"
    started = time.monotonic()
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            # Every finding is reported, not the first only.
            try:
                _fuzz(operation, mode, headers, tally)
            except Unsatisfiable:
                continue  # nothing to negate: an operation without parameters or body
            except (Exception, FailureGroup) as finding:
                findings.append(f"{operation.label} [{mode.value}]: {finding}")
    _report(tally, time.monotonic() - started)
    assert not findings, "\n\n".join(findings)
    # Public operations (security: []) may refuse everything: the providers' callbacks check
    # a signature instead.
    guarded = {operation.label for operation in operations if operation.definition.raw.get("security") != []}
    answered = {label for label, _, status in tally if status != 401}
    refused = sorted(guarded - answered)
    assert not refused, f"answered only 401, the token refused: {refused}"
    accepted = {label for label, mode, status in tally if mode is GenerationMode.POSITIVE and status < 300}
    assert len(accepted) >= MIN_ACCEPTED, f"only {len(accepted)} operations accepted a positive case"


def _fuzz(
    operation: schemathesis.APIOperation,
    mode: GenerationMode,
    headers: dict[str, str],
    tally: Counter[tuple[str, GenerationMode, int]],
    fix: Callable[[schemathesis.Case], None] = lambda case: None,
) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: schemathesis.Case) -> None:
        _drop_made_up_consistency_token(case)
        fix(case)
        response = case.call(headers=headers)
        tally[operation.label, mode, response.status_code] += 1
        case.validate_response(response, checks=CHECKS, headers=headers)

    run()


def _drop_made_up_consistency_token(case: schemathesis.Case) -> None:
    """A well-formed X-Consistency-Token names a write the read must include; one no write
    answered makes the read wait its bound and answer 503 (retry later): right for a write
    still on its way, and a made-up one is indistinguishable. So only malformed ones (400)
    are sent: tests/test_read_your_writes_e2e.py covers real ones."""
    for name in list(case.headers or {}):
        if name.lower() == CONSISTENCY_HEADER:
            try:
                WrittenVersion.parse(case.headers[name])
            except ValueError:
                continue
            del case.headers[name]


def _report(tally: Counter[tuple[str, GenerationMode, int]], seconds: float) -> None:
    """The run's figures (pytest -s shows them): cases and status classes per mode."""
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        by_class: Counter[str] = Counter()
        for (_, case_mode, status), count in tally.items():
            if case_mode is mode:
                by_class[f"{status // 100}xx"] += count
        accepted = {label for label, case_mode, status in tally if case_mode is mode and status < 300}
        print(
            f"fuzz {mode.value}: {sum(by_class.values())} cases, {dict(sorted(by_class.items()))}, "
            f"{len(accepted)} operations answered 2xx"
        )
    print(f"fuzz: {seconds:.1f} s")


# A few seconds.
@pytest.mark.timeout(600)
def test_linked_operations_on_what_a_create_made(
    served_document: schemathesis.BaseSchema, fuzz_user: str
) -> None:
    """The fuzz above only guesses ids (404). Here each Create the document links is called
    with the document's examples, and each operation it links to is fuzzed on what it made:
    its id in the path and, where the link says so, its ETag as If-Match. The same checks, so
    the required ETag and X-Consistency-Token headers of real answers are checked too."""
    headers = {"Authorization": f"Bearer {fuzz_user}"}
    document = served_document.raw_schema
    tally: Counter[tuple[str, GenerationMode, int]] = Counter()
    findings: list[str] = []
    creates = [
        (path, operation)
        for path, operations in document["paths"].items()
        for operation in operations.values()
        if "links" in operation["responses"].get("200", {})
    ]
    assert len(creates) >= 4, "the document lost its links"
    started = time.monotonic()
    for path, create in creates:
        made = _create(served_document, create["operationId"], document, headers)
        links = create["responses"]["200"]["links"]
        # Deletion last: it ends the resource the others use.
        for name in sorted(links, key=lambda name: "delete" in name):
            target = served_document.find_operation_by_id(links[name]["operationId"])
            values = {
                key: _link_value(expression, made) for key, expression in links[name]["parameters"].items()
            }
            try:
                _fuzz(target, GenerationMode.POSITIVE, headers, tally, _fixing(values))
            except (Exception, FailureGroup) as finding:
                findings.append(f"{target.label} on {path}'s resource: {finding}")
    accepted = sorted({label for label, _, status in tally if status < 300})
    print(
        f"linked: {sum(tally.values())} cases, {len(accepted)} operations answered 2xx, "
        f"{time.monotonic() - started:.1f} s: {accepted}"
    )
    assert not findings, "\n\n".join(findings)
    # Get, update, delete (and history, occurrences) of the resources themselves.
    assert len(accepted) >= 8, f"the links reached too little: {accepted}"


def _create(
    schema: schemathesis.BaseSchema, operation_id: str, document: dict[str, Any], headers: dict[str, str]
) -> schemathesis.Response:
    """A Create called with its body's examples (and an enum's first value), answers checked."""
    operation = schema.find_operation_by_id(operation_id)
    body_schema = _resolve(
        document, operation.definition.raw["requestBody"]["content"]["application/json"]["schema"]
    )
    body = {
        name: value
        for name, prop in body_schema["properties"].items()
        if (value := _example(document, prop)) is not None
    }
    case = operation.Case(body=body, media_type="application/json")
    response = case.call(headers=headers)
    assert response.status_code == 200, (operation_id, body, response.text)
    case.validate_response(response, checks=CHECKS, headers=headers)
    return response


def _example(document: dict[str, Any], schema: dict[str, Any]) -> Any:
    for part in (_resolve(document, s) for s in [schema, *schema.get("allOf", [])]):
        if "example" in part:
            return part["example"]
        if "enum" in part:
            return part["enum"][0]
    return None


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rpartition("/")[2]]
    return schema


def _link_value(expression: str, response: schemathesis.Response) -> str:
    """The two runtime expressions the document's links use."""
    if expression.startswith("$response.body#/"):
        return str(response.json()[expression.removeprefix("$response.body#/")])
    if expression.startswith("$response.header."):
        # schemathesis keeps headers by lower-case name, each a list of values.
        return response.headers[expression.removeprefix("$response.header.").lower()][0]
    raise AssertionError(f"a link expression this test does not read: {expression}")


def _fixing(values: dict[str, str]) -> Callable[[schemathesis.Case], None]:
    """Sets a linked case's path parameters (`name`) and headers (`header.Name`)."""

    def fix(case: schemathesis.Case) -> None:
        for key, value in values.items():
            if key.startswith("header."):
                case.headers = {**(case.headers or {}), key.removeprefix("header."): value}
            else:
                case.path_parameters = {**(case.path_parameters or {}), key: value}

    return fix
