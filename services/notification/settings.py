"""The notification service's settings: its [notification] section of config/mesh.toml
(EM_NOTIFICATION__* in the environment) beside the kit's. Which event becomes which
template, with which variables, is data here ([notification.sources]): a new source
is a section and a subscription, no code."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from services.kit.config.secrets import MIN_KEY_LENGTH
from services.kit.config.settings import BreakerSettings, MeshSettings
from services.notification.providers.settings import ProvidersSettings

CHANNELS = ("in_app", "email", "sms", "whatsapp", "webhook")
SEVERITIES = ("info", "warning", "critical")


class MoneyField(BaseModel):
    """A money variable from two payload fields: a decimal string and its currency."""

    model_config = ConfigDict(extra="forbid")

    amount: str
    currency: str


class ComputedField(BaseModel):
    """A variable computed from one payload field, for a template that wants another
    form than the event carries: whole minutes or hours from the event's intake until
    an RFC 3339 time (a token's expiry), or the first day of a "YYYY-MM" month.
    Exactly one is set, naming the payload field path."""

    model_config = ConfigDict(extra="forbid")

    minutes_until: str = ""
    hours_until: str = ""
    month_start: str = ""

    @model_validator(mode="after")
    def _one(self) -> ComputedField:
        if sum(bool(path) for path in (self.minutes_until, self.hours_until, self.month_start)) != 1:
            raise ValueError("a computed variable names one of minutes_until, hours_until, month_start")
        return self


Scalar = str | MoneyField | ComputedField


class ListField(BaseModel):
    """A list variable from a payload list: each item a mapping of its own fields (a
    path resolves in the item first, then in the enclosing payload: the item's currency
    may be the parent's)."""

    model_config = ConfigDict(extra="forbid")

    list: str
    each: dict[str, Scalar]


class TemplateMapping(BaseModel):
    """One template (its key) and where each of its variables comes from: a payload
    field path ("details.budget", "display_name"), a money pair, or a value computed
    from a field ({ minutes_until = "expire_time" }), or a list of items mapped alike.
    `recipient.name` is the user's display name (from their signup), for events that
    do not carry it."""

    key: str
    variables: dict[str, Scalar | ListField] = {}


class SourceSettings(BaseModel):
    """How one event type becomes messages. The template is `template`, or the one
    `templates` names for the value of the payload field `template_field` (an alert's
    type); events of a value not listed make no message."""

    template: TemplateMapping | None = None
    template_field: str = ""
    templates: dict[str, TemplateMapping] = {}
    # The payload field holding the severity (an empty value: `severity`), or none.
    severity_field: str = ""
    severity: str = "info"
    # Channels it goes to unless the user's preferences say otherwise; in_app stays when
    # listed here (the inbox is the record of what was said).
    default_channels: list[str] = ["in_app"]
    # Channels the user cannot turn off (a password reset's email).
    mandatory_channels: list[str] = []
    # A verified email address the event carries ("email": user.registered's).
    email_field: str = ""
    # The user's display name the event carries, kept as `recipient.name` for the
    # sources whose events have none (the monthly report).
    name_field: str = ""
    # A payload list: one message per item (a monthly report per currency), the item
    # at `item.` in the variables' paths.
    each: str = ""
    # Channels whose delivery goes to an address the event carries, not to the user's
    # contact point ({ email = "email" }: a password reset reaches the account's address
    # even before any contact point exists, and an address being verified is not one).
    address_fields: dict[str, str] = {}

    @model_validator(mode="after")
    def _one_way(self) -> SourceSettings:
        if (self.template is None) == (not self.template_field):
            raise ValueError("a source names either `template` or `template_field` with `templates`")
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {', '.join(SEVERITIES)}")
        unknown = set(self.default_channels + self.mandatory_channels + list(self.address_fields)) - set(
            CHANNELS
        )
        if unknown:
            raise ValueError(f"unknown channels {sorted(unknown)}")
        return self


class DeliverySettings(BaseModel):
    """The delivery work queue: tries per job and the wait before each retry."""

    max_deliver: int = Field(8, ge=2, le=50)
    # Seconds before retry n (the last repeats); ~30 minutes over 8 tries by default.
    backoff_seconds: list[float] = [10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 660.0]
    # A worker's job is redelivered after this long without an answer (a crashed worker).
    ack_wait_seconds: float = Field(60.0, ge=5)
    max_ack_pending: int = Field(2000, ge=1)
    fetch_batch: int = Field(50, ge=1, le=1000)
    # Jobs a process sends at once.
    concurrency: int = Field(64, ge=1, le=1024)
    # Deliveries committed but never queued (a crash between) are queued after this long;
    # deferred ones when their time comes. The sweep runs this often.
    sweep_interval_seconds: float = Field(2.0, gt=0)
    unqueued_after_seconds: float = Field(10.0, gt=0)
    # A job queued this long ago whose delivery is still waiting was lost (its last try died
    # with its worker: JetStream delivers it no more): queued again. Beyond the back-off's sum.
    lost_after_seconds: float = Field(7200.0, gt=0)
    # Dead letters are kept this long.
    dead_letter_days: int = Field(30, ge=1)


class VerificationSettings(BaseModel):
    """One-time codes for SMS and WhatsApp numbers."""

    code_digits: int = Field(6, ge=4, le=10)
    code_ttl_minutes: int = Field(10, ge=1, le=1440)
    max_attempts: int = Field(5, ge=1, le=20)
    template: str = "contact.verify_code"


class NotificationSettings(BaseModel):
    default_page_size: int = Field(50, ge=1)
    max_page_size: int = Field(200, ge=1, le=1000)
    default_locale: str = "en"
    default_time_zone: str = "UTC"
    # Messages a channel carries per user and day, unless the user sets a lower cap.
    daily_caps: dict[str, int] = {"email": 50, "sms": 10, "whatsapp": 20, "webhook": 500}
    # Channels quiet hours hold back (in-app and webhooks disturb nobody).
    quiet_channels: list[str] = ["email", "sms", "whatsapp"]
    # Severities the digest collects (when the user asks for one), and its template.
    digest_severities: list[str] = ["info"]
    digest_template: str = "notification.digest"
    default_digest_time: str = "08:00"
    max_contact_points: int = Field(20, ge=1, le=200)
    max_digest_items: int = Field(50, ge=1, le=500)
    delivery: DeliverySettings = DeliverySettings()
    # One circuit breaker per channel's provider (kit/grpc/breakers.py): retryable
    # failures in a row that open it, and how long jobs then wait before trying again.
    breaker: BreakerSettings = BreakerSettings(failure_threshold=5, open_seconds=30.0)
    providers: ProvidersSettings = ProvidersSettings()
    verification: VerificationSettings = VerificationSettings()
    sources: dict[str, SourceSettings] = {}


class NotificationMeshSettings(MeshSettings):
    notification: NotificationSettings = NotificationSettings()
    # Encrypts webhook signing secrets at rest (EM_NOTIFICATION_SECRETS_KEY, from a Secret:
    # every replica needs the same one). Unset: a key generated on first run into
    # <data_dir>/keys/notification-secrets.key.
    notification_secrets_key: SecretStr | None = Field(None, min_length=MIN_KEY_LENGTH)

    @property
    def notification_secrets_key_file(self) -> Path:
        return self.keys_dir / "notification-secrets.key"
