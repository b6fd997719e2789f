"""Email over SMTP through aiosmtplib: STARTTLS required on the submission port (or TLS from
the start), AUTH when credentials are configured, a text body with an optional HTML
alternative. One connection per message; the relay's acceptance is `sent` (SMTP has no
delivery receipts)."""

from __future__ import annotations

import asyncio
import ssl
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, localtime

import aiosmtplib

from services.notification.providers.base import OutboundMessage, ProviderError, SendResult
from services.notification.providers.settings import EmailSettings


class SmtpEmailProvider:
    channel = "email"

    def __init__(self, settings: EmailSettings) -> None:
        self._settings = settings
        self._message_id_domain = settings.message_id_domain or _domain_of(settings.from_address)

    async def send(self, message: OutboundMessage) -> SendResult:
        try:
            email = self.compose(message)
        except ValueError as error:
            raise ProviderError(f"email: cannot be composed: {error}", retryable=False) from None
        client = self._client()
        try:
            # Bounded as a whole; on any failure the connection is dropped, not QUIT politely
            # (aiosmtplib's context manager would wait for the stalled reply first).
            async with asyncio.timeout(self._settings.timeouts.total_seconds):
                await client.connect()
                await client.send_message(email)
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as error:
            client.close()
            raise provider_error(error) from None
        except BaseException:
            client.close()
            raise
        await _say_goodbye(client, self._settings.timeouts.connect_seconds)
        return SendResult(provider_message_id=str(email["Message-ID"]), status="sent")

    def _client(self) -> aiosmtplib.SMTP:
        settings = self._settings
        return aiosmtplib.SMTP(
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
        """Nothing held between messages."""


async def _say_goodbye(client: aiosmtplib.SMTP, timeout_seconds: float) -> None:
    """QUIT after the relay accepted the message: whatever happens now, it was sent."""
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
