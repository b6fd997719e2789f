"""Per-client rate limits through the real Envoy in front of the real mesh: a second
Envoy, configured by the launcher's generator with low limits, in front of the
session's SQLite mesh (whose own gateway keeps its limits out of the suite's way).
One user's or one address's flood gets 429 with Retry-After, while other users, and
other addresses, are all served. Loopback only: 127.0.0.x are distinct client addresses."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from services.kit.config.settings import MeshSettings
from services.launcher.envoy import HEALTHZ, envoy_config
from services.launcher.routes import rest_surface
from tests.mesh import Mesh, free_ports

pytestmark = pytest.mark.e2e

ENVOY = Path(sys.executable).parent / "envoy"
READY_TIMEOUT_SECONDS = 30.0
# Per minute, so a bucket refills at most once during a test.
PER_USER = 10
PER_IP = 10
PASSWORD_ROUTES = 3
FLOOD = 30
RETRY_AFTER = "60"
PASSWORD = "violet-harbor-tune-42-limits"


@pytest.fixture(scope="module")
def limited_gateway(mesh_sqlite: Mesh, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of an Envoy with low per-client limits, routing to mesh_sqlite's services."""
    gateway_port, admin_port = free_ports(2)
    per_minute = {"per": "minute"}
    settings = MeshSettings(
        data_dir=mesh_sqlite.data_dir,
        gateway_port=gateway_port,
        envoy_admin_port=admin_port,
        ports=mesh_sqlite.ports,
        limits={
            "gateway": {
                "per_user": {"requests": PER_USER, **per_minute},
                "per_ip": {"requests": PER_IP, **per_minute},
                "password_routes": {"requests": PASSWORD_ROUTES, **per_minute},
            }
        },
    )
    workdir = tmp_path_factory.mktemp("limited-gateway")
    config = workdir / "envoy.yaml"
    config.write_text(yaml.safe_dump(envoy_config(settings, rest_surface(settings), "local")))
    argv = [str(ENVOY), "-c", str(config), "--base-id", str(gateway_port), "-l", "warn", "--concurrency", "1"]
    with (workdir / "envoy.log").open("w") as log:
        envoy = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{gateway_port}"
    try:
        _wait_healthy(base_url, envoy, workdir / "envoy.log")
        yield base_url
    finally:
        envoy.terminate()
        envoy.wait(10)


def _wait_healthy(base_url: str, envoy: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline and envoy.poll() is None:
        try:
            if httpx.get(base_url + HEALTHZ, timeout=1, trust_env=False).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"the limited gateway was not healthy in {READY_TIMEOUT_SECONDS:g} s:\n{log.read_text()}")


def client(base_url: str, source: str = "127.0.0.1") -> httpx.AsyncClient:
    """A client whose requests come from the loopback address `source`."""
    transport = httpx.AsyncHTTPTransport(local_address=source)
    return httpx.AsyncClient(base_url=base_url, timeout=10, trust_env=False, transport=transport)


async def sign_up(mesh: Mesh) -> dict[str, str]:
    """Authorization headers of a new user, signed up through the mesh's own gateway."""
    body = {"email": f"limits.{secrets.token_hex(6)}@example.org", "password": PASSWORD, "display_name": "L"}
    async with client(mesh.base_url) as http:
        response = await http.post("/v1/auth/signup", json=body)
    assert response.status_code == 200, response.text
    return {"authorization": f"Bearer {response.json()['access_token']}"}


def assert_flood_limited(answers: list[httpx.Response], allowed: int) -> None:
    """At most two buckets' worth pass (one refill may fall in the flood); the rest are 429."""
    statuses = [answer.status_code for answer in answers]
    assert set(statuses) <= {200, 429}, statuses
    assert statuses.count(429) >= len(answers) - 2 * allowed, statuses
    assert {a.headers["retry-after"] for a in answers if a.status_code == 429} == {RETRY_AFTER}


async def test_one_users_flood_leaves_another_user_served(limited_gateway: str, mesh_sqlite: Mesh) -> None:
    flooder, other = await sign_up(mesh_sqlite), await sign_up(mesh_sqlite)
    async with client(limited_gateway) as http:
        flood = [http.get("/v1/auth/sessions", headers=flooder) for _ in range(FLOOD)]
        served = [http.get("/v1/auth/sessions", headers=other) for _ in range(PER_USER)]
        answers = await asyncio.gather(*flood[: FLOOD // 2], *served, *flood[FLOOD // 2 :])
    others = answers[FLOOD // 2 : FLOOD // 2 + PER_USER]
    assert [answer.status_code for answer in others] == [200] * PER_USER
    assert_flood_limited(answers[: FLOOD // 2] + answers[FLOOD // 2 + PER_USER :], PER_USER)


async def test_one_addresss_flood_leaves_other_addresses_and_its_users_served(
    limited_gateway: str, mesh_sqlite: Mesh
) -> None:
    user = await sign_up(mesh_sqlite)
    async with (
        client(limited_gateway, "127.0.0.2") as flooding,
        client(limited_gateway, "127.0.0.3") as elsewhere,
    ):
        flood = await asyncio.gather(*(flooding.get("/v1/auth/jwks") for _ in range(FLOOD)))
        assert_flood_limited(flood, PER_IP)
        # Anonymous clients elsewhere, and a user at the flooding address, have buckets of their own.
        anonymous = await asyncio.gather(*(elsewhere.get("/v1/auth/jwks") for _ in range(PER_IP)))
        signed_in = await asyncio.gather(
            *(flooding.get("/v1/auth/sessions", headers=user) for _ in range(PER_USER))
        )
    assert [answer.status_code for answer in anonymous] == [200] * PER_IP
    assert [answer.status_code for answer in signed_in] == [200] * PER_USER


async def test_password_routes_have_a_tighter_limit_of_their_own(limited_gateway: str) -> None:
    body = {"email": f"nobody.{secrets.token_hex(6)}@example.org", "password": "not-the-password"}
    async with client(limited_gateway, "127.0.0.4") as http, client(limited_gateway, "127.0.0.5") as other:
        logins = [await http.post("/v1/auth/login", json=body) for _ in range(3 * PASSWORD_ROUTES)]
        statuses = [answer.status_code for answer in logins]
        # The auth service answers the first ones; at most one refill lets more through.
        assert statuses[:PASSWORD_ROUTES] == [401] * PASSWORD_ROUTES
        assert set(statuses) == {401, 429} and statuses.count(429) >= PASSWORD_ROUTES, statuses
        assert {a.headers["retry-after"] for a in logins if a.status_code == 429} == {RETRY_AFTER}
        # The address's other requests, and other addresses' logins, are not limited by it.
        assert (await http.get("/v1/auth/jwks")).status_code == 200
        assert (await other.post("/v1/auth/login", json=body)).status_code == 401
