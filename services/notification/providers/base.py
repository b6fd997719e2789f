"""What the notification service hands an adapter and gets back, whatever the channel."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

# Past this many characters a provider's error text is cut: it is stored on the delivery record.
MAX_ERROR_CHARS = 300


@dataclass(frozen=True)
class WhatsAppTemplate:
    """A Meta-approved template: its name, language code (e.g. `en_US`) and body parameters
    in the order the approved template numbers them ({{1}}, {{2}}, ...)."""

    name: str
    language: str
    parameters: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class OutboundMessage:
    delivery_id: str  # our delivery record id, also the provider idempotency key where supported
    channel: str  # "email" | "sms" | "whatsapp" | "webhook"
    to: str  # email address, E.164 phone, or webhook URL
    subject: str | None
    body: str
    html: str | None = None
    whatsapp_template: WhatsAppTemplate | None = None
    webhook_secret: str | None = None
    # The user wrote to us on WhatsApp within the last 24 hours: free text is allowed.
    # Outside that window only an approved template may be sent.
    whatsapp_session_open: bool = False
    # A webhook's event type, sent in the JSON envelope next to the body.
    webhook_event_type: str | None = None


@dataclass(frozen=True)
class SendResult:
    """The provider accepted the message: its id (status callbacks carry it) and its status
    word at acceptance (Twilio `queued`/`accepted`, Meta `accepted`, SMTP `sent`, webhook
    `delivered`)."""

    provider_message_id: str
    status: str


class ProviderError(Exception):
    """A send that did not go through. `retryable`: trying the same message again later can
    succeed (5xx, 429, timeouts, refused connections, SMTP 4xx); otherwise the message itself
    or our account is wrong (4xx, SMTP 5xx, bad credentials) and retrying repeats the failure.
    `str(error)` is safe to store: no credentials, the provider's text cut short."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        provider_code: str | None = None,
        retry_after_seconds: float | None = None,
    ) -> None:
        super().__init__(message[:MAX_ERROR_CHARS])
        self.retryable = retryable
        self.provider_code = provider_code
        self.retry_after_seconds = retry_after_seconds


@runtime_checkable
class Provider(Protocol):
    channel: str

    async def send(self, message: OutboundMessage) -> SendResult: ...

    async def aclose(self) -> None: ...
