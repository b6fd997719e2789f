"""Finished responses cached in Redis (when there is one), per user and request:
reporting's reports, billing's budget statuses.

Each user has a version token; keys include it, and a change to the user's data
(an event applied, a write committed) replaces it, so every cached response of
theirs is bypassed at once without scanning keys. Old entries simply expire. A
response computed while its token was replaced is stored under the old token,
which is never read again."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection
from typing import TypeVar

from google.protobuf.message import DecodeError, Message

from services.kit.cache import Cache
from services.kit.domain.ids import new_id

log = logging.getLogger(__name__)

MessageT = TypeVar("MessageT", bound=Message)
# A version token must outlive every response cached under it, or a lapsed token
# would bring back entries made under the "no version yet" token.
MIN_VERSION_TTL_SECONDS = 86_400.0


class ResponseCache:
    """`kind` names the keys: `<kind>:<user>:<token>:<parts>` and `<kind>-version:<user>`."""

    def __init__(self, cache: Cache, ttl_seconds: float, kind: str) -> None:
        self.cache = cache
        self.ttl_seconds = ttl_seconds
        self.kind = kind
        self.version_ttl_seconds = max(MIN_VERSION_TTL_SECONDS, 10 * ttl_seconds)

    def _version_key(self, user_id: str) -> str:
        return f"{self.kind}-version:{user_id}"

    async def get_or_compute(
        self,
        user_id: str,
        parts: tuple[str, ...],
        message_type: type[MessageT],
        compute: Callable[[], Awaitable[MessageT]],
    ) -> MessageT:
        if not self.cache.enabled:
            return await compute()
        head, tail = f"{self.kind}:{user_id}:", ":" + ":".join(parts)
        token, cached = await self.cache.get_versioned(self._version_key(user_id), head, tail)
        key = head + token + tail
        if cached is not None:
            try:
                return message_type.FromString(cached)
            except DecodeError:
                log.warning("unreadable cached response ignored", extra={"key": key})
        response = await compute()
        await self.cache.set(key, response.SerializeToString(), self.ttl_seconds)
        return response

    async def invalidate(self, user_ids: Collection[str]) -> None:
        """New version tokens for these users: their cached responses are never read again."""
        if self.cache.enabled:
            tokens = {self._version_key(user_id): new_id().encode() for user_id in user_ids}
            await self.cache.set_many(tokens, self.version_ttl_seconds)
