"""Each channel's provider: where it is, who we are there, how long we wait. The notification
service nests this as `[notification.providers]` of config/mesh.toml, so every key can come
from the environment too: `EM_NOTIFICATION__PROVIDERS__SMS__AUTH_TOKEN`,
`EM_NOTIFICATION__PROVIDERS__EMAIL__PASSWORD`, ... Secrets are SecretStr: never logged, never
in the repo. A channel with `enabled = false` gets no adapter."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator


class TimeoutSettings(BaseModel):
    connect_seconds: float = Field(5.0, gt=0, le=60)
    # The whole exchange: a provider that accepted the connection but does not answer.
    total_seconds: float = Field(10.0, gt=0, le=120)


class EmailSettings(BaseModel):
    enabled: bool = False
    host: str = "localhost"
    port: int = Field(587, ge=1, le=65535)
    # starttls: plain connection upgraded by STARTTLS (submission, 587), required;
    # tls: TLS from the first byte (SMTPS, 465); none: only for a local relay in tests.
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    from_address: str = "Expense Mesh <notifications@localhost>"
    # Right-hand side of our Message-IDs (<delivery_id@domain>); the from address's domain if empty.
    message_id_domain: str | None = None
    # A PEM bundle trusted for the relay's certificate instead of the system's (a private relay).
    ca_file: str | None = None
    validate_certs: bool = True
    # Connected, authenticated SMTP sessions reused for many messages; also the most sessions
    # open at once (relays limit them per account): a send waits for a free one, at most
    # pool_wait_seconds (then a retryable failure: the queue's back-off is the back-pressure).
    pool_size: int = Field(4, ge=1, le=64)
    pool_wait_seconds: float = Field(10.0, gt=0, le=120)
    # An unused session is QUIT after this long; relays drop idle ones (RFC 5321 asks them to
    # wait 5 minutes, many wait less), and a reconnect is cheap when it is this rare.
    pool_idle_seconds: float = Field(30.0, gt=0, le=600)
    timeouts: TimeoutSettings = TimeoutSettings()

    @model_validator(mode="after")
    def _password_with_username(self) -> EmailSettings:
        if (self.username is None) != (self.password is None):
            raise ValueError("email username and password go together")
        return self


class SmsSettings(BaseModel):
    """Twilio Programmable Messaging."""

    enabled: bool = False
    base_url: str = "https://api.twilio.com"
    account_sid: str = ""
    auth_token: SecretStr | None = None
    # The sender: a Twilio number (E.164) or a Messaging Service (MG...), which wins when set.
    from_number: str | None = None
    messaging_service_sid: str | None = None
    # Where Twilio posts status changes (our gateway's public URL); `delivery_id` is added to
    # its query so a callback names our record even when the send's answer was lost.
    status_callback_url: str | None = None
    timeouts: TimeoutSettings = TimeoutSettings()

    @model_validator(mode="after")
    def _complete_when_enabled(self) -> SmsSettings:
        if self.enabled:
            if not self.account_sid or self.auth_token is None:
                raise ValueError("sms needs account_sid and auth_token")
            if not self.from_number and not self.messaging_service_sid:
                raise ValueError("sms needs from_number or messaging_service_sid")
        return self


class WhatsAppSettings(BaseModel):
    """Meta's WhatsApp Cloud API (Graph API)."""

    enabled: bool = False
    base_url: str = "https://graph.facebook.com"
    api_version: str = Field("v23.0", pattern=r"^v[0-9]+\.[0-9]+$")
    phone_number_id: str = ""
    access_token: SecretStr | None = None
    # Verifies X-Hub-Signature-256 of Meta's webhooks (callbacks.verify_meta_signature).
    app_secret: SecretStr | None = None
    # Echoed by Meta in the webhook subscription handshake (hub.verify_token).
    verify_token: SecretStr | None = None
    timeouts: TimeoutSettings = TimeoutSettings()

    @model_validator(mode="after")
    def _complete_when_enabled(self) -> WhatsAppSettings:
        if self.enabled and (not self.phone_number_id or self.access_token is None):
            raise ValueError("whatsapp needs phone_number_id and access_token")
        return self


class WebhookSettings(BaseModel):
    """Users' own HTTPS endpoints, signed per Standard Webhooks."""

    enabled: bool = False
    # Tests and a local receiver only: endpoints on loopback (127.0.0.1, ::1, localhost) are
    # allowed, over http too. Otherwise https only, and never to a non-public address.
    allow_http_localhost: bool = False
    timeouts: TimeoutSettings = TimeoutSettings()


class ProvidersSettings(BaseModel):
    email: EmailSettings = EmailSettings()
    sms: SmsSettings = SmsSettings()
    whatsapp: WhatsAppSettings = WhatsAppSettings()
    webhook: WebhookSettings = WebhookSettings()
