"""Access tokens: RS256 JWTs signed with the current key of the key ring
(services/auth/keys.py), verified by every service with services.kit.identity.tokens."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import jwt

from services.auth.keys import KeyRing, ensure_signing_keys
from services.kit.config.settings import JwtSettings, MeshSettings
from services.kit.domain.errors import Unavailable
from services.kit.domain.ids import new_id
from services.kit.identity.tokens import ALGORITHM, TOKEN_TYPE


class SigningKeys:
    """The key ring, loaded (or generated on first run) from the data dir."""

    def __init__(self, settings: MeshSettings) -> None:
        self._settings = settings
        self._ring: KeyRing | None = None

    @property
    def ready(self) -> bool:
        return self._ring is not None

    async def load(self) -> KeyRing:
        self._ring = await asyncio.to_thread(ensure_signing_keys, self._settings)
        return self._ring

    @property
    def ring(self) -> KeyRing:
        if self._ring is None:
            raise Unavailable("signing keys not loaded yet")
        return self._ring

    async def jwks(self) -> dict[str, Any]:
        """The JWKS source of the auth service's own token verifier."""
        ring = self._ring or await self.load()
        return ring.jwks()


class AccessTokens:
    def __init__(self, settings: JwtSettings, keys: SigningKeys) -> None:
        self.settings = settings
        self.keys = keys

    @property
    def ttl_seconds(self) -> int:
        return self.settings.access_ttl_seconds

    def issue(self, user_id: str, session_id: str) -> str:
        key = self.keys.ring.current
        issued_at = int(time.time())
        claims = {
            "iss": self.settings.issuer,
            "aud": self.settings.audience,
            "sub": user_id,
            "iat": issued_at,
            "exp": issued_at + self.ttl_seconds,
            "jti": new_id(),
            "sid": session_id,
        }
        headers = {"kid": key.kid, "typ": TOKEN_TYPE}
        return jwt.encode(claims, key.private_key, algorithm=ALGORITHM, headers=headers)
