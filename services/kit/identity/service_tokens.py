"""Service identity: who is calling a mesh-internal method.

Each mesh service holds a service credential (a per-service secret: EM_SERVICE_CREDENTIAL
from a Secret, or generated on first run into <data_dir>/keys/service-<name>.key) and
trades it with auth (ServiceTokenService/IssueServiceToken) for a short-lived RS256 token,
signed with auth's key ring like user tokens and verified by every callee from the same
JWKS (TokenVerifier.verify_caller). Operators get one from `python -m services.auth
operator-token`. Service tokens carry their own `typ` and audience: a user token never
opens an internal method, and a service token never acts as a user."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass
from typing import Literal

import grpc

from expense.auth.v1 import auth_pb2, auth_pb2_grpc
from services.kit.config.secrets import symmetric_key
from services.kit.config.settings import MeshSettings
from services.kit.domain.errors import Unavailable
from services.kit.grpc.clients import LazyChannel

log = logging.getLogger(__name__)

SERVICE_TOKEN_TYPE = "svc+jwt"
SERVICE_TOKEN_SERVICE = "expense.auth.v1.ServiceTokenService"
# A verified service token may live at most this long, whatever its claims say.
MAX_SERVICE_TOKEN_SECONDS = 3600
# A token is renewed once less than this share of its lifetime is left.
RENEW_WHEN_LEFT = 1 / 3
_SUBJECT = re.compile(r"^(service|operator):([a-z0-9][a-z0-9._@-]{0,62})$")

CallerKind = Literal["service", "operator"]


@dataclass(frozen=True)
class Caller:
    """A verified service or operator identity."""

    kind: CallerKind
    name: str

    @property
    def subject(self) -> str:
        return f"{self.kind}:{self.name}"

    @classmethod
    def from_subject(cls, subject: str) -> Caller | None:
        match = _SUBJECT.match(subject)
        if match is None:
            return None
        kind: CallerKind = "service" if match.group(1) == "service" else "operator"
        return cls(kind, match.group(2))


def service_credential(settings: MeshSettings, service: str) -> str:
    """This service's credential: configured, or the data dir's (generated on first run)."""
    return symmetric_key(settings.service_credential, settings.service_credential_file(service)).decode()


class ServiceTokens:
    """This service's token from auth, renewed before it expires; one per process."""

    def __init__(
        self,
        service: str,
        credential: str,
        auth_target: str,
        timeout_seconds: float,
        wait_for_ready: bool = True,
    ) -> None:
        self.service = service
        self._credential = credential
        self.channel = LazyChannel(auth_target, [SERVICE_TOKEN_SERVICE], timeout_seconds, wait_for_ready)
        self._token = ""
        self._renew_at = 0.0
        self._lock = asyncio.Lock()
        # A refusal is logged once until a token comes again (readiness asks every 0.2 s).
        self._refusal_logged = False

    @classmethod
    def for_service(cls, settings: MeshSettings, service: str, wait_for_ready: bool = True) -> ServiceTokens:
        """One-shot commands pass wait_for_ready=False: an absent auth is their error to report."""
        return cls(
            service,
            service_credential(settings, service),
            settings.service_address("auth"),
            settings.internal_call_timeout_seconds,
            wait_for_ready,
        )

    @property
    def obtained(self) -> bool:
        """Whether auth ever accepted this service's credential."""
        return bool(self._token)

    async def metadata(self) -> tuple[tuple[str, str], ...]:
        """What a call to a mesh-internal method carries."""
        return (("authorization", f"Bearer {await self.token()}"),)

    async def token(self) -> str:
        if time.monotonic() < self._renew_at:
            return self._token
        async with self._lock:
            # One renewal for every caller that found the token stale.
            if time.monotonic() >= self._renew_at:
                await self._renew()
        return self._token

    async def _renew(self) -> None:
        request = auth_pb2.IssueServiceTokenRequest(service=self.service, credential=self._credential)
        stub = auth_pb2_grpc.ServiceTokenServiceStub(self.channel.get())
        try:
            answer = await stub.IssueServiceToken(request)
        except grpc.aio.AioRpcError as error:
            if error.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                # A deployment mistake, not a blip: say so where the operator looks.
                if not self._refusal_logged:
                    log.error(
                        "auth refused this service's credential (EM_SERVICE_CREDENTIAL)",
                        extra={"service": self.service, "details": error.details()},
                    )
                    self._refusal_logged = True
                raise Unavailable("service identity refused by auth") from None
            raise
        self._refusal_logged = False
        self._token = answer.token
        self._renew_at = time.monotonic() + answer.expires_in * (1 - RENEW_WHEN_LEFT)

    async def close(self) -> None:
        await self.channel.close()
