"""The contract set: buf lint/breaking clean, gen/ and docs/events.md up to date,
every consumer a service wires declared where the docs read it, every public RPC
reachable over REST."""

from __future__ import annotations

import filecmp
import importlib
import os
import subprocess
import sys
from pathlib import Path
from typing import get_type_hints

import pytest
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2

from services.kit.config.settings import load_settings
from services.kit.events.consumer import EventConsumer
from services.kit.identity.access import Access, MethodAccess
from services.kit.identity.service_tokens import SERVICE_TOKEN_SERVICE
from tools import events_doc

ROOT = Path(__file__).resolve().parents[1]
BUF = ROOT / "node_modules" / ".bin" / "buf"


def _buf(*args: str) -> subprocess.CompletedProcess[str]:
    if not BUF.exists():
        pytest.fail("buf is missing: run `npm install` (make does it)")
    return subprocess.run([str(BUF), *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_buf_lint_is_clean() -> None:
    result = _buf("lint")
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_breaking_change_against_main() -> None:
    has_main = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", "refs/heads/main"], cwd=ROOT, capture_output=True
    )
    if has_main.returncode != 0:
        pytest.skip("no local main branch to compare with")
    result = _buf("breaking", "--against", ".git#branch=main")
    assert result.returncode == 0, result.stdout + result.stderr


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    """Regenerates with the same script as `make gen` into a scratch dir and compares."""
    fresh = tmp_path / "gen"
    subprocess.run(
        [str(ROOT / "tools" / "gen.sh"), str(fresh)],
        cwd=ROOT,
        env={**os.environ, "PY": sys.executable},
        check=True,
        capture_output=True,
        timeout=120,
    )
    comparison = filecmp.dircmp(ROOT / "gen", fresh, ignore=["__pycache__"])
    assert _differences(comparison) == [], "gen/ is stale: run `make gen` and commit"


def test_events_doc_is_up_to_date() -> None:
    assert events_doc.DOC.read_text() == events_doc.render(), "docs/events.md is stale: run `make gen`"


def test_services_wire_exactly_the_consumers_they_declare(tmp_path: Path) -> None:
    """docs/events.md reads each service's SUBSCRIPTIONS; the wiring must start those, no others.
    The data dir is the test's own: wiring reads (or makes) keys there, never in the checkout."""
    for service, declared in events_doc.subscriptions_by_service().items():
        build_app = importlib.import_module(f"services.{service}.server").build_app
        settings_type = get_type_hints(build_app)["settings"]  # the service's own settings class
        app = build_app(settings_type(data_dir=tmp_path))
        consumers = [getattr(task, "__self__", None) for task in app.background]
        wired = [c.subscription for c in consumers if isinstance(c, EventConsumer)]
        assert wired == list(declared), service


def _differences(comparison: filecmp.dircmp[str]) -> list[str]:
    found = [*comparison.left_only, *comparison.right_only, *comparison.diff_files, *comparison.funny_files]
    for sub in comparison.subdirs.values():
        found.extend(_differences(sub))
    return found


ACCESS = MethodAccess.from_layout(load_settings().mesh)


def _public_methods_without_http_rule() -> list[str]:
    files = descriptor_pb2.FileDescriptorSet.FromString((ROOT / "gen" / "expense_mesh.binpb").read_bytes())
    missing = []
    for file in files.file:
        if not file.package.startswith("expense."):
            continue
        for service in file.service:
            full_name = f"{file.package}.{service.name}"
            # Mesh-internal services, and the one a service gets its token from: never routed.
            if ACCESS.of(f"/{full_name}/") is Access.INTERNAL or full_name == SERVICE_TOKEN_SERVICE:
                continue
            missing.extend(
                f"{file.package}.{service.name}/{method.name}"
                for method in service.method
                if not method.options.HasExtension(annotations_pb2.http)
            )
    return missing


def test_every_public_rpc_has_an_http_rule() -> None:
    assert _public_methods_without_http_rule() == []
