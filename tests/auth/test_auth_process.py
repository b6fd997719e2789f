"""`python -m services.auth migrate` then `serve`, as the launcher runs them, on
SQLite and on PostgreSQL: health turns SERVING once the key ring is loaded,
signup and login work, and SIGTERM stops it cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from expense.auth.v1 import auth_pb2, auth_pb2_grpc
from services.kit.config.settings import REPO_ROOT
from tests.auth.harness import STRONG_PASSWORD, random_email
from tests.infra import SecuredNats, free_port, fresh_postgres_database, unique_prefix

START_TIMEOUT_SECONDS = 30.0


@contextlib.contextmanager
def database(backend: str) -> Iterator[str | None]:
    if backend == "postgresql":
        with fresh_postgres_database() as url:
            yield url
    else:
        yield None


class AuthProcess:
    """`python -m services.auth ...` with the test's environment."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def _command(self, verb: str) -> list[str]:
        return [sys.executable, "-m", "services.auth", verb]

    def migrate(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self._command("migrate"), env=self.env, cwd=REPO_ROOT, capture_output=True, text=True, check=False
        )

    def start(self) -> None:
        with self.log.open("wb") as sink:
            self.process = subprocess.Popen(
                self._command("serve"), env=self.env, cwd=REPO_ROOT, stdout=sink, stderr=sink
            )

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=20)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


async def wait_serving(channel: grpc.aio.Channel, process: AuthProcess) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        assert process.running, process.output()
        with contextlib.suppress(grpc.aio.AioRpcError):
            answer = await health.Check(health_pb2.HealthCheckRequest(service="expense.auth.v1.AuthService"))
            if answer.status == health_pb2.HealthCheckResponse.SERVING:
                return
        await asyncio.sleep(0.1)
    raise TimeoutError(process.output())


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_migrate_then_serve(backend: str, tmp_path: Path) -> None:
    port, prefix = free_port(), unique_prefix("ap")
    # A NATS that requires auth's credentials, as compose and k8s run it.
    nats_server = SecuredNats(tmp_path / "nats", prefix, ["auth"])
    with nats_server, database(backend) as database_url:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("EM_") and key not in ("DATABASE_URL", "REDIS_URL", "NATS_URL")
        }
        env |= {"EM_DATA_DIR": str(tmp_path), "EM_PORTS__AUTH": str(port), "EM_EVENT_PREFIX": prefix}
        env |= {"NATS_URL": nats_server.url, **nats_server.password_env("auth")}
        env |= {"DATABASE_URL": database_url} if database_url else {}
        process = AuthProcess(env, tmp_path / "auth.log")
        migrated = process.migrate()
        assert migrated.returncode == 0, migrated.stderr
        process.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                await wait_serving(channel, process)
                stub = auth_pb2_grpc.AuthServiceStub(channel)
                email = random_email()
                signed_up = await stub.SignUp(
                    auth_pb2.SignUpRequest(email=email, password=STRONG_PASSWORD, display_name="Proc Ess")
                )
                logged_in = await stub.LogIn(auth_pb2.LogInRequest(email=email, password=STRONG_PASSWORD))
                assert logged_in.user.user_id == signed_up.user.user_id
        finally:
            exit_code = process.stop()
        assert exit_code == 0, process.output()
        assert "jwks.json" in {path.name for path in (tmp_path / "keys").iterdir()}
