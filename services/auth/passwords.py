"""Password hashing (argon2id) and strength checks, off the event loop.

argon2 is memory-hard on purpose: every hash holds `argon2_memory_kib` of RAM, so
a semaphore caps how many run at once; a flood queues up to a bound and beyond
it is refused at once (RESOURCE_EXHAUSTED) rather than left to time out."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from services.auth.domain import password_weakness
from services.auth.settings import AuthSettings
from services.kit.domain.errors import ResourceExhausted


@dataclass(frozen=True)
class Verification:
    ok: bool
    # Set when the stored hash used weaker parameters than configured now.
    upgraded_hash: str | None = None


def argon2_hasher(settings: AuthSettings) -> PasswordHasher:
    """argon2id with the configured cost."""
    return PasswordHasher(
        time_cost=settings.argon2_time_cost,
        memory_cost=settings.argon2_memory_kib,
        parallelism=settings.argon2_parallelism,
        type=Type.ID,
    )


class Passwords:
    def __init__(self, settings: AuthSettings) -> None:
        self._hasher = argon2_hasher(settings)
        self._min_score = settings.password_min_score
        self._slots = asyncio.Semaphore(settings.password_hash_concurrency)
        self._max_waiting = settings.password_hash_queue
        self._waiting = 0
        # zxcvbn is not thread-safe, so its checks run one at a time on their own thread.
        self._strength_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="zxcvbn")
        self._dummy_hash: str | None = None

    async def warm_up(self) -> None:
        """Computes the dummy hash before the first login needs it."""
        await self._dummy()

    async def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = await self.hash(secrets.token_urlsafe(16))
        return self._dummy_hash

    @asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        if self._slots.locked() and self._waiting >= self._max_waiting:
            raise ResourceExhausted("too many sign-ins at once; retry shortly", retry_after_seconds=1)
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        try:
            yield
        finally:
            self._slots.release()

    async def hash(self, password: str) -> str:
        async with self._slot():
            return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, stored_hash: str | None, password: str) -> Verification:
        """Without a stored hash (unknown email) a dummy hash is verified instead, so
        the answer takes as long as for a wrong password and fails the same way."""
        target = stored_hash if stored_hash is not None else await self._dummy()
        async with self._slot():
            matches = await asyncio.to_thread(self._matches, target, password)
        if not matches or stored_hash is None:
            return Verification(ok=False)
        if self._hasher.check_needs_rehash(stored_hash):
            return Verification(ok=True, upgraded_hash=await self.hash(password))
        return Verification(ok=True)

    def _matches(self, stored_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    async def weakness(self, password: str, user_inputs: list[str]) -> str | None:
        """Why a new password is refused, or None."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._strength_thread, password_weakness, password, user_inputs, self._min_score
        )

    def close(self) -> None:
        self._strength_thread.shutdown(wait=False, cancel_futures=True)
