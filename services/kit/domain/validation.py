"""Request validation with pydantic: a failed model becomes InvalidArgument
with one field violation per problem, named by its path in the request."""

from __future__ import annotations

import re
import unicodedata
from datetime import date
from decimal import Decimal
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from services.kit.domain.errors import FieldViolation, InvalidArgument
from services.kit.domain.money import MoneyError, currencies, parse_amount

ModelT = TypeVar("ModelT", bound=BaseModel)
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$", re.ASCII)
# Ids are UUIDs; anything longer is not one of ours.
MAX_ID_LENGTH = 36


def _field_path(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts[-1] = f"{parts[-1]}[{item}]" if parts else f"[{item}]"
        else:
            parts.append(item)
    return ".".join(parts)


# pydantic's own checks, in the words every other message of the mesh uses (its
# wording, e.g. "Input should be 'week', 'month' or 'year'", is not our API's).
_OWN_WORDS: dict[str, str] = {
    "missing": "required",
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "list_type": "must be a list",
    "dict_type": "must be an object",
    "string_too_long": "must be at most {max_length} characters",
    "string_too_short": "must be at least {min_length} characters",
    "too_long": "must have at most {max_length} items",
    "too_short": "must have at least {min_length} items",
    "greater_than": "must be greater than {gt}",
    "greater_than_equal": "must be at least {ge}",
    "less_than": "must be less than {lt}",
    "less_than_equal": "must be at most {le}",
    "extra_forbidden": "is not a field of this request",
}


def _own_words(item: Any) -> str:
    kind, context = item["type"], item.get("ctx") or {}
    if kind in ("literal_error", "enum"):
        # ctx["expected"] is "'week', 'month' or 'year'".
        choices = re.findall(r"'([^']*)'", str(context.get("expected", "")))
        return f"must be one of {', '.join(choices)}" if choices else "is not an allowed value"
    if kind in _OWN_WORDS:
        return _OWN_WORDS[kind].format(**context)
    if kind == "value_error":
        # Our own validators' ValueError messages (see the field checks below).
        return str(item["msg"]).removeprefix("Value error, ")
    return "is not valid"


def violations_of(error: ValidationError, prefix: str = "") -> list[FieldViolation]:
    result = []
    for item in error.errors(include_url=False):
        path = _field_path(tuple(item["loc"])) or "request"
        result.append(FieldViolation(f"{prefix}{path}", _own_words(item)))
    return result


def validated(model: type[ModelT], data: dict[str, Any], prefix: str = "", context: Any = None) -> ModelT:
    """`context` reaches the model's validators (e.g. a service's limits)."""
    try:
        return model.model_validate(data, context=context)
    except ValidationError as error:
        raise InvalidArgument(violations_of(error, prefix)) from None


def parse_update_mask(mask: str, allowed: set[str], field: str = "update_mask") -> list[str]:
    """The JSON form of a FieldMask ("a,b.c") checked against the updatable paths."""
    paths = [path.strip() for path in mask.split(",") if path.strip()]
    unknown = [path for path in paths if path not in allowed]
    if unknown:
        raise InvalidArgument.of(field, f"unknown or read-only field(s): {', '.join(unknown)}")
    return paths


# ---------------------------------------------------------------- field checks
# For pydantic validators: each raises ValueError with the message the client sees.


def single_line(value: str, max_length: int) -> str:
    """Trimmed text without control or format characters."""
    text = value.strip()
    if len(text) > max_length:
        raise ValueError(f"must be at most {max_length} characters")
    if any(unicodedata.category(char) in ("Cc", "Cf") for char in text):
        raise ValueError("must not contain control characters")
    return text


def multi_line(value: str, max_length: int) -> str:
    """Trimmed text; line breaks and tabs allowed, other control characters not."""
    text = value.strip()
    if len(text) > max_length:
        raise ValueError(f"must be at most {max_length} characters")
    if any(unicodedata.category(char) == "Cc" and char not in "\n\t" for char in text):
        raise ValueError("must not contain control characters")
    return text


def canonical_currency(value: str) -> str:
    code = value.strip().upper()
    if not code:
        raise ValueError("required")
    if code not in currencies():
        raise ValueError(f"unknown currency {value!r}; expected an ISO 4217 code such as INR")
    return code


def money(value: str, currency: str, max_amount: Decimal) -> int:
    """A positive amount no larger than max_amount, exact in the currency's minor units."""
    if not value.strip():
        raise ValueError("required")
    try:
        minor = parse_amount(value, currency)
    except MoneyError as error:
        raise ValueError(str(error)) from None
    if minor == 0:
        raise ValueError("must be greater than zero")
    if minor > max_amount.scaleb(currencies().exponent(currency)):
        raise ValueError(f"must be at most {max_amount:f}")
    return minor


def iso_date(value: str) -> date:
    if not _ISO_DATE.match(value.strip()):
        raise ValueError("must be a date such as 2026-11-21")
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise ValueError("must be a date such as 2026-11-21") from None


def optional_id(value: str) -> str | None:
    """An id reference; absent when empty. Existence is checked against storage."""
    text = value.strip()
    if len(text) > MAX_ID_LENGTH:
        raise ValueError("not a valid id")
    return text or None
