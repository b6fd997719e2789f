"""Email over SMTP through aiosmtplib: STARTTLS required on the submission port (or TLS from
the start), AUTH when credentials are configured, a text body with an optional HTML
alternative. The relay's acceptance is `sent` (SMTP has no delivery receipts).

Sessions (connected, STARTTLS'd, authenticated) are pooled and reused message after message:
at most `pool_size` at once, QUIT after `pool_idle_seconds` unused. A session that fails is
dropped. When a reused one turns out to be ended by the relay (hung up, 421, no answer) before
the message's content went out, the message is sent once more on a new session: the relay
cannot have taken it. After the content went out, a failure is reported (retryable) as it is:
the relay may have taken the message, and a resend is the service's decision."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, localtime
from typing import Any

import aiosmtplib

from services.notification.providers.base import OutboundMessage, ProviderError, SendResult
from services.notification.providers.settings import EmailSettings


class SmtpEmailProvider:
    channel = "email"

    def __init__(self, settings: EmailSettings) -> None:
        self._settings = settings
        self._message_id_domain = settings.message_id_domain or _domain_of(settings.from_address)
        self._pool = _SessionPool(
            settings.pool_size, settings.pool_idle_seconds, settings.timeouts.connect_seconds
        )

    async def send(self, message: OutboundMessage) -> SendResult:
        try:
            email = self.compose(message)
        except ValueError as error:
            raise ProviderError(f"email: cannot be composed: {error}", retryable=False) from None
        # Waiting for a free session is bounded on its own: the relay's time starts after.
        async with self._pool.slot(self._settings.pool_wait_seconds):
            try:
                async with asyncio.timeout(self._settings.timeouts.total_seconds):
                    await self._send(email)
            except (TimeoutError, aiosmtplib.SMTPException, OSError) as error:
                raise provider_error(error) from None
        return SendResult(provider_message_id=str(email["Message-ID"]), status="sent")

    async def _send(self, email: EmailMessage) -> None:
        session = self._pool.take()
        if session is not None:
            try:
                await self._send_on(session, email)
                return
            except (aiosmtplib.SMTPException, OSError) as error:
                if session.content_sent or not _session_ended(error):
                    raise
                # The relay ended the session while it sat idle; the message never left.
        await self._send_on(self._client(), email)

    async def _send_on(self, session: _Session, email: EmailMessage) -> None:
        try:
            if not session.is_connected:
                await session.connect()
            await session.send_message(email)
        except BaseException:
            # Dropped, not QUIT politely: aiosmtplib would wait for a stalled reply first,
            # and a session that failed once is not trusted with the next message.
            session.close()
            raise
        self._pool.give_back(session)

    def _client(self) -> _Session:
        settings = self._settings
        return _Session(
            hostname=settings.host,
            port=settings.port,
            username=settings.username,
            password=settings.password.get_secret_value() if settings.password else None,
            use_tls=settings.security == "tls",
            # True: refuse a relay without STARTTLS rather than send in clear.
            start_tls=settings.security == "starttls",
            validate_certs=settings.validate_certs,
            cert_bundle=settings.ca_file,
            timeout=settings.timeouts.connect_seconds,
        )

    def compose(self, message: OutboundMessage) -> EmailMessage:
        """The MIME message; ValueError when `to` is not exactly one address or a header
        would carry a line break (header injection)."""
        recipients = getaddresses([message.to])
        if len(recipients) != 1 or "@" not in recipients[0][1]:
            raise ValueError("the recipient must be one email address")
        email = EmailMessage()
        email["From"] = self._settings.from_address
        email["To"] = message.to
        email["Subject"] = message.subject or ""
        email["Date"] = format_datetime(localtime())
        # Derived from our delivery: a resend of the same delivery carries the same id,
        # so the relay's logs and the recipient's client can tell it is one message.
        email["Message-ID"] = f"<{message.delivery_id}@{self._message_id_domain}>"
        # RFC 3834: no vacation auto-replies to a machine's mail.
        email["Auto-Submitted"] = "auto-generated"
        email.set_content(message.body)
        if message.html:
            email.add_alternative(message.html, subtype="html")
        return email

    async def aclose(self) -> None:
        """QUITs the idle sessions; one still sending is QUIT when its message is done."""
        await self._pool.aclose()


class _Session(aiosmtplib.SMTP):
    """An aiosmtplib client that knows whether the current message's content went out: until
    then a failure cannot have delivered it."""

    content_sent = False

    async def data(self, *args: Any, **kwargs: Any) -> aiosmtplib.SMTPResponse:
        self.content_sent = True
        return await super().data(*args, **kwargs)


class _SessionPool:
    """At most `size` sessions in use or idle; the last one given back is taken first (the
    others can expire); an idle one is QUIT after `idle_seconds`."""

    def __init__(self, size: int, idle_seconds: float, quit_seconds: float) -> None:
        self._slots = asyncio.Semaphore(size)
        self._idle: list[_Session] = []
        self._expiries: dict[_Session, asyncio.TimerHandle] = {}
        self._goodbyes: set[asyncio.Task[None]] = set()
        self._idle_seconds = idle_seconds
        self._quit_seconds = quit_seconds
        self._closed = False

    @asynccontextmanager
    async def slot(self, wait_seconds: float) -> AsyncIterator[None]:
        """Held while taking, using and giving back one session; a retryable ProviderError
        when none is free within `wait_seconds` (all busy with a slow relay or a backlog)."""
        try:
            async with asyncio.timeout(wait_seconds):
                await self._slots.acquire()
        except TimeoutError:
            raise ProviderError(
                f"email: no free SMTP session within {wait_seconds:g} s", retryable=True
            ) from None
        try:
            yield
        finally:
            self._slots.release()

    def take(self) -> _Session | None:
        """The most recently used idle session still connected, else None."""
        while self._idle:
            session = self._idle.pop()
            self._expiries.pop(session).cancel()
            if session.is_connected:
                session.content_sent = False
                return session
            session.close()
        return None

    def give_back(self, session: _Session) -> None:
        if self._closed:
            self._quit_soon(session)
            return
        self._idle.append(session)
        loop = asyncio.get_running_loop()
        self._expiries[session] = loop.call_later(self._idle_seconds, self._expire, session)

    def _expire(self, session: _Session) -> None:
        self._idle.remove(session)
        del self._expiries[session]
        self._quit_soon(session)

    def _quit_soon(self, session: _Session) -> None:
        task = asyncio.create_task(_say_goodbye(session, self._quit_seconds))
        self._goodbyes.add(task)  # a reference, else the task may be collected unfinished
        task.add_done_callback(self._goodbyes.discard)

    async def aclose(self) -> None:
        self._closed = True
        while self._idle:
            session = self._idle.pop()
            self._expiries.pop(session).cancel()
            self._quit_soon(session)
        await asyncio.gather(*self._goodbyes)


def _session_ended(error: Exception) -> bool:
    """The relay hung up, stopped answering or said it is closing (421): the session's fault,
    not a reply about this message."""
    if isinstance(error, aiosmtplib.SMTPResponseException):
        return error.code == 421
    # SMTPServerDisconnected and SMTPTimeoutError are OSErrors too.
    return isinstance(error, OSError)


async def _say_goodbye(client: aiosmtplib.SMTP, timeout_seconds: float) -> None:
    """QUIT a session whose messages are done, bounded: whatever happens now, they were sent."""
    try:
        async with asyncio.timeout(timeout_seconds):
            await client.quit()
    except (aiosmtplib.SMTPException, OSError, TimeoutError):
        pass
    finally:
        client.close()


def provider_error(error: Exception) -> ProviderError:
    if isinstance(error, TimeoutError):
        return ProviderError("email: timed out", retryable=True)
    if isinstance(error, aiosmtplib.SMTPException):
        return smtp_error(error)
    if isinstance(error, ssl.SSLCertVerificationError):
        return ProviderError("email: relay certificate not trusted", retryable=False)
    return ProviderError(f"email: {type(error).__name__}", retryable=True)


def smtp_error(error: aiosmtplib.SMTPException) -> ProviderError:
    """SMTP's own rule: a 4xx reply is temporary, a 5xx one permanent (RFC 5321 §4.2.1)."""
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        codes = [refused.code for refused in error.recipients]
        temporary = all(400 <= code < 500 for code in codes)
        return ProviderError(
            f"email: recipient refused ({', '.join(map(str, codes))})",
            retryable=temporary,
            provider_code=str(codes[0]) if codes else None,
        )
    if isinstance(error, aiosmtplib.SMTPResponseException):
        return ProviderError(
            f"email: SMTP {error.code} {error.message}",
            retryable=400 <= error.code < 500,
            provider_code=str(error.code),
        )
    if isinstance(error, aiosmtplib.SMTPServerDisconnected | aiosmtplib.SMTPConnectError):
        return ProviderError(f"email: {type(error).__name__}", retryable=True)
    # The rest (no STARTTLS or no usable AUTH offered, ...): the relay's configuration or ours.
    return ProviderError(f"email: {error.message}", retryable=False)


def _domain_of(from_address: str) -> str:
    address = getaddresses([from_address])[0][1]
    return address.rpartition("@")[2] or "localhost"
