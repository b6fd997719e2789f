"""An SMTP relay (aiosmtpd) that requires STARTTLS before anything else, then AUTH (LOGIN or
PLAIN) with one username and password, and records every message it accepts, and how many
connections, logins and QUITs it saw (a client reusing its connections makes fewer)."""

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
        # Set to answer the next MAIL FROM with this reply and hang up (a relay ending a session).
        self.next_mail_reply_then_close: str | None = None
        # Set to hang up after taking a message, before its reply: the client cannot know.
        self.close_after_data = False
        self.connections = 0
        self.logins = 0
        self.quits = 0
        self._sessions: list[_Session] = []
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
            lambda: self._session(
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
        self.drop_connections()
        await self._server.wait_closed()

    def _session(self, *args: Any, **kwargs: Any) -> _Session:
        self.connections += 1
        session = _Session(*args, **kwargs)
        self._sessions.append(session)
        return session

    @property
    def open_connections(self) -> int:
        return sum(1 for session in self._sessions if not session.closed)

    def drop_connections(self, reply: str | None = None) -> None:
        """Hang up every open session, first saying `reply` (e.g. "421 4.4.2 idle too long")."""
        for session in self._sessions:
            if session.transport is not None and not session.closed:
                if reply is not None:
                    session.transport.write(f"{reply}\r\n".encode())
                session.transport.close()

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
        self.logins += 1
        return AuthResult(success=True, auth_data=auth_data.login.decode())

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        reply, self.next_mail_reply_then_close = self.next_mail_reply_then_close, None
        if reply is None:
            envelope.mail_from = address
            envelope.mail_options.extend(options)
            return "250 OK"
        assert server.transport is not None
        # After the reply is written: close() sends what is buffered first.
        asyncio.get_running_loop().call_soon(server.transport.close)
        return reply

    async def handle_QUIT(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.quits += 1
        return "221 Bye"

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
        if self.close_after_data:
            assert server.transport is not None
            server.transport.close()
        return "250 2.0.0 OK queued"


class _Session(SMTP):
    """One client connection; knows when it has ended."""

    closed = False

    def connection_lost(self, error: Exception | None) -> None:
        self.closed = True
        super().connection_lost(error)
