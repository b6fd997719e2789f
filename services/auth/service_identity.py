"""Service and operator tokens (services/kit/identity/service_tokens.py): auth checks a
service's credential and signs it a short-lived token with its key ring; operators mint
theirs with the same keys (`python -m services.auth operator-token`)."""

from __future__ import annotations

import hmac
import logging
import time

import jwt

from services.auth.keys import SigningKey
from services.auth.settings import AuthMeshSettings
from services.auth.tokens import SigningKeys
from services.kit.config.secrets import symmetric_key
from services.kit.config.settings import JwtSettings
from services.kit.domain.errors import Unauthenticated
from services.kit.domain.ids import new_id
from services.kit.identity.service_tokens import SERVICE_TOKEN_TYPE, Caller
from services.kit.identity.tokens import ALGORITHM

log = logging.getLogger(__name__)


def sign_service_token(settings: JwtSettings, key: SigningKey, caller: Caller, ttl_seconds: int) -> str:
    issued_at = int(time.time())
    claims = {
        "iss": settings.issuer,
        "aud": settings.service_audience,
        "sub": caller.subject,
        "iat": issued_at,
        "exp": issued_at + ttl_seconds,
        "jti": new_id(),
    }
    headers = {"kid": key.kid, "typ": SERVICE_TOKEN_TYPE}
    return jwt.encode(claims, key.private_key, algorithm=ALGORITHM, headers=headers)


class ServiceCredentials:
    """The credential each mesh service must present: configured (EM_SERVICE_CREDENTIALS__<NAME>,
    then only those services exist), else the data dir's file of each service with a port."""

    def __init__(self, settings: AuthMeshSettings) -> None:
        self._settings = settings
        self._from_files: dict[str, str] = {}

    def matches(self, service: str, credential: str) -> bool:
        expected = self._expected(service)
        return expected is not None and hmac.compare_digest(expected.encode(), credential.encode())

    def _expected(self, service: str) -> str | None:
        configured = self._settings.service_credentials
        if configured:
            secret = configured.get(service)
            return secret.get_secret_value() if secret is not None else None
        if service == "auth" or service not in self._settings.ports:
            return None
        if service not in self._from_files:
            path = self._settings.service_credential_file(service)
            self._from_files[service] = symmetric_key(None, path).decode()
        return self._from_files[service]


class ServiceTokenIssuer:
    def __init__(self, settings: AuthMeshSettings, keys: SigningKeys) -> None:
        self.settings = settings.jwt
        self.keys = keys
        self.credentials = ServiceCredentials(settings)

    @property
    def ttl_seconds(self) -> int:
        return self.settings.service_token_ttl_seconds

    def issue(self, service: str, credential: str) -> str:
        caller = Caller.from_subject(f"service:{service}")
        if caller is None or not credential or not self.credentials.matches(service, credential):
            log.warning("service credential refused", extra={"service": service[:64]})
            raise Unauthenticated("unknown service or wrong service credential")
        return sign_service_token(self.settings, self.keys.ring.current, caller, self.ttl_seconds)
