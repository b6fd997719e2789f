"""Profiles and their rules: which values a preference may take, which field
paths an update may name, and how an update applies. Plain Python: no gRPC, no SQL."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from functools import lru_cache
from typing import Any
from zoneinfo import available_timezones

from services.kit.domain.errors import FieldViolation, InvalidArgument
from services.kit.domain.money import currencies
from services.user.settings import ProfileDefaults

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
DISPLAY_NAME_MAX_LENGTH = 100
OUTPUT_ONLY_PATHS = frozenset({"user_id", "email", "create_time", "update_time"})
NOTIFICATION_PATHS = (
    "notifications.channels",
    "notifications.quiet_hours_start",
    "notifications.quiet_hours_end",
)
# Leaf paths an update can change, in the order of the contract.
UPDATABLE_PATHS = (
    "display_name",
    "default_currency",
    "time_zone",
    "locale",
    "first_day_of_week",
    *NOTIFICATION_PATHS,
    "sms_auto_import",
    "sms_allowed_senders",
)
# Mask paths that stand for several leaf paths.
GROUP_PATHS = {"notifications": NOTIFICATION_PATHS}
# Names in tzdata that are not a place: the machine's own zone and placeholders.
NON_ZONES = frozenset({"localtime", "Factory", "posixrules"})

# language[-Script][-REGION][-variant]... (BCP 47 without extensions or private use).
_LOCALE = re.compile(
    r"^(?P<language>[a-z]{2,3})(?:-(?P<script>[a-z]{4}))?(?:-(?P<region>[a-z]{2}|\d{3}))?"
    r"(?P<variants>(?:-(?:[a-z0-9]{5,8}|\d[a-z0-9]{3}))*)$",
    re.IGNORECASE | re.ASCII,
)
# ASCII only: without it \d takes "٢٢" and IGNORECASE lets [a-z] take "K" (the Kelvin sign).
_CLOCK_TIME = re.compile(r"^(?:[01]\d|2[0-3]):[0-5]\d$", re.ASCII)
_CAMEL_HUMP = re.compile(r"(?<=[a-z0-9])([A-Z])")
# A DLT sender entity ("HDFCBK", "HDFCBK" of "VM-HDFCBK-S") or an issuer id ("hdfc").
_SMS_SENDER = re.compile(r"^[A-Z0-9_]{2,11}$", re.ASCII)
MAX_SMS_SENDERS = 50


@dataclass(frozen=True)
class Notifications:
    channels: tuple[str, ...] = ()
    # Local "HH:MM" in the profile's time zone; both empty means no quiet hours.
    quiet_hours_start: str = ""
    quiet_hours_end: str = ""


@dataclass(frozen=True)
class Profile:
    user_id: str
    email: str
    display_name: str
    default_currency: str
    time_zone: str
    locale: str
    first_day_of_week: str
    notifications: Notifications
    sms_auto_import: bool
    create_time: datetime
    update_time: datetime
    # Upper-case DLT entities or issuer ids whose SMS may become expenses.
    sms_allowed_senders: tuple[str, ...] = ()
    # 1 at creation, one more with each update: user.profile_updated carries it so that
    # consumers can tell a redelivered older event from the latest.
    version: int = 1


def canonical_display_name(value: str) -> str:
    name = value.strip()
    if not name:
        raise ValueError("must not be empty")
    if len(name) > DISPLAY_NAME_MAX_LENGTH:
        raise ValueError(f"must be at most {DISPLAY_NAME_MAX_LENGTH} characters")
    if any(unicodedata.category(char) in ("Cc", "Cf") for char in name):
        raise ValueError("must not contain control characters")
    return name


def canonical_sms_sender(value: str) -> str:
    sender = value.strip().upper()
    if not _SMS_SENDER.match(sender):
        raise ValueError("must be a sender id such as HDFCBK (2-11 letters, digits or _)")
    return sender


def canonical_currency(value: str) -> str:
    code = value.strip().upper()
    if code not in currencies():
        raise ValueError(f"unknown currency {value!r}; expected an ISO 4217 code such as INR")
    return code


@lru_cache(maxsize=1)
def _time_zones() -> dict[str, str]:
    """IANA names by their lower-case form, so "asia/kolkata" finds "Asia/Kolkata"."""
    return {name.lower(): name for name in available_timezones() - NON_ZONES}


def canonical_time_zone(value: str) -> str:
    name = _time_zones().get(value.strip().lower())
    if name is None:
        raise ValueError(f"unknown time zone {value!r}; expected an IANA name such as Asia/Kolkata")
    return name


def canonical_locale(value: str) -> str:
    match = _LOCALE.match(value.strip())
    if match is None:
        raise ValueError(f"{value!r} is not a BCP 47 language tag such as en or en-IN")
    tag = match["language"].lower()
    if match["script"]:
        tag += "-" + match["script"].title()
    if match["region"]:
        tag += "-" + match["region"].upper()
    return tag + match["variants"].lower()


def canonical_weekday(value: str) -> str:
    day = value.strip().lower()
    if day not in WEEKDAYS:
        raise ValueError(f"must be one of {', '.join(WEEKDAYS)}")
    return day


def canonical_clock_time(value: str) -> str:
    """A 24-hour "HH:MM" time; empty means not set."""
    time = value.strip()
    if time and not _CLOCK_TIME.match(time):
        raise ValueError("must be a 24-hour time HH:MM such as 22:30")
    return time


@dataclass(frozen=True)
class ProfileRules:
    """The rules that depend on configuration: allowed channels and defaults."""

    channels: tuple[str, ...]
    defaults: ProfileDefaults

    def __post_init__(self) -> None:
        # A bad default would fail every signup; refuse to start instead.
        try:
            self._canonical(self._default_values(), prefix="user.defaults.")
        except InvalidArgument as error:
            details = "; ".join(f"{v.field}: {v.description}" for v in error.violations)
            raise ValueError(f"invalid profile defaults in config: {details}") from None

    def _default_values(self) -> dict[str, Any]:
        return {
            "default_currency": self.defaults.default_currency,
            "time_zone": self.defaults.time_zone,
            "locale": self.defaults.locale,
            "first_day_of_week": self.defaults.first_day_of_week,
            "notifications.channels": self.defaults.notification_channels,
        }

    def new_profile(self, user_id: str, email: str, display_name: str, now: datetime) -> Profile:
        """The profile of a newly registered user: their name, the configured defaults."""
        values = self._canonical(self._default_values(), prefix="user.defaults.")
        return Profile(
            user_id=user_id,
            email=email,
            display_name=display_name.strip()[:DISPLAY_NAME_MAX_LENGTH],
            default_currency=values["default_currency"],
            time_zone=values["time_zone"],
            locale=values["locale"],
            first_day_of_week=values["first_day_of_week"],
            notifications=Notifications(channels=values["notifications.channels"]),
            sms_auto_import=self.defaults.sms_auto_import,
            create_time=now,
            update_time=now,
        )

    def apply(self, profile: Profile, changes: Mapping[str, Any], now: datetime) -> Profile:
        """The profile with `changes` ({leaf path: new value}) applied; every bad
        value is reported at once, as a violation named "profile.<path>"."""
        values = self._canonical(changes, prefix="profile.")
        top_level = {path: value for path, value in values.items() if "." not in path}
        notification_changes = {
            path.removeprefix("notifications."): value
            for path, value in values.items()
            if path.startswith("notifications.")
        }
        if len(values.get("sms_allowed_senders", ())) > MAX_SMS_SENDERS:
            raise InvalidArgument.of("profile.sms_allowed_senders", f"at most {MAX_SMS_SENDERS} senders")
        updated = replace(
            profile,
            **top_level,
            notifications=replace(profile.notifications, **notification_changes),
            update_time=now,
            version=profile.version + 1,
        )
        check_quiet_hours(updated.notifications)
        return updated

    def _canonical(self, values: Mapping[str, Any], prefix: str) -> dict[str, Any]:
        """Each value in its canonical form, or InvalidArgument naming every bad one."""
        rules = self._rules()
        violations: list[FieldViolation] = []
        result: dict[str, Any] = {}
        for path, value in values.items():
            rule = rules[path]
            if isinstance(value, list | tuple):
                # Checked item by item so a violation names the bad item; repeats dropped.
                items = [
                    _checked(rule, item, f"{prefix}{path}[{i}]", violations) for i, item in enumerate(value)
                ]
                result[path] = tuple(dict.fromkeys(items))
            else:
                result[path] = _checked(rule, value, prefix + path, violations)
        if violations:
            raise InvalidArgument(violations)
        return result

    def _rules(self) -> dict[str, Callable[[Any], Any]]:
        return {
            "display_name": canonical_display_name,
            "default_currency": canonical_currency,
            "time_zone": canonical_time_zone,
            "locale": canonical_locale,
            "first_day_of_week": canonical_weekday,
            "notifications.channels": self._canonical_channel,
            "notifications.quiet_hours_start": canonical_clock_time,
            "notifications.quiet_hours_end": canonical_clock_time,
            "sms_auto_import": bool,
            "sms_allowed_senders": canonical_sms_sender,
        }

    def _canonical_channel(self, value: str) -> str:
        channel = value.strip().lower()
        if channel not in self.channels:
            raise ValueError(f"unknown channel {value!r}; expected one of {', '.join(self.channels)}")
        return channel


def _checked(rule: Callable[[Any], Any], value: Any, field: str, violations: list[FieldViolation]) -> Any:
    try:
        return rule(value)
    except ValueError as error:
        violations.append(FieldViolation(field, str(error)))
        return None


def check_quiet_hours(notifications: Notifications) -> None:
    start, end = notifications.quiet_hours_start, notifications.quiet_hours_end
    if bool(start) != bool(end):
        missing = "quiet_hours_end" if start else "quiet_hours_start"
        raise InvalidArgument.of(
            f"profile.notifications.{missing}", "quiet hours need both a start and an end, or neither"
        )
    if start and start == end:
        raise InvalidArgument.of(
            "profile.notifications.quiet_hours_end", "must differ from quiet_hours_start"
        )


def update_paths(mask: str, populated: Iterable[str]) -> tuple[str, ...]:
    """The leaf paths an update changes: those the mask names (the JSON form of a
    FieldMask, snake_case or lowerCamelCase), or with an empty mask every
    populated field of the request's profile (AIP-134)."""
    named = [_snake_case(path.strip()) for path in mask.split(",") if path.strip()]
    if not named:
        paths = tuple(dict.fromkeys(populated))
        if not paths:
            raise InvalidArgument.of(
                "update_mask", "names no field and the profile sets none; nothing to update"
            )
        return paths
    read_only = [path for path in named if path in OUTPUT_ONLY_PATHS]
    if read_only:
        raise InvalidArgument.of(
            "update_mask", f"output-only field(s) cannot be changed: {', '.join(read_only)}"
        )
    unknown = [path for path in named if path not in UPDATABLE_PATHS and path not in GROUP_PATHS]
    if unknown:
        raise InvalidArgument.of("update_mask", f"unknown field(s): {', '.join(unknown)}")
    leaves = (leaf for path in named for leaf in GROUP_PATHS.get(path, (path,)))
    return tuple(dict.fromkeys(leaves))


def _snake_case(path: str) -> str:
    return _CAMEL_HUMP.sub(lambda hump: "_" + hump.group(1).lower(), path)
