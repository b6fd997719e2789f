"""Finished reports cached in Redis (when there is one), per user and request.

Each user has a version token; keys include it, and applying an event for the
user replaces it, so every cached report of theirs is bypassed at once without
scanning keys. Old entries simply expire."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection
from typing import TypeVar

from google.protobuf.message import DecodeError, Message

from services.kit.cache import Cache
from services.kit.domain.ids import new_id

log = logging.getLogger(__name__)

MessageT = TypeVar("MessageT", bound=Message)
# A version token must outlive every report cached under it, or a lapsed token
# would bring back entries made under the "no version yet" token.
MIN_VERSION_TTL_SECONDS = 86_400.0


class ReportCache:
    def __init__(self, cache: Cache, ttl_seconds: float) -> None:
        self.cache = cache
        self.ttl_seconds = ttl_seconds
        self.version_ttl_seconds = max(MIN_VERSION_TTL_SECONDS, 10 * ttl_seconds)

    @staticmethod
    def _version_key(user_id: str) -> str:
        return f"report-version:{user_id}"

    async def get_or_compute(
        self,
        user_id: str,
        parts: tuple[str, ...],
        message_type: type[MessageT],
        compute: Callable[[], Awaitable[MessageT]],
    ) -> MessageT:
        if not self.cache.enabled:
            return await compute()
        head, tail = f"report:{user_id}:", ":" + ":".join(parts)
        token, cached = await self.cache.get_versioned(self._version_key(user_id), head, tail)
        key = head + token + tail
        if cached is not None:
            try:
                return message_type.FromString(cached)
            except DecodeError:
                log.warning("unreadable cached report ignored", extra={"key": key})
        report = await compute()
        await self.cache.set(key, report.SerializeToString(), self.ttl_seconds)
        return report

    async def invalidate(self, user_ids: Collection[str]) -> None:
        """New version tokens for these users: their cached reports are never read again."""
        if self.cache.enabled:
            tokens = {self._version_key(user_id): new_id().encode() for user_id in user_ids}
            await self.cache.set_many(tokens, self.version_ttl_seconds)
