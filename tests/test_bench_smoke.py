"""The benchmark harness, run end to end with tiny data (`python -m bench --smoke`)
against this machine's PostgreSQL, Redis and NATS, Envoy and wrk, so that it cannot
rot. Speed is not asserted: only that every scenario ran and nothing failed that
should not have."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cpu import LOAD_GENERATOR
from services.kit.config.settings import REPO_ROOT
from tests.infra import require

pytestmark = pytest.mark.e2e

SMOKE_TIMEOUT_SECONDS = 240
# The scenario (table) names each group of bench/scenarios/ writes.
EXPECTED_SCENARIOS = {
    "echo (baseline)",
    "list month page",
    "list q page",
    "summary month cached",
    "summary year cached",
    "summary month uncached",
    "summary year uncached",
    "summary custom 90 days",
    "export month CSV",
    "account export",
    "create expense",
    "event lag (create)",
    "event lag",
    "budget status",
    "page-load",
    "insights",
    "sms parse",
    "sms ingest",
    "alert latency (create)",
    "alert latency",
    "notification fan-out (publish)",
    "notification fan-out",
    "login (argon2id)",
    "password reset request",
    "login throttle",
    "bulk import",
}


def require_wrk() -> None:
    if shutil.which("wrk"):
        return
    message = "wrk is not installed (apt-get install -y wrk)"
    if os.environ.get("EM_REQUIRE_SERVICES") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory: pytest.TempPathFactory) -> dict:
    require("PostgreSQL", "127.0.0.1", 5432)
    require("Redis", "127.0.0.1", 6379)
    require("NATS", "127.0.0.1", 4222)
    require_wrk()
    results_dir = tmp_path_factory.mktemp("bench-results")
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--results-dir", str(results_dir)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT_SECONDS,
        check=False,
    )
    assert completed.returncode == 0, f"bench --smoke failed:\n{completed.stdout}\n{completed.stderr}"
    files = list(Path(results_dir).glob("*.json"))
    assert len(files) == 1, files
    return json.loads(files[0].read_text())


def test_every_scenario_ran_with_requests_and_no_unexpected_errors(smoke_results: dict) -> None:
    rows = smoke_results["scenarios"]
    assert {row["scenario"] for row in rows} == EXPECTED_SCENARIOS
    for row in rows:
        assert row["requests"] > 0, row
        assert row["errors"] == 0, row


def test_reports_reflected_the_seed_and_throttles_held(smoke_results: dict) -> None:
    assert smoke_results["verification"]["match"] is True
    assert smoke_results["verification"]["ledger"]["count"] > 0
    throttles = [row for row in smoke_results["scenarios"] if row["scenario"] == "login throttle"]
    assert len(throttles) == 3
    assert all(row["passed"] is True for row in throttles)


def test_uncached_summaries_missed_the_cache(smoke_results: dict) -> None:
    for row in smoke_results["scenarios"]:
        if row["scenario"].endswith("uncached"):
            assert row["extra"]["cache_entries_written"] >= row["requests"], row


def test_the_run_describes_machine_and_pinning(smoke_results: dict) -> None:
    machine = smoke_results["machine"]
    assert machine["cores"] >= 1
    assert machine["postgresql"]["synchronous_commit"]
    assert machine["grpcio"] and machine["envoy"] and machine["nats"] and machine["redis"]
    assert smoke_results["pinning"]
    baselines = [row for row in smoke_results["scenarios"] if row["baseline"]]
    assert {row["path"] for row in baselines} == {"REST", "gRPC"}


def test_steps_record_cpu_core_waits_and_warnings_per_component(smoke_results: dict) -> None:
    measured = [row for row in smoke_results["scenarios"] if "cpu_by_component" in row["extra"]]
    assert len(measured) >= 10
    for row in measured:
        waits = row["extra"]["cpu_wait_by_component"]
        # Every component of the system under test; the load generator's own are not read.
        assert set(waits) == set(row["extra"]["cpu_by_component"]) - {LOAD_GENERATOR}, row
        assert {"ledger", "envoy", "postgres (this run)"} <= set(waits), row
        assert all(share >= 0 for share in waits.values()), row
        assert row["cpu_wait_ms_per_request"] >= 0, row
        # What the mesh logged during the step, counted per step (bench/mesh.py).
        assert all(count > 0 for count in row["extra"]["mesh_warnings"].values()), row


def test_ratios_use_the_baseline_measured_just_before(smoke_results: dict) -> None:
    latest: dict[str, float] = {}
    ratios = 0
    for row in smoke_results["scenarios"]:
        # Like with like: the same path and load generator (bench/context.py).
        kind = f"{row['path']} {row['load'].split(',')[0]}"
        if row["baseline"]:
            latest[kind] = row["throughput"]
        elif kind in latest:
            ratios += 1
            assert row["extra"]["baseline_throughput"] == round(latest[kind], 1), row
            assert row["ratio"] == pytest.approx(row["throughput"] / latest[kind]), row
    assert ratios >= 6
    # Measured again before the later scenarios, not again right after the first baseline.
    rows = smoke_results["scenarios"]
    again = [row["variant"] for row in rows if row["baseline"] and "before" in row["variant"]]
    assert again == [
        "REST, before summaries cached",
        "gRPC, before summaries cached",
        "REST, before create expense",
        "gRPC, before create expense",
    ]
