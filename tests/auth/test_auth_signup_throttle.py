"""Signup throttling over real gRPC, on SQLite (counted in process) and on PostgreSQL
with Redis: signups per client IP and per network (/24 IPv4, /56 IPv6) are refused
with RESOURCE_EXHAUSTED and RetryInfo before any password hashing, and other networks
are unaffected."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from expense.auth.v1 import auth_pb2
from services.auth.passwords import Passwords
from tests.auth.conftest import BACKENDS
from tests.auth.harness import STRONG_PASSWORD, AuthUnderTest, from_ip, random_email, running_auth
from tests.auth.test_auth_service import rpc_error

SIGNUPS_PER_IP = 2
SIGNUPS_PER_NETWORK = 3
WINDOW_SECONDS = 600


@dataclass(frozen=True)
class Network:
    """A random network of one family: addresses inside it, and one just outside."""

    address: Callable[[int], str]
    neighbour: str


def ipv4_network() -> Network:
    second, third = secrets.randbelow(256), secrets.randbelow(255)
    return Network(lambda host: f"10.{second}.{third}.{host}", f"10.{second}.{third + 1}.1")


def ipv6_network() -> Network:
    """The /56 is 2001:db8:<group>:<byte>00::/56; its hosts vary the bits after it."""
    group, byte = secrets.randbelow(1 << 16), secrets.randbelow(255)
    return Network(
        lambda host: f"2001:db8:{group:x}:{byte:02x}{host:02x}::{host:x}",
        f"2001:db8:{group:x}:{byte + 1:02x}00::1",
    )


FAMILIES = {"ipv4": ipv4_network, "ipv6": ipv6_network}


@pytest.fixture(scope="module", params=list(BACKENDS))
async def throttled_auth(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[AuthUnderTest]:
    backend, overrides = BACKENDS[request.param]
    limits = {
        "signups_per_ip": SIGNUPS_PER_IP,
        "signups_per_network": SIGNUPS_PER_NETWORK,
        "signup_window_seconds": WINDOW_SECONDS,
    }
    data_dir = tmp_path_factory.mktemp("auth-signups")
    async with running_auth(backend, data_dir, auth=limits, **overrides) as service:
        yield service


@pytest.fixture
def hashes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every password the service hashes while the test runs."""
    hashed: list[str] = []
    original = Passwords.hash

    async def counting_hash(self: Passwords, password: str) -> str:
        hashed.append(password)
        return await original(self, password)

    monkeypatch.setattr(Passwords, "hash", counting_hash)
    return hashed


async def sign_up(service: AuthUnderTest, ip: str, email: str | None = None) -> auth_pb2.AuthTokens:
    request = auth_pb2.SignUpRequest(
        email=email or random_email("signup"),
        password=f"{STRONG_PASSWORD}-{secrets.token_hex(2)}",
        display_name="Signup Throttle",
    )
    return await service.auth.SignUp(request, metadata=from_ip(ip))


async def assert_refused(service: AuthUnderTest, ip: str, email: str | None = None) -> None:
    error = await rpc_error(sign_up(service, ip, email), grpc.StatusCode.RESOURCE_EXHAUSTED)
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    retry = error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(retry)
    assert 0 < retry.retry_delay.seconds <= WINDOW_SECONDS


@pytest.mark.parametrize("family", list(FAMILIES))
async def test_signups_from_one_address_are_refused_before_any_hash(
    throttled_auth: AuthUnderTest, hashes: list[str], family: str
) -> None:
    network = FAMILIES[family]()
    for _ in range(SIGNUPS_PER_IP):
        await sign_up(throttled_auth, network.address(1))
    assert len(hashes) == SIGNUPS_PER_IP
    refused_email = random_email("refused")
    await assert_refused(throttled_auth, network.address(1), refused_email)
    assert len(hashes) == SIGNUPS_PER_IP  # refused before the password was hashed
    # Nothing was created: the same email signs up from elsewhere.
    created = await sign_up(throttled_auth, network.neighbour, refused_email)
    assert created.user.email == refused_email


@pytest.mark.parametrize("family", list(FAMILIES))
async def test_signups_from_one_network_are_refused_whatever_the_address(
    throttled_auth: AuthUnderTest, hashes: list[str], family: str
) -> None:
    network = FAMILIES[family]()
    for host in range(1, SIGNUPS_PER_NETWORK + 1):
        await sign_up(throttled_auth, network.address(host))
    await assert_refused(throttled_auth, network.address(SIGNUPS_PER_NETWORK + 1))
    assert len(hashes) == SIGNUPS_PER_NETWORK
    # The next network is unaffected.
    for _ in range(SIGNUPS_PER_IP):
        await sign_up(throttled_auth, network.neighbour)
