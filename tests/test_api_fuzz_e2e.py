"""Schemathesis fuzzes every operation of the OpenAPI document, as the gateway serves it, on a
whole mesh through Envoy (PostgreSQL, Redis, secured NATS), each request with a real user's
access token. Positive and negative cases: no answer may be a 5xx, and every answer must
be one the document allows (status code, content type, body schema).

Bounded for CI (2 cores): a few examples per operation, no example database (each run
starts afresh), derandomized so a failure reproduces. EM_FUZZ_EXAMPLES raises the count
for a deeper run by hand."""

from __future__ import annotations

import os
import secrets
import time
from collections import Counter

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
# required fields, formats and enums lead generation past validation (28 of 70 at 12
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
