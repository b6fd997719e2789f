"""Logins (argon2id) through the gateway, and the auth service's login throttles."""

from __future__ import annotations

import random
import time
from itertools import cycle

from bench.api import Addresses, channel, rest_outcome
from bench.context import LOGIN_BLOCK, THROTTLE_BLOCK, Bench, Target
from bench.scenarios.common import RPC_TIMEOUT_SECONDS, rpc_outcome
from bench.seed import SeededUser
from bench.stats import OK, Measurement, ScenarioResult
from expense.auth.v1 import auth_pb2, auth_pb2_grpc

THROTTLED = "429"


async def login(bench: Bench) -> None:
    """argon2id logins through the gateway, each from its own client address (the
    per-address throttle is not what is measured here), then the throttles."""
    profile = bench.profile
    users = cycle(bench.seed.of_role("light"))
    addresses = Addresses(LOGIN_BLOCK)
    password = bench.seed.password

    async def log_in() -> str:
        user = next(users)
        client = bench.rest.get(addresses.next())
        response = await client.post("/v1/auth/login", json_body={"email": user.email, "password": password})
        return rest_outcome(response)

    for rate in profile.login_rates:
        await bench.open_step("login (argon2id)", f"REST {rate:g}/s", log_in, rate)
    await bench.closed_step(
        "login (argon2id)", "REST", log_in, profile.login_connections, path="REST", tool="h11"
    )
    await throttles(bench)


async def throttles(bench: Bench) -> None:
    """Attempts beyond the configured limits get 429 (REST) / RESOURCE_EXHAUSTED (gRPC)."""
    auth = bench.settings.auth
    extra = bench.profile.rate_limit_extra_attempts
    user = bench.seed.of_role("light")[0]
    addresses = Addresses(THROTTLE_BLOCK)
    per_ip = auth.login_attempts_per_ip
    per_ip_limit = f"{per_ip} logins/{auth.login_ip_window_seconds}s"

    measured = await _rest_attempts(bench, addresses.next(), user, bench.seed.password, per_ip + extra)
    _throttle_row(bench, "per address", per_ip_limit, measured, OK, per_ip, THROTTLED, "REST")

    per_account = auth.login_failures_per_account_ip
    measured = await _rest_attempts(bench, addresses.next(), user, "wrong password", per_account + extra)
    _throttle_row(
        bench,
        "failures per account+address",
        f"{per_account} failures/{auth.login_failure_window_seconds}s",
        measured,
        "401",
        per_account,
        THROTTLED,
        "REST",
    )

    measured = await _grpc_attempts(bench, user, per_ip + extra)
    _throttle_row(bench, "per address", per_ip_limit, measured, OK, per_ip, "RESOURCE_EXHAUSTED", "gRPC")


async def _rest_attempts(
    bench: Bench, source: str, user: SeededUser, password: str, attempts: int
) -> Measurement:
    """Logins one after the other through the gateway, all from the address `source`."""
    client = bench.rest.get(source)
    measurement = Measurement()
    started = time.perf_counter()
    for _ in range(attempts):
        sent = time.perf_counter()
        response = await client.post("/v1/auth/login", json_body={"email": user.email, "password": password})
        measurement.add((time.perf_counter() - sent) * 1000, rest_outcome(response))
    measurement.seconds = time.perf_counter() - started
    return measurement


async def _grpc_attempts(bench: Bench, user: SeededUser, attempts: int) -> Measurement:
    """Logins one after the other straight to the auth service, from one fresh address."""
    async with channel(bench.mesh.address("auth")) as auth_channel:
        stub = auth_pb2_grpc.AuthServiceStub(auth_channel)
        # Straight to the service port the client address comes from x-forwarded-for
        # (only gateways reach service ports); a fresh address for this check.
        metadata = (("x-forwarded-for", f"10.255.{random.randrange(256)}.{random.randrange(1, 255)}"),)
        request = auth_pb2.LogInRequest(email=user.email, password=bench.seed.password)
        measurement = Measurement()
        started = time.perf_counter()
        for _ in range(attempts):
            sent = time.perf_counter()
            outcome = await rpc_outcome(stub.LogIn(request, metadata=metadata, timeout=RPC_TIMEOUT_SECONDS))
            measurement.add((time.perf_counter() - sent) * 1000, outcome)
        measurement.seconds = time.perf_counter() - started
    return measurement


def _throttle_row(
    bench: Bench,
    variant: str,
    limit: str,
    measurement: Measurement,
    allowed_outcome: str,
    allowed: int,
    refused_outcome: str,
    path: str,
) -> None:
    attempts = measurement.requests
    expected = {allowed_outcome: allowed, refused_outcome: attempts - allowed}
    got = dict(measurement.outcomes)
    # Answers beyond what the limit allows for: too many allowed, too many refused, others.
    mismatched = sum(max(0, n - expected.get(outcome, 0)) for outcome, n in got.items())
    row = ScenarioResult.from_measurement(
        "login throttle",
        f"{variant} ({path})",
        f"sequential, {attempts} attempts",
        measurement,
        expected=frozenset(expected),
        path=path,
    )
    row.errors = mismatched
    row.notes.append(f"limit {limit}: expected {expected}, got {got}")
    bench.record(
        row, Target(f"exactly {allowed} allowed, the rest {refused_outcome}", lambda r: mismatched == 0)
    )
