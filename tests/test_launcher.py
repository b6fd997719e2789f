"""The launcher's process handling, with real processes: `up` with no mesh service
(keys, embedded NATS, Envoy), a child crash-looping before readiness, NATS and Envoy
killed and restarted after it, and the supervisor's restarts (back-off, reset after a
healthy run, giving up) and shutdown (SIGTERM, then SIGKILL after the grace period)."""

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
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from services.kit.config.settings import REPO_ROOT, SupervisionSettings
from services.launcher.supervisor import ChildFailed, Supervisor, backoff_seconds
from tests.mesh import Mesh

pytestmark = pytest.mark.timeout(120)


def _get(url: str) -> int:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=5) as response:
        return int(response.status)


def _pid_of(mesh: Mesh, child: str) -> int:
    """The pid of the child's latest start."""
    found = re.findall(rf"(?:started|restarted) {child} \(pid (\d+)\)", mesh.log)
    assert found, mesh.log
    return int(found[-1])


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


def test_a_child_crash_looping_at_startup_stops_the_mesh(tmp_path: Path) -> None:
    env = {"EM_SUPERVISION__MAX_RESTARTS": "1", "EM_SUPERVISION__BACKOFF_INITIAL_SECONDS": "0.1"}
    mesh = Mesh(tmp_path / "data", services=[], env=env)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", mesh.nats_port))
        taken.listen()
        mesh.launch()
        assert mesh.wait() == 1
    assert "nats exited with code 1 after" in mesh.log
    assert "expense-mesh: nats exited with code 1 2 times in a row: given up on" in mesh.log
    assert "expense-mesh ready" not in mesh.log


def test_nats_and_envoy_killed_are_restarted_and_the_mesh_keeps_running(tmp_path: Path) -> None:
    mesh = Mesh(tmp_path / "data", services=[])
    mesh.start()
    try:
        _kill_and_wait_back(mesh, "envoy", lambda: _get(f"{mesh.base_url}/healthz") == 200)
        _kill_and_wait_back(mesh, "nats", lambda: _port_open(mesh.nats_port))
        assert mesh.process is not None and mesh.process.poll() is None
    finally:
        assert mesh.stop() == 0, mesh.log
    assert "envoy exited with code -9" in mesh.log and "nats exited with code -9" in mesh.log


def _kill_and_wait_back(mesh: Mesh, child: str, answers: Callable[[], bool]) -> None:
    killed = _pid_of(mesh, child)
    os.kill(killed, signal.SIGKILL)
    _wait(lambda: _pid_of(mesh, child) != killed and answers(), 5, f"{child} back", mesh)


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _wait(check: Callable[[], bool], seconds: float, what: str, mesh: Mesh) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if check():
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"{what}: not after {seconds:g} s\n{mesh.log}"
        time.sleep(0.05)


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


FAST = SupervisionSettings(
    max_restarts=3, backoff_initial_seconds=0.1, backoff_max_seconds=0.25, healthy_after_seconds=30
)


def test_backoff_doubles_up_to_its_cap() -> None:
    assert [backoff_seconds(FAST, restart) for restart in (1, 2, 3, 4)] == [0.1, 0.2, 0.25, 0.25]


async def test_supervisor_gives_up_on_a_child_that_exits_at_once_and_keeps_the_others() -> None:
    supervisor = Supervisor(os.environ, grace_seconds=5, policy=FAST.model_copy(update={"max_restarts": 0}))
    await supervisor.start("sleeper", _python("import time; time.sleep(60)"))
    await supervisor.start("quitter", _python("raise SystemExit(3)"))
    failure = await asyncio.wait_for(supervisor.failure, 10)
    assert (failure.name, failure.returncode) == ("quitter", 3)
    sleeper = supervisor.children[0].process
    assert sleeper.returncode is None
    await supervisor.stop()
    assert sleeper.returncode == -signal.SIGTERM


async def test_supervisor_restarts_a_crashing_child_with_backoff_then_gives_up(
    capsys: pytest.CaptureFixture[str],
) -> None:
    supervisor = Supervisor(os.environ, grace_seconds=5, policy=FAST)
    await supervisor.start("sleeper", _python("import time; time.sleep(60)"))
    sleeper = supervisor.children[0].process
    started = time.monotonic()
    await supervisor.start("crasher", _python("import sys; sys.exit(1)"))
    failure = await asyncio.wait_for(supervisor.failure, 10)
    waited = time.monotonic() - started
    assert (failure.name, failure.returncode) == ("crasher", 1)
    assert str(failure) == "crasher exited with code 1 4 times in a row: given up on"
    out = capsys.readouterr().out
    for line in ("restart 1/3 in 0.1 s", "restart 2/3 in 0.2 s", "restart 3/3 in 0.25 s"):
        assert line in out
    assert "restart 4/3" not in out
    assert out.count("restarted crasher (pid") == 3
    assert waited >= 0.1 + 0.2 + 0.25
    # Given up on: not started again; the sleeper was never touched.
    await asyncio.sleep(0.5)
    assert "restart 4/3" not in capsys.readouterr().out
    assert sleeper.returncode is None and supervisor.children[0].process is sleeper
    await supervisor.stop()


async def test_supervisor_restarts_a_killed_child_and_a_healthy_run_resets_the_count(
    capsys: pytest.CaptureFixture[str],
) -> None:
    policy = FAST.model_copy(update={"max_restarts": 1, "healthy_after_seconds": 0.3})
    supervisor = Supervisor(os.environ, grace_seconds=5, policy=policy)
    await supervisor.start("worker", _python("import time; time.sleep(60)"))
    child = supervisor.children[0]
    for _ in range(3):
        # Each run outlasts healthy_after_seconds, so each kill is restart 1/1 again.
        await asyncio.sleep(0.4)
        killed = child.process
        killed.kill()
        for _ in range(100):
            if child.process is not killed:
                break
            await asyncio.sleep(0.05)
        assert child.process is not killed and child.process.returncode is None
    assert capsys.readouterr().out.count("restart 1/1 in 0.1 s") == 3
    assert not supervisor.failure.done()
    await supervisor.stop()
    assert child.process.returncode == -signal.SIGTERM


async def test_stop_interrupts_a_restart_back_off() -> None:
    policy = FAST.model_copy(update={"backoff_initial_seconds": 30, "backoff_max_seconds": 30})
    supervisor = Supervisor(os.environ, grace_seconds=5, policy=policy)
    await supervisor.start("crasher", _python("raise SystemExit(1)"))
    await supervisor.children[0].process.wait()
    await asyncio.sleep(0.2)
    started = time.monotonic()
    await supervisor.stop()
    assert time.monotonic() - started < 2
    assert supervisor.children[0].process.returncode == 1


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
