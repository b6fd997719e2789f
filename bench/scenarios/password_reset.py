"""Password reset requests through the gateway: public, unauthenticated, and answered the
same for every email. Run for existing and unknown emails alike, at the same rates: the
two rows' latencies should not tell them apart (the handler answers before anything
depends on the account; a worker issues the token afterwards)."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Iterator
from itertools import cycle

from bench.api import Addresses, rest_outcome
from bench.context import RESET_BLOCK, Bench

PATH = "/v1/auth/password:reset-request"
SCENARIO = "password reset request"


async def password_reset_request(bench: Bench) -> None:
    """Open loop at the login rates; each request from the next of 250 client addresses
    (the per-address limit is `auth.password_resets_per_ip` an hour)."""
    addresses = Addresses(RESET_BLOCK)
    known = cycle(user.email for user in bench.seed.of_role("light"))

    def asking(emails: Iterator[str]) -> Callable[[], Awaitable[str]]:
        async def request() -> str:
            client = bench.rest.get(addresses.next())
            return rest_outcome(await client.post(PATH, json_body={"email": next(emails)}))

        return request

    unknown = cycle(f"nobody.{secrets.token_hex(6)}@bench.example.com" for _ in range(10_000))
    for rate in bench.profile.login_rates:
        await bench.open_step(SCENARIO, f"known email REST {rate:g}/s", asking(known), rate)
        await bench.open_step(SCENARIO, f"unknown email REST {rate:g}/s", asking(unknown), rate)
