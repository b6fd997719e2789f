"""Login and signup throttling (ASVS 6.1.1, 6.3.1), counted in Redis when present.

- Failures per (email, client IP): after `login_failures_per_account_ip` failures in
  the window that pair is refused until the window ends. Keyed by the IP too, so an
  attacker elsewhere cannot lock the real user out; a success resets the count.
- Password attempts (logins, password changes) per client IP: a credential-stuffing
  source is slowed whatever emails it tries.
- Signups per client IP and per network (/24 IPv4, /56 IPv6): each costs an argon2
  hash, and one customer's block of addresses counts as one source.
Fixed windows; a refused attempt gets RESOURCE_EXHAUSTED with RetryInfo."""

from __future__ import annotations

import hashlib
import ipaddress
import math

from services.auth.settings import AuthSettings
from services.kit.cache import Cache
from services.kit.domain.errors import ResourceExhausted


class LoginThrottle:
    def __init__(self, cache: Cache, settings: AuthSettings) -> None:
        self.cache = cache
        self.settings = settings

    @staticmethod
    def _failures_key(account: str, ip: str) -> str:
        # Hashed: bounded key length, and no email addresses in Redis.
        digest = hashlib.sha256(account.encode()).hexdigest()[:32]
        return f"throttle:failures:{digest}:{ip}"

    async def admit(self, ip: str, account: str | None = None) -> None:
        """Counts an attempt from `ip`; refuses it when the IP or (account, IP) is over its limit."""
        ip_key = f"throttle:ip:{ip}"
        attempts = await self.cache.count(ip_key, self.settings.login_ip_window_seconds)
        if attempts > self.settings.login_attempts_per_ip:
            raise ResourceExhausted(
                "too many attempts from this address; try again later", await _retry_after(self.cache, ip_key)
            )
        if account is None:
            return
        key = self._failures_key(account, ip)
        if await self.cache.peek_count(key) >= self.settings.login_failures_per_account_ip:
            raise ResourceExhausted(
                "too many failed attempts; try again later", await _retry_after(self.cache, key)
            )

    async def failed(self, account: str, ip: str) -> None:
        await self.cache.count(self._failures_key(account, ip), self.settings.login_failure_window_seconds)

    async def succeeded(self, account: str, ip: str) -> None:
        await self.cache.reset_count(self._failures_key(account, ip))


# The network one customer typically holds: an IPv4 /24, an IPv6 /56 (RIPE-690).
NETWORK_PREFIX = {4: 24, 6: 56}


def client_network(ip: str) -> str:
    """'203.0.113.7' -> '203.0.113.0/24', '2001:db8:1:2::1' -> '2001:db8:1::/56'; an
    IPv4-mapped IPv6 address counts as IPv4; anything else (no address known) as itself."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return str(ipaddress.ip_network(f"{address}/{NETWORK_PREFIX[address.version]}", strict=False))


class SignupThrottle:
    def __init__(self, cache: Cache, settings: AuthSettings) -> None:
        self.cache = cache
        self.settings = settings

    async def admit(self, ip: str) -> None:
        """Counts a signup from `ip`; refuses it when the IP or its network is over its limit."""
        window = self.settings.signup_window_seconds
        ip_key = f"throttle:signup:ip:{ip}"
        if await self.cache.count(ip_key, window) > self.settings.signups_per_ip:
            raise ResourceExhausted(
                "too many signups from this address; try again later", await _retry_after(self.cache, ip_key)
            )
        # Counted only when the address itself is within its limit: one flooding address
        # does not use up its neighbours' share.
        network_key = f"throttle:signup:net:{client_network(ip)}"
        if await self.cache.count(network_key, window) > self.settings.signups_per_network:
            raise ResourceExhausted(
                "too many signups from this network; try again later",
                await _retry_after(self.cache, network_key),
            )


async def _retry_after(cache: Cache, key: str) -> float:
    return float(max(1, math.ceil(await cache.seconds_left(key))))
