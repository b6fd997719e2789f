"""Login throttling (ASVS 6.1.1, 6.3.1), counted in Redis when present.

- Failures per (email, client IP): after `login_failures_per_account_ip` failures in
  the window that pair is refused until the window ends. Keyed by the IP too, so an
  attacker elsewhere cannot lock the real user out; a success resets the count.
- Password attempts (logins, password changes) per client IP: a credential-stuffing
  source is slowed whatever emails it tries.
Fixed windows; a refused attempt gets RESOURCE_EXHAUSTED with RetryInfo."""

from __future__ import annotations

import hashlib
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
                "too many attempts from this address; try again later", await self._retry_after(ip_key)
            )
        if account is None:
            return
        key = self._failures_key(account, ip)
        if await self.cache.peek_count(key) >= self.settings.login_failures_per_account_ip:
            raise ResourceExhausted("too many failed attempts; try again later", await self._retry_after(key))

    async def failed(self, account: str, ip: str) -> None:
        await self.cache.count(self._failures_key(account, ip), self.settings.login_failure_window_seconds)

    async def succeeded(self, account: str, ip: str) -> None:
        await self.cache.reset_count(self._failures_key(account, ip))

    async def _retry_after(self, key: str) -> float:
        return float(max(1, math.ceil(await self.cache.seconds_left(key))))
