"""argon2id hashing and login and signup throttling, as the auth service uses them:
hashing parameters, dummy verification, rehash upgrades, the concurrency cap,
and fixed-window throttling counted in process and in real Redis."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import pytest
from argon2 import PasswordHasher, Type

from services.auth.passwords import Passwords
from services.auth.settings import AuthSettings
from services.auth.throttle import LoginThrottle, SignupThrottle, client_network
from services.kit.cache import Cache
from services.kit.domain.errors import ResourceExhausted
from tests.auth.harness import delete_redis_keys
from tests.infra import REDIS_URL, require, unique_prefix

# --- passwords ---------------------------------------------------------------------


async def test_hashes_are_argon2id_with_owasp_parameters() -> None:
    passwords = Passwords(AuthSettings())
    encoded = await passwords.hash("violet-harbor-tune-42")
    assert encoded.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert encoded != await passwords.hash("violet-harbor-tune-42")  # salted


async def test_verification() -> None:
    passwords = Passwords(AuthSettings())
    encoded = await passwords.hash("violet-harbor-tune-42")
    assert (await passwords.verify(encoded, "violet-harbor-tune-42")).ok
    assert not (await passwords.verify(encoded, "violet-harbor-tune-43")).ok
    assert not (await passwords.verify("not-a-hash", "violet-harbor-tune-42")).ok
    # Unknown account: the dummy hash is verified, and never matches.
    assert not (await passwords.verify(None, "violet-harbor-tune-42")).ok


async def test_weaker_hashes_are_upgraded_on_login() -> None:
    old = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1, type=Type.ID).hash(
        "violet-harbor-tune-42"
    )
    stronger = Passwords(AuthSettings(argon2_time_cost=3))
    verification = await stronger.verify(old, "violet-harbor-tune-42")
    assert verification.ok and verification.upgraded_hash is not None
    assert verification.upgraded_hash.startswith("$argon2id$v=19$m=19456,t=3,p=1$")
    assert (await stronger.verify(verification.upgraded_hash, "violet-harbor-tune-42")).upgraded_hash is None
    assert (await stronger.verify(old, "wrong-password-here")).upgraded_hash is None


def test_parameters_below_the_owasp_minimum_are_refused() -> None:
    for weaker in ({"argon2_time_cost": 1}, {"argon2_memory_kib": 4096}, {"argon2_parallelism": 0}):
        with pytest.raises(ValueError):
            AuthSettings(**weaker)


class CountingHasher(PasswordHasher):
    """The real argon2 hasher, counting how many hashes run at the same time."""

    def __init__(self) -> None:
        super().__init__(time_cost=2, memory_cost=19456, parallelism=1, type=Type.ID)
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0

    def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            return super().hash(password, salt=salt)
        finally:
            with self.lock:
                self.running -= 1


async def test_concurrent_hashing_is_capped() -> None:
    passwords = Passwords(AuthSettings(password_hash_concurrency=2))
    hasher = CountingHasher()
    passwords._hasher = hasher
    loop = asyncio.get_running_loop()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.005)

    ticking = loop.create_task(ticker())
    hashes = await asyncio.gather(*(passwords.hash(f"password-{i}") for i in range(8)))
    ticking.cancel()
    assert len(set(hashes)) == 8
    assert hasher.most == 2
    assert ticks > 8  # the event loop kept running while argon2 worked


async def test_strength_checks_run_off_the_loop_and_agree_with_the_policy() -> None:
    passwords = Passwords(AuthSettings())
    results = await asyncio.gather(
        passwords.weakness("password", []),
        passwords.weakness("violet-harbor-tune-42", ["a@example.org"]),
        passwords.weakness("ZebulonQuartermaine", ["Zebulon Quartermaine"]),
    )
    assert results[0] is not None and results[1] is None and results[2] is not None
    passwords.close()


# --- throttling --------------------------------------------------------------------------


@pytest.fixture(params=["in-process", "redis"])
async def cache(request: pytest.FixtureRequest) -> AsyncIterator[Cache]:
    prefix = unique_prefix("thr")
    if request.param == "redis":
        require("Redis", "127.0.0.1", 6379)
        cache = Cache(REDIS_URL, prefix)
    else:
        cache = Cache(None, prefix)
    yield cache
    if cache.enabled:
        await delete_redis_keys(REDIS_URL, f"{prefix}:*")
    await cache.close()


def _throttle(cache: Cache, **limits: int) -> LoginThrottle:
    settings = {
        "login_failures_per_account_ip": 3,
        "login_failure_window_seconds": 1,
        "login_attempts_per_ip": 100,
        "login_ip_window_seconds": 60,
    }
    settings.update(limits)
    return LoginThrottle(cache, AuthSettings(**settings))


async def test_failures_per_account_and_ip_close_then_reopen_with_the_window(cache: Cache) -> None:
    throttle = _throttle(cache)
    for _ in range(3):
        await throttle.admit("203.0.113.1", "ann@example.org")
        await throttle.failed("ann@example.org", "203.0.113.1")
    with pytest.raises(ResourceExhausted) as refused:
        await throttle.admit("203.0.113.1", "ann@example.org")
    assert refused.value.retry_after_seconds == 1
    # Another address, or another account from the same address, is not affected.
    await throttle.admit("203.0.113.2", "ann@example.org")
    await throttle.admit("203.0.113.1", "bob@example.org")
    await asyncio.sleep(1.1)  # the window ends
    await throttle.admit("203.0.113.1", "ann@example.org")


async def test_success_resets_the_failure_count(cache: Cache) -> None:
    throttle = _throttle(cache, login_failure_window_seconds=60)
    for _ in range(2):
        await throttle.failed("ann@example.org", "203.0.113.1")
    await throttle.succeeded("ann@example.org", "203.0.113.1")
    for _ in range(2):
        await throttle.failed("ann@example.org", "203.0.113.1")
    await throttle.admit("203.0.113.1", "ann@example.org")
    await throttle.failed("ann@example.org", "203.0.113.1")
    with pytest.raises(ResourceExhausted) as refused:
        await throttle.admit("203.0.113.1", "ann@example.org")
    assert 1 <= refused.value.retry_after_seconds <= 60


async def test_attempts_per_ip_close_then_reopen_with_the_window(cache: Cache) -> None:
    throttle = _throttle(cache, login_attempts_per_ip=5, login_ip_window_seconds=1)
    for index in range(5):
        await throttle.admit("203.0.113.1", f"user{index}@example.org")
    with pytest.raises(ResourceExhausted, match="this address"):
        await throttle.admit("203.0.113.1", "user9@example.org")
    with pytest.raises(ResourceExhausted):
        await throttle.admit("203.0.113.1")
    await throttle.admit("203.0.113.2")
    await asyncio.sleep(1.1)
    await throttle.admit("203.0.113.1", "user9@example.org")


@pytest.mark.parametrize(
    ("ip", "network"),
    [
        ("203.0.113.7", "203.0.113.0/24"),
        ("203.0.113.255", "203.0.113.0/24"),
        ("2001:db8:1:2ff:abcd::1", "2001:db8:1:200::/56"),
        ("2001:db8:1:2ff::", "2001:db8:1:200::/56"),
        ("2001:db8:1:300::1", "2001:db8:1:300::/56"),
        ("::ffff:203.0.113.7", "203.0.113.0/24"),
        ("unknown", "unknown"),
    ],
)
def test_client_network_is_the_ipv4_24_or_the_ipv6_56(ip: str, network: str) -> None:
    assert client_network(ip) == network


async def test_signups_per_ip_then_per_network_close_then_reopen_with_the_window(cache: Cache) -> None:
    settings = AuthSettings(signups_per_ip=2, signups_per_network=3, signup_window_seconds=1)
    throttle = SignupThrottle(cache, settings)
    for _ in range(2):
        await throttle.admit("203.0.113.1")
    with pytest.raises(ResourceExhausted, match="this address") as refused:
        await throttle.admit("203.0.113.1")
    assert refused.value.retry_after_seconds == 1
    # The refused attempt did not count for the network: one neighbour still fits.
    await throttle.admit("203.0.113.2")
    with pytest.raises(ResourceExhausted, match="this network"):
        await throttle.admit("203.0.113.3")
    await throttle.admit("203.0.114.1")  # another network
    await asyncio.sleep(1.1)  # the window ends
    await throttle.admit("203.0.113.1")


async def test_a_login_flood_beyond_the_queue_is_refused_at_once() -> None:
    settings = AuthSettings(password_hash_concurrency=1, password_hash_queue=2)
    passwords = Passwords(settings)
    stored = await passwords.hash("correct horse battery staple")
    attempts = [passwords.verify(stored, "wrong password") for _ in range(8)]
    results = await asyncio.gather(*attempts, return_exceptions=True)
    refused = [r for r in results if isinstance(r, ResourceExhausted)]
    answered = [r for r in results if not isinstance(r, BaseException)]
    assert len(answered) == 3  # one hashing, two queued
    assert len(refused) == 5 and all(r.retry_after_seconds > 0 for r in refused)
    passwords.close()
