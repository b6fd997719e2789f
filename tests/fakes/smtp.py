"""An SMTP relay (aiosmtpd) that requires STARTTLS before anything else, then AUTH (LOGIN or
PLAIN) with one username and password, and records every message it accepts."""

from __future__ import annotations

import asyncio
import email
import email.policy
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.fakes.tls import SelfSignedCertificate, self_signed_certificate


@dataclass(frozen=True)
class ReceivedEmail:
    mail_from: str
    recipients: list[str]
    message: EmailMessage
    login: str  # who authenticated
    over_tls: bool


class FakeSmtpServer:
    def __init__(
        self,
        username: str = "mailer",
        password: str = "mailer-password",
        certificate: SelfSignedCertificate | None = None,
    ) -> None:
        self.username = username
        self.password = password
        self.certificate = certificate or self_signed_certificate()
        self.messages: list[ReceivedEmail] = []
        self.failed_logins = 0
        # Set to answer DATA with this reply instead of accepting, e.g. "451 4.3.0 try later".
        self.data_reply: str | None = None
        # Seconds to stall before answering DATA: a relay that hangs.
        self.data_delay_seconds = 0.0
        self._server: asyncio.Server | None = None

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return self._server.sockets[0].getsockname()[1]

    async def __aenter__(self) -> FakeSmtpServer:
        loop = asyncio.get_running_loop()
        context = self.certificate.server_context()
        self._server = await loop.create_server(
            lambda: SMTP(
                self,
                hostname="fake-smtp.test",
                tls_context=context,
                require_starttls=True,
                auth_required=True,
                auth_require_tls=True,
                authenticator=self._authenticate,
                loop=loop,
            ),
            host=self.host,
            port=0,
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        good = (
            isinstance(auth_data, LoginPassword)
            and mechanism in {"LOGIN", "PLAIN"}
            and auth_data.login.decode() == self.username
            and auth_data.password.decode() == self.password
        )
        if not good:
            self.failed_logins += 1
        if not good:
            # handled=False: aiosmtpd answers "535 5.7.8 Authentication credentials invalid".
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, auth_data=auth_data.login.decode())

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_delay_seconds:
            await asyncio.sleep(self.data_delay_seconds)
        if self.data_reply is not None:
            return self.data_reply
        content = envelope.original_content or b""
        parsed = email.message_from_bytes(content, policy=email.policy.default)
        self.messages.append(
            ReceivedEmail(
                mail_from=str(envelope.mail_from),
                recipients=list(envelope.rcpt_tos),
                message=parsed,  # type: ignore[arg-type]
                login=str(session.auth_data),
                over_tls=session.ssl is not None,
            )
        )
        return "250 2.0.0 OK queued"
