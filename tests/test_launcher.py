"""The launcher's process handling, with real processes: `up` with no mesh service
(keys, embedded NATS, Envoy), a child dying before and after readiness, and the
supervisor's shutdown (SIGTERM, then SIGKILL after the grace period)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from services.kit.config.settings import REPO_ROOT
from services.launcher.supervisor import ChildFailed, Supervisor
from tests.mesh import Mesh

pytestmark = pytest.mark.timeout(120)


def _get(url: str) -> int:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=5) as response:
        return int(response.status)


def _pid_of(mesh: Mesh, child: str) -> int:
    match = re.search(rf"started {child} \(pid (\d+)\)", mesh.log)
    assert match, mesh.log
    return int(match.group(1))


def _envoy_workers(mesh: Mesh) -> int:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://127.0.0.1:{mesh.admin_port}/server_info", timeout=5) as response:
        return int(json.load(response)["command_line_options"]["concurrency"])


def test_up_boots_stops_cleanly_and_reuses_the_data_dir(tmp_path: Path) -> None:
    mesh = Mesh(tmp_path / "data", services=[])
    mesh.start()
    try:
        assert _get(f"{mesh.base_url}/healthz") == 200
        # Envoy shares the machine with the services: half the cores by default.
        assert _envoy_workers(mesh) == max(1, (os.cpu_count() or 1) // 2)
        assert "expense-mesh ready" in mesh.output
        jwks = (tmp_path / "data" / "keys" / "jwks.json").read_text()
        assert json.loads(jwks)["keys"][0]["alg"] == "RS256"
    finally:
        assert mesh.stop() == 0, mesh.log
    assert (tmp_path / "data" / "nats" / "jetstream").is_dir()

    mesh.start()
    assert mesh.stop() == 0, mesh.log
    # Same keys: a second `up` reuses the data dir instead of starting over.
    assert (tmp_path / "data" / "keys" / "jwks.json").read_text() == jwks


def test_gateway_workers_follow_the_setting(tmp_path: Path) -> None:
    mesh = Mesh(tmp_path / "data", services=[], env={"EM_GATEWAY_WORKERS": "3"})
    mesh.start()
    try:
        assert _envoy_workers(mesh) == 3
    finally:
        assert mesh.stop() == 0, mesh.log


def test_a_child_failing_at_startup_stops_the_mesh(tmp_path: Path) -> None:
    mesh = Mesh(tmp_path / "data", services=[])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", mesh.nats_port))
        taken.listen()
        mesh.launch()
        assert mesh.wait() == 1
    assert "expense-mesh: nats exited with code 1" in mesh.log
    assert "expense-mesh ready" not in mesh.log


def test_a_child_dying_later_stops_the_mesh_with_its_name(tmp_path: Path) -> None:
    mesh = Mesh(tmp_path / "data", services=[])
    mesh.start()
    os.kill(_pid_of(mesh, "envoy"), signal.SIGKILL)
    assert mesh.wait() == 1
    assert "expense-mesh: envoy exited with code -9" in mesh.log
    assert "stopping nats" in mesh.log


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


async def test_supervisor_reports_the_child_that_exits() -> None:
    supervisor = Supervisor(os.environ, grace_seconds=5)
    await supervisor.start("sleeper", _python("import time; time.sleep(60)"))
    await supervisor.start("quitter", _python("raise SystemExit(3)"))
    failure = await asyncio.wait_for(supervisor.failure, 10)
    assert (failure.name, failure.returncode) == ("quitter", 3)
    sleeper = supervisor.children[0].process
    assert sleeper.returncode is None
    await supervisor.stop()
    assert sleeper.returncode == -signal.SIGTERM


async def test_supervisor_kills_a_child_that_ignores_sigterm() -> None:
    supervisor = Supervisor(os.environ, grace_seconds=0.5)
    ignore = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    await supervisor.start("stubborn", _python(ignore))
    await asyncio.sleep(0.5)
    started = time.monotonic()
    await supervisor.stop()
    assert time.monotonic() - started < 5
    assert supervisor.children[0].process.returncode == -signal.SIGKILL
    assert not supervisor.failure.done()


async def test_a_failing_one_shot_command_names_itself() -> None:
    supervisor = Supervisor(os.environ)
    with pytest.raises(ChildFailed, match="auth migrate exited with code 2"):
        await supervisor.run_once("auth migrate", _python("raise SystemExit(2)"))


def test_prepare_publishes_the_gateway_key_files(tmp_path: Path) -> None:
    env = {**os.environ, "EM_DATA_DIR": str(tmp_path / "data"), "EM_MESH__SERVICES": "[]"}
    command = [sys.executable, "-m", "services.launcher", "prepare", "--publish-dir", str(tmp_path / "pub")]
    subprocess.run(command, env=env, cwd=REPO_ROOT, check=True, capture_output=True)
    jwks = json.loads((tmp_path / "pub" / "jwks.json").read_text())
    assert jwks == json.loads((tmp_path / "data" / "keys" / "jwks.json").read_text())
    consumer = yaml.safe_load((tmp_path / "pub" / "kong.yml").read_text())["consumers"][0]
    assert [secret["key"] for secret in consumer["jwt_secrets"]] == [key["kid"] for key in jwks["keys"]]


async def test_supervisor_survives_an_overlong_output_line(capsys: pytest.CaptureFixture[str]) -> None:
    supervisor = Supervisor(os.environ)
    chatty = "import sys; sys.stdout.write('x' * (2 << 20) + '\\nstill here\\n')"
    await supervisor.run_once("chatty", _python(chatty))
    assert "still here" in capsys.readouterr().out
