"""The benchmark's reading of the mesh log: warnings counted per step."""

from __future__ import annotations

from pathlib import Path

from bench.mesh import BenchMesh
from bench.settings import MeshOverrides

GC_PAUSE = (
    '   ledger | {"time": "2026-12-05T12:06:11", "level": "warning", "service": "ledger", '
    '"message": "garbage collection paused the loop", "ms": 26.1, "generation": 2}\n'
)
ACCESS = '    envoy | [2026-12-05T11:18:00.892Z] "POST /v1/expenses HTTP/1.1" 200 - 0 16382 4 3\n'
ENVOY_WARNING = (
    "    envoy | [2026-12-05 11:18:02.414][5382][warning][main] [server.cc:1028] caught ENVOY_SIGTERM\n"
)


def test_a_step_counts_only_what_was_logged_after_its_start(tmp_path: Path) -> None:
    mesh = BenchMesh(
        tmp_path,
        "postgresql://bench/none",
        MeshOverrides(extra_services=[], extra_public_methods=[], gateway_requests_per_second=1),
    )
    assert mesh.log_size() == 0 and mesh.warnings() == {}
    mesh.log_file.write_text(GC_PAUSE + ACCESS)
    step_start = mesh.log_size()
    with mesh.log_file.open("a") as log:
        log.write(ACCESS * 3 + GC_PAUSE * 2 + ENVOY_WARNING)
    assert mesh.warnings(since=step_start) == {
        "ledger: garbage collection paused the loop": 2,
        "envoy: caught ENVOY_SIGTERM": 1,
    }
    assert mesh.warnings()["ledger: garbage collection paused the loop"] == 3
