"""Templates as plain Python: what a version declares (channel, variables, bodies,
WhatsApp mapping), the variables a render receives checked against that declaration,
the locale fallback, and the SMS encoding (GSM-7 or UCS-2) with its segment count."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from babel import Locale, UnknownLocaleError
from babel.numbers import get_currency_name

from services.kit.domain.errors import FieldViolation, InvalidArgument

CHANNELS = ("in_app", "email", "sms", "whatsapp", "webhook")
VARIABLE_TYPES = ("string", "number", "money", "date", "list")
STATES = ("draft", "published")
# Channels whose messages have a subject (in-app: its title).
SUBJECT_CHANNELS = ("in_app", "email")
_KEY = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
_VARIABLE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_LOCALE = re.compile(r"^([a-zA-Z]{2,3})(?:[-_]([a-zA-Z]{2}|[0-9]{3}))?$")
MAX_KEY_LENGTH = 100
MAX_STRING_VARIABLE = 2000
MAX_LIST_ITEMS = 100


@dataclass(frozen=True)
class VariableSpec:
    name: str
    type: str
    required: bool = True


@dataclass(frozen=True)
class WhatsAppSpec:
    """The provider's approved template (name, language) and its parameters in order,
    each a Jinja expression template over our variables."""

    name: str
    language: str
    parameters: tuple[str, ...]


@dataclass(frozen=True)
class TemplateId:
    key: str
    channel: str
    locale: str

    def label(self, version: int) -> str:
        return f"{self.key}@{version}"


@dataclass(frozen=True)
class VersionDraft:
    """What an operator (or a default file) gives for a new version."""

    template: TemplateId
    subject: str
    body: str
    variables: tuple[VariableSpec, ...]
    sample: dict[str, Any] = field(default_factory=dict)
    whatsapp: WhatsAppSpec | None = None


@dataclass(frozen=True)
class TemplateVersion:
    draft: VersionDraft
    version: int
    state: str
    created_at: datetime
    published_at: datetime | None

    @property
    def label(self) -> str:
        return self.draft.template.label(self.version)


@dataclass(frozen=True)
class Money:
    """A money variable: exact amount, ISO 4217 currency (never a float)."""

    amount: Decimal
    currency: str

    def __str__(self) -> str:
        return f"{self.amount} {self.currency}"


# ---------------------------------------------------------------- identifiers


def template_key(value: str) -> str:
    text = value.strip()
    if not text:
        raise ValueError("required")
    if len(text) > MAX_KEY_LENGTH or not _KEY.match(text):
        raise ValueError("dotted lower-case words, e.g. budget.threshold")
    return text


def channel_name(value: str) -> str:
    text = value.strip()
    if text not in CHANNELS:
        raise ValueError(f"must be one of {', '.join(CHANNELS)}")
    return text


def canonical_locale(value: str) -> str:
    """BCP 47 as we store it: "hi-IN", "en", "hi" ("hi_in" and "HI-in" alike)."""
    match = _LOCALE.match(value.strip())
    if match is None:
        raise ValueError("a language with an optional region, e.g. en, hi-IN")
    language, region = match.group(1).lower(), match.group(2)
    return f"{language}-{region.upper()}" if region else language


def locale_chain(locale: str, default_locale: str) -> list[str]:
    """hi-IN -> [hi-IN, hi, en]: the locales a render tries, in order."""
    chain = [locale]
    language = language_of(locale)
    for candidate in (language, default_locale):
        if candidate not in chain:
            chain.append(candidate)
    return chain


def language_of(locale: str) -> str:
    return locale.partition("-")[0]


def babel_locale(*candidates: str) -> Locale:
    """The first candidate Babel knows (hi-IN -> hi_IN), else English."""
    for candidate in candidates:
        try:
            return Locale.parse(candidate.replace("-", "_"))
        except (UnknownLocaleError, ValueError):
            continue
    return Locale.parse("en")


# ---------------------------------------------------------------- variables


def check_declaration(variables: Sequence[VariableSpec], most: int) -> None:
    problems = []
    if len(variables) > most:
        problems.append(FieldViolation("variables", f"at most {most}"))
    seen: set[str] = set()
    for index, spec in enumerate(variables):
        where = f"variables[{index}]"
        if not _VARIABLE.match(spec.name):
            problems.append(FieldViolation(f"{where}.name", "lower-case letters, digits and '_'"))
        if spec.name in seen:
            problems.append(FieldViolation(f"{where}.name", f"{spec.name} declared twice"))
        seen.add(spec.name)
        if spec.type not in VARIABLE_TYPES:
            problems.append(FieldViolation(f"{where}.type", f"must be one of {', '.join(VARIABLE_TYPES)}"))
    if problems:
        raise InvalidArgument(problems)


def bind_variables(
    declared: Sequence[VariableSpec], given: Mapping[str, Any], label: str, prefix: str = "variables"
) -> dict[str, Any]:
    """The given values checked against the declaration and typed (Decimal, Money, date):
    a missing required one or an undeclared one is refused, each named."""
    specs = {spec.name: spec for spec in declared}
    problems = [
        FieldViolation(f"{prefix}.{name}", f"required by {label}")
        for name, spec in specs.items()
        if spec.required and name not in given
    ]
    problems += [
        FieldViolation(f"{prefix}.{name}", f"not declared by {label}") for name in given if name not in specs
    ]
    bound: dict[str, Any] = {}
    for name, value in given.items():
        if name not in specs:
            continue
        try:
            bound[name] = _typed(specs[name].type, value)
        except ValueError as error:
            problems.append(FieldViolation(f"{prefix}.{name}", str(error)))
    if problems:
        names = ", ".join(problem.field.removeprefix(f"{prefix}.") for problem in problems)
        raise InvalidArgument(problems, f"variables refused by {label}: {names}")
    return bound


def _typed(kind: str, value: Any) -> Any:
    if kind == "string":
        if not isinstance(value, str):
            raise ValueError("must be a string")
        if len(value) > MAX_STRING_VARIABLE:
            raise ValueError(f"must be at most {MAX_STRING_VARIABLE} characters")
        return value
    if kind == "number":
        return _decimal(value, "must be a number or a decimal string")
    if kind == "money":
        return _money(value)
    if kind == "date":
        return _date(value)
    if not isinstance(value, list):
        raise ValueError("must be a list")
    if len(value) > MAX_LIST_ITEMS:
        raise ValueError(f"at most {MAX_LIST_ITEMS} items")
    return [_item(item) for item in value]


def _item(value: Any) -> Any:
    """A list item: money-shaped objects become Money, the rest stays as given."""
    if isinstance(value, dict) and set(value) == {"amount", "currency"}:
        return _money(value)
    if isinstance(value, dict):
        return {name: _item(item) for name, item in value.items()}
    return value


def _decimal(value: Any, message: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(message)
    try:
        # A Struct number is a double: its shortest repr, not its binary expansion.
        number = Decimal(repr(value) if isinstance(value, float) else value)
    except InvalidOperation:
        raise ValueError(message) from None
    if not number.is_finite() or abs(number) >= Decimal("1e18"):
        raise ValueError(message)
    return number


def _money(value: Any) -> Money:
    message = 'must be {"amount": "<decimal string>", "currency": "<ISO 4217>"}'
    if not isinstance(value, dict) or set(value) != {"amount", "currency"}:
        raise ValueError(message)
    amount, currency = value["amount"], value["currency"]
    if not isinstance(amount, str) or not isinstance(currency, str):  # never a float
        raise ValueError(message)
    code = currency.strip().upper()
    if len(code) != 3 or get_currency_name(code, locale="en") == code:
        raise ValueError(f"unknown currency {currency!r}")
    return Money(_decimal(amount.strip(), message), code)


def _date(value: Any) -> date | datetime:
    if not isinstance(value, str):
        raise ValueError("must be an ISO 8601 date or an RFC 3339 time")
    text = value.strip()
    try:
        if len(text) == 10:
            return date.fromisoformat(text)
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("must be an ISO 8601 date or an RFC 3339 time") from None


# ---------------------------------------------------------------- SMS

# GSM 03.38: the basic set (one septet) and the extension table (two: escape + char).
GSM7_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = set("^{}\\[~]|€\f")


@dataclass(frozen=True)
class SmsText:
    body: str
    gsm7: bool
    segments: int


def gsm7_septets(text: str) -> int | None:
    """Septets of text in GSM-7, or None when some character has no GSM-7 form."""
    count = 0
    for char in text:
        if char in GSM7_BASIC:
            count += 1
        elif char in GSM7_EXTENSION:
            count += 2
        else:
            return None
    return count


def sms_text(body: str, replacements: Mapping[str, str], safe_mode: bool) -> SmsText:
    """The body as sent: in safe mode, replaced into GSM-7 when that makes it GSM-7
    (Hindi stays UCS-2 with its ₹); segments: GSM-7 160/153, UCS-2 70/67."""
    septets = gsm7_septets(body)
    if septets is None and safe_mode:
        replaced = body
        for char, substitute in replacements.items():
            replaced = replaced.replace(char, substitute)
        if (replaced_septets := gsm7_septets(replaced)) is not None:
            body, septets = replaced, replaced_septets
    if septets is not None:
        return SmsText(body, True, 1 if septets <= 160 else math.ceil(septets / 153))
    # UCS-2 counts UTF-16 code units: a character beyond the BMP (an emoji) takes two.
    units = len(body.encode("utf-16-le")) // 2
    return SmsText(body, False, 1 if units <= 70 else math.ceil(units / 67))
