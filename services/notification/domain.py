"""The notification rules in plain Python: which messages an event makes, where
a delivery's status may move, quiet hours, daily caps and digests in the user's
time zone, and contact addresses."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from services.kit.domain.errors import InvalidArgument
from services.notification.settings import (
    CHANNELS,
    ComputedField,
    ListField,
    MoneyField,
    Scalar,
    SourceSettings,
    TemplateMapping,
)

QUEUED, SENT, DELIVERED, FAILED, UNDELIVERED = "queued", "sent", "delivered", "failed", "undelivered"
# A status only moves to a higher rank: a late "sent" never overwrites "delivered",
# and the three final ones never change.
STATUS_RANK = {QUEUED: 0, SENT: 1, DELIVERED: 2, FAILED: 2, UNDELIVERED: 2}
FINAL = frozenset({DELIVERED, FAILED, UNDELIVERED})
# Providers' words for where a message is, in ours.
PROVIDER_STATUSES = {
    "accepted": QUEUED,
    "queued": QUEUED,
    "scheduled": QUEUED,
    "sending": SENT,
    "sent": SENT,
    "delivered": DELIVERED,
    "read": DELIVERED,
    "receiving": DELIVERED,
    "received": DELIVERED,
    "failed": FAILED,
    "canceled": FAILED,
    "undelivered": UNDELIVERED,
}
CONTACT_CHANNELS = ("email", "sms", "whatsapp", "webhook")
# Numbers need a one-time code before anything else is sent to them.
CODE_CHANNELS = ("sms", "whatsapp")
E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
EMAIL = re.compile(r"^[^@\s]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
MAX_URL_LENGTH = 2000


def can_move(current: str, new: str) -> bool:
    """True when a delivery in `current` may take status `new`."""
    return current not in FINAL and STATUS_RANK[new] > STATUS_RANK[current]


def our_status(provider_status: str) -> str | None:
    """A provider's status in our words; None for one we do not track."""
    return PROVIDER_STATUSES.get(provider_status.strip().lower())


# ---------------------------------------------------------------- messages of an event


@dataclass(frozen=True)
class MessagePlan:
    """What an event says: the template to render, its variables, how urgent it is."""

    template: str
    variables: dict[str, Any]
    severity: str

    @property
    def critical(self) -> bool:
        return self.severity == "critical"


def field_value(payload: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path of a payload (as a dict); None when absent."""
    value: Any = payload
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def plan_of(source: SourceSettings, payload: Mapping[str, Any], now: datetime) -> MessagePlan | None:
    """The message an event makes by its source's mapping (computed variables as of
    `now`, the intake); None when it makes none."""
    mapping = source.template
    if mapping is None:
        mapping = source.templates.get(str(field_value(payload, source.template_field) or ""))
        if mapping is None:
            return None
    severity = str(field_value(payload, source.severity_field) or "") if source.severity_field else ""
    return MessagePlan(mapping.key, variables_of(mapping, payload, now), severity or source.severity)


def variables_of(mapping: TemplateMapping, payload: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """The template's variables from the payload; absent fields, and money without an
    amount, are left out (the template says whether it needs them). An empty text stays:
    a producer that knew no name (a category billing has not heard of yet) still
    makes a message."""
    variables: dict[str, Any] = {}
    for name, path in mapping.variables.items():
        if isinstance(path, ListField):
            items = field_value(payload, path.list)
            items = items if isinstance(items, list) else []
            variables[name] = [_values(path.each, {**payload, **_fields(item)}, now) for item in items]
        else:
            variables |= _values({name: path}, payload, now)
    return variables


def _fields(item: Any) -> Mapping[str, Any]:
    return item if isinstance(item, Mapping) else {}


def _values(mapping: Mapping[str, Scalar], payload: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, path in mapping.items():
        if isinstance(path, MoneyField):
            amount, currency = field_value(payload, path.amount), field_value(payload, path.currency)
            if amount not in (None, "") and currency:
                values[name] = {"amount": str(amount), "currency": str(currency)}
            continue
        value = (
            computed_value(path, payload, now)
            if isinstance(path, ComputedField)
            else field_value(payload, path)
        )
        if value is not None:
            values[name] = value
    return values


def message_payloads(source: SourceSettings, payload: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The payloads an event's messages are made of: itself, or one per item of its
    `each` list (the item at `item`)."""
    if not source.each:
        return [dict(payload)]
    items = field_value(payload, source.each)
    return [{**payload, "item": item} for item in items] if isinstance(items, list) else []


def computed_value(computed: ComputedField, payload: Mapping[str, Any], now: datetime) -> Any:
    """A computed variable; None when its field is absent or not of the expected form
    (the template then refuses the message if it needs the variable)."""
    if computed.month_start:
        month = str(field_value(payload, computed.month_start) or "")
        try:
            return date.fromisoformat(f"{month}-01").isoformat()
        except ValueError:
            return None
    path, unit = (computed.minutes_until, 60) if computed.minutes_until else (computed.hours_until, 3600)
    try:
        until = datetime.fromisoformat(str(field_value(payload, path) or "").replace("Z", "+00:00"))
    except ValueError:
        return None
    if until.tzinfo is None:
        return None
    # Rounded: a 30-minute token read a moment after its issue is still "30 minutes".
    return max(0, round((until - now).total_seconds() / unit))


# ---------------------------------------------------------------- preferences


@dataclass(frozen=True)
class Preferences:
    """A user's choices; a user who never chose has the defaults."""

    rules: dict[str, tuple[str, ...]] = field(default_factory=dict)
    quiet_start: time | None = None
    quiet_end: time | None = None
    time_zone: str = "UTC"
    digest: bool = False
    digest_time: time = time(8, 0)
    daily_caps: dict[str, int] = field(default_factory=dict)
    locale: str = ""
    # From the signup: templates greet by it when the event names nobody.
    display_name: str = ""

    def channels_for(
        self, source: str, defaults: Sequence[str], mandatory: Sequence[str] = ()
    ) -> tuple[str, ...]:
        """The channels an event of `source` goes to, in_app first: the user's choice (else
        the defaults), in_app whenever the defaults hold it, and the mandatory ones."""
        chosen = {*self.rules.get(source, defaults), *mandatory}
        if "in_app" in defaults:
            chosen.add("in_app")
        return tuple(channel for channel in CHANNELS if channel in chosen)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    def cap(self, channel: str, defaults: Mapping[str, int]) -> int | None:
        """The channel's daily cap: the user's when lower than the configured one."""
        default = defaults.get(channel)
        own = self.daily_caps.get(channel) or None
        caps = [cap for cap in (default, own) if cap]
        return min(caps) if caps else None


def parse_clock(value: str, field_name: str) -> time:
    """ "HH:MM" (24-hour) as a time."""
    match = re.fullmatch(r"([01][0-9]|2[0-3]):([0-5][0-9])", value.strip())
    if match is None:
        raise InvalidArgument.of(field_name, "a time of day as HH:MM, e.g. 22:00")
    return time(int(match[1]), int(match[2]))


def time_zone(value: str, field_name: str = "time_zone") -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidArgument.of(field_name, "an IANA time zone, e.g. Asia/Kolkata") from None
    return value


def quiet_until(preferences: Preferences, now: datetime) -> datetime | None:
    """When the quiet hours holding `now` end (UTC); None outside them (or with none)."""
    start, end = preferences.quiet_start, preferences.quiet_end
    if start is None or end is None or start == end:
        return None
    local = now.astimezone(preferences.zone)
    clock = local.time().replace(tzinfo=None)
    if start < end:
        inside = start <= clock < end
        end_day = local.date()
    else:  # across midnight, e.g. 22:00 to 07:00
        inside = clock >= start or clock < end
        end_day = local.date() + timedelta(days=1) if clock >= start else local.date()
    if not inside:
        return None
    return _at(end_day, end, preferences.zone)


def day_of(preferences: Preferences, now: datetime) -> tuple[datetime, datetime]:
    """The user's current day as a UTC [start, end)."""
    today = now.astimezone(preferences.zone).date()
    return _at(today, time(0), preferences.zone), _at(today + timedelta(days=1), time(0), preferences.zone)


def next_digest_time(preferences: Preferences, now: datetime) -> datetime:
    """The first digest time after `now`, in UTC."""
    local = now.astimezone(preferences.zone)
    moment = _at(local.date(), preferences.digest_time, preferences.zone)
    return (
        moment
        if moment > now
        else _at(local.date() + timedelta(days=1), preferences.digest_time, preferences.zone)
    )


def _at(day: date, clock: time, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, clock, tzinfo=zone).astimezone(UTC)


# ---------------------------------------------------------------- contact points


def contact_address(channel: str, address: str) -> str:
    """The address in its canonical form, or InvalidArgument naming `address`."""
    address = address.strip()
    if channel == "email":
        if not EMAIL.match(address) or len(address) > 254:
            raise InvalidArgument.of("address", "an email address")
        local, domain = address.rsplit("@", 1)
        return f"{local}@{domain.lower()}"
    if channel in CODE_CHANNELS:
        number = re.sub(r"[\s()-]", "", address)
        if not E164.match(number):
            raise InvalidArgument.of("address", "a phone number in E.164 form, e.g. +919876543210")
        return number
    if channel == "webhook":
        # The scheme and host are the webhook adapter's checks (check_webhook_url).
        if not address or len(address) > MAX_URL_LENGTH or any(c.isspace() for c in address):
            raise InvalidArgument.of("address", "an https:// URL")
        return address
    raise InvalidArgument.of("channel", f"one of {', '.join(CONTACT_CHANNELS)}")


def new_code(digits: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(digits))


def code_digest(contact_point_id: str, code: str) -> str:
    """Stored instead of the code (keyed by the contact point, so equal codes differ)."""
    return hmac.new(contact_point_id.encode(), code.strip().encode(), hashlib.sha256).hexdigest()


def code_matches(contact_point_id: str, code: str, digest: str) -> bool:
    return hmac.compare_digest(code_digest(contact_point_id, code), digest)
