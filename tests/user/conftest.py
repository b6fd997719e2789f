from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.infra import SecuredNats, free_port, fresh_postgres_database, unique_prefix
from tests.user.harness import AuthUnderTest, ServiceProcess, UserServiceUnderTest

# Settings the test sets itself; inherited values would point the services elsewhere.
OUTER_SETTINGS = ("DATABASE_URL", "REDIS_URL", "NATS_URL")


@dataclass
class Services:
    auth: AuthUnderTest
    user: UserServiceUnderTest


def base_environment(data_dir: Path, database_url: str | None, ports: dict[str, int]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EM_") and k not in OUTER_SETTINGS}
    env.update(
        EM_DATA_DIR=str(data_dir),
        **{f"EM_PORTS__{name.upper()}": str(port) for name, port in ports.items()},
    )
    if database_url:
        env["DATABASE_URL"] = database_url
    return env


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
async def services(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Services]:
    """Real auth and user processes on one backend, each on a NATS of its own that requires
    its credentials (as compose and k8s run it): auth's events reach the user service only
    through the test (see harness), which uses each NATS as `admin`."""
    data_dir = tmp_path_factory.mktemp("user")
    ports = {"auth": free_port(), "user": free_port()}
    names = ("auth", "user")
    servers = {name: SecuredNats(data_dir / f"nats-{name}", unique_prefix(name[0]), [name]) for name in names}
    with contextlib.ExitStack() as stack:
        for server in servers.values():
            stack.enter_context(server)
        database_url = (
            stack.enter_context(fresh_postgres_database()) if request.param == "postgresql" else None
        )
        env = base_environment(data_dir, database_url, ports)
        processes = {
            name: ServiceProcess(
                name, {**env, **nats_settings(servers[name], name)}, ports[name], data_dir / f"{name}.log"
            )
            for name in names
        }
        user_database_url = database_url or f"sqlite+aiosqlite:///{data_dir / 'user.sqlite3'}"
        auth = AuthUnderTest(processes["auth"], servers["auth"].admin_url, servers["auth"].prefix)
        user = UserServiceUnderTest(
            processes["user"], user_database_url, servers["user"].admin_url, servers["user"].prefix
        )
        try:
            # The user service turns healthy once auth answers (it needs auth's keys).
            await asyncio.gather(processes["auth"].start(), processes["user"].start())
            await auth.open()
            await user.open()
            yield Services(auth, user)
        finally:
            await user.close()
            await auth.close()
            for process in processes.values():
                await process.stop()


def nats_settings(server: SecuredNats, service: str) -> dict[str, str]:
    return {"NATS_URL": server.url, "EM_EVENT_PREFIX": server.prefix, **server.password_env(service)}


@pytest.fixture
def auth(services: Services) -> AuthUnderTest:
    return services.auth


@pytest.fixture
def user_service(services: Services) -> UserServiceUnderTest:
    return services.user
