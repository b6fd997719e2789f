"""Request validation with pydantic, against the configured limits (passed as
validation context). A failed model becomes InvalidArgument with one field
violation per problem, named by its field in the request."""

from __future__ import annotations

import json
import re
from datetime import date, timedelta
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from services.kit.domain.errors import FieldViolation, InvalidArgument
from services.kit.domain.money import MoneyError
from services.kit.domain.timestamps import utcnow
from services.kit.domain.validation import (
    canonical_currency,
    iso_date,
    money,
    multi_line,
    optional_id,
    single_line,
    violations_of,
)
from services.ledger.domain import Ordering, decimal_value, parse_ordering
from services.ledger.settings import LedgerSettings

ModelT = TypeVar("ModelT", bound=BaseModel)
EARLIEST_DATE = date(1900, 1, 1)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")
_COLOR = re.compile(r"^#[0-9A-Fa-f]{6}$")
_ICON = re.compile(r"^[a-z0-9_-]{0,40}$")
# Tags travel "|"-separated in CSV imports.
TAG_SEPARATOR = "|"


def validate(model: type[ModelT], data: dict[str, Any], settings: LedgerSettings, prefix: str = "") -> ModelT:
    try:
        return model.model_validate(data, context=settings)
    except ValidationError as error:
        raise InvalidArgument(violations_of(error, prefix)) from None


def field_errors(
    model: type[BaseModel], data: dict[str, Any], settings: LedgerSettings
) -> list[FieldViolation]:
    """The violations of data, empty when valid (for per-row import results)."""
    try:
        model.model_validate(data, context=settings)
    except ValidationError as error:
        return violations_of(error)
    return []


def _limits(info: ValidationInfo) -> LedgerSettings:
    assert isinstance(info.context, LedgerSettings)
    return info.context


def canonical_tags(values: list[str], limits: LedgerSettings) -> tuple[str, ...]:
    """Trimmed, without case-insensitive repeats, within the tag limits."""
    tags: dict[str, str] = {}
    for value in values:
        tag = single_line(value, limits.max_tag_length)
        if not tag:
            raise ValueError("a tag must not be empty")
        if TAG_SEPARATOR in tag:
            raise ValueError(f"a tag must not contain {TAG_SEPARATOR!r}")
        tags.setdefault(tag.casefold(), tag)
    if len(tags) > limits.max_tags:
        raise ValueError(f"at most {limits.max_tags} tags")
    return tuple(tags.values())


def request_id(value: str) -> str:
    if not _REQUEST_ID.match(value):
        raise ValueError("must be 1-100 characters of letters, digits, '.', '_', ':' or '-' (a UUID is best)")
    return value


class ExpenseInput(BaseModel):
    """The fields of an expense a client sets; only those present are validated
    (a create passes all of them, an update those its mask names)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Before amount: the amount is parsed in this currency.
    currency: str | None = None
    amount: int | None = None
    spent_on: date | None = None
    category_id: str | None = None
    merchant: str | None = None
    note: str | None = None
    tags: tuple[str, ...] | None = None

    @field_validator("currency", mode="before")
    @classmethod
    def _currency(cls, value: str) -> str:
        return canonical_currency(value)

    @field_validator("amount", mode="before")
    @classmethod
    def _amount(cls, value: str, info: ValidationInfo) -> int:
        currency = info.data.get("currency")
        if currency is None:
            return 0  # the currency's own violation explains; no amount check without one
        return money(value, currency, _limits(info).max_amount)

    @field_validator("spent_on", mode="before")
    @classmethod
    def _spent_on(cls, value: str, info: ValidationInfo) -> date:
        day = iso_date(value)
        latest = utcnow().date() + timedelta(days=_limits(info).max_future_days)
        if not EARLIEST_DATE <= day <= latest:
            raise ValueError(f"must be between {EARLIEST_DATE} and {latest}")
        return day

    @field_validator("category_id", mode="before")
    @classmethod
    def _category_id(cls, value: str) -> str | None:
        return optional_id(value)

    @field_validator("merchant", mode="before")
    @classmethod
    def _merchant(cls, value: str, info: ValidationInfo) -> str:
        return single_line(value, _limits(info).max_merchant_length)

    @field_validator("note", mode="before")
    @classmethod
    def _note(cls, value: str, info: ValidationInfo) -> str:
        return multi_line(value, _limits(info).max_note_length)

    @field_validator("tags", mode="before")
    @classmethod
    def _tags(cls, value: list[str], info: ValidationInfo) -> tuple[str, ...]:
        return canonical_tags(list(value), _limits(info))

    def changes(self) -> dict[str, Any]:
        """{domain field: value} for the fields given; amount becomes amount_minor."""
        values = {name: getattr(self, name) for name in self.model_fields_set}
        if "amount" in values:
            values["amount_minor"] = values.pop("amount")
        return values


class ImportRowInput(ExpenseInput):
    request_id: str

    @field_validator("request_id", mode="before")
    @classmethod
    def _request_id(cls, value: str) -> str:
        return request_id(value)


class RequestIdInput(BaseModel):
    request_id: str

    @field_validator("request_id", mode="before")
    @classmethod
    def _request_id(cls, value: str) -> str:
        return request_id(value)


class ListInput(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)

    page_size: int
    page_token: str
    from_date: date | None = Field(None, alias="from")
    to_date: date | None = Field(None, alias="to")
    category_id: str | None
    q: str
    min_amount: int | None
    max_amount: int | None
    tag: str
    order_by: Ordering
    currency: str
    # Not part of page_query: counting or not changes no page.
    skip_total_size: bool = False

    def page_query(self) -> bytes:
        """The query a page token continues (AIP-158: the other fields must match), as the
        bytes its signature covers."""
        parts = [
            self.order_by.text,
            str(self.from_date),
            str(self.to_date),
            self.category_id or "",
            self.q,
            str(self.min_amount),
            str(self.max_amount),
            self.tag,
            self.currency,
        ]
        return json.dumps(parts).encode()

    @field_validator("page_size", mode="before")
    @classmethod
    def _page_size(cls, value: int, info: ValidationInfo) -> int:
        """AIP-158: 0 means the default; larger than the maximum is lowered to it."""
        if value < 0:
            raise ValueError("must not be negative")
        limits = _limits(info)
        return min(value or limits.default_page_size, limits.max_page_size)

    @field_validator("page_token", mode="before")
    @classmethod
    def _page_token(cls, value: str) -> str:
        if len(value) > 500:
            raise ValueError("invalid page token")
        return value

    @field_validator("from_date", mode="before")
    @classmethod
    def _from(cls, value: str) -> date | None:
        return iso_date(value) if value.strip() else None

    @field_validator("to_date", mode="before")
    @classmethod
    def _to(cls, value: str, info: ValidationInfo) -> date | None:
        day = iso_date(value) if value.strip() else None
        start = info.data.get("from_date")
        if day is not None and start is not None and day < start:
            raise ValueError("must not be before from")
        return day

    @field_validator("category_id", mode="before")
    @classmethod
    def _category_id(cls, value: str) -> str | None:
        return optional_id(value)

    @field_validator("q", mode="before")
    @classmethod
    def _q(cls, value: str, info: ValidationInfo) -> str:
        return single_line(value, _limits(info).max_query_length).lower()

    @field_validator("min_amount", mode="before")
    @classmethod
    def _min_amount(cls, value: str) -> int | None:
        return _bound(value)

    @field_validator("max_amount", mode="before")
    @classmethod
    def _max_amount(cls, value: str, info: ValidationInfo) -> int | None:
        bound = _bound(value)
        low = info.data.get("min_amount")
        if bound is not None and low is not None and bound < low:
            raise ValueError("must not be less than min_amount")
        return bound

    @field_validator("tag", mode="before")
    @classmethod
    def _tag(cls, value: str, info: ValidationInfo) -> str:
        return single_line(value, _limits(info).max_tag_length).casefold()

    @field_validator("currency", mode="before")
    @classmethod
    def _currency(cls, value: str, info: ValidationInfo) -> str:
        """Amount bounds compare amounts of one currency: 3500 JPY is not within 1000-5000 INR."""
        code = canonical_currency(value) if value.strip() else ""
        bounded = info.data.get("min_amount") is not None or info.data.get("max_amount") is not None
        if bounded and not code:
            raise ValueError("required with min_amount or max_amount (amounts compare within one currency)")
        return code

    @field_validator("order_by", mode="before")
    @classmethod
    def _order_by(cls, value: str) -> Ordering:
        try:
            return parse_ordering(value)
        except InvalidArgument as error:
            raise ValueError(error.violations[0].description) from None


def _bound(value: str) -> int | None:
    if not value.strip():
        return None
    try:
        return decimal_value(value)
    except MoneyError as error:
        raise ValueError(str(error)) from None


class CategoryInput(BaseModel):
    """Only the fields given are validated (all on create, the masked ones on update)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str | None = None
    parent_id: str | None = None
    color: str | None = None
    icon: str | None = None

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, value: str, info: ValidationInfo) -> str:
        name = " ".join(single_line(value, _limits(info).max_category_name_length).split())
        if not name:
            raise ValueError("required")
        return name

    @field_validator("parent_id", mode="before")
    @classmethod
    def _parent_id(cls, value: str) -> str | None:
        return optional_id(value)

    @field_validator("color", mode="before")
    @classmethod
    def _color(cls, value: str) -> str:
        color = value.strip()
        if color and not _COLOR.match(color):
            raise ValueError('must be "#RRGGBB", e.g. "#2E86AB"')
        return color.upper()

    @field_validator("icon", mode="before")
    @classmethod
    def _icon(cls, value: str) -> str:
        icon = value.strip()
        if not _ICON.match(icon):
            raise ValueError("must be at most 40 characters of a-z, 0-9, '_' or '-'")
        return icon

    def changes(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.model_fields_set}


class ExportInput(BaseModel):
    """An export's range: inclusive dates, either or both may be absent."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    from_date: date | None = Field(None, alias="from")
    to_date: date | None = Field(None, alias="to")
    format: str

    @field_validator("from_date", mode="before")
    @classmethod
    def _from(cls, value: str) -> date | None:
        return iso_date(value) if value.strip() else None

    @field_validator("to_date", mode="before")
    @classmethod
    def _to(cls, value: str, info: ValidationInfo) -> date | None:
        day = iso_date(value) if value.strip() else None
        first = info.data.get("from_date")
        if day is not None and first is not None and day < first:
            raise ValueError("must not be before from")
        return day

    @field_validator("format", mode="before")
    @classmethod
    def _format(cls, value: str) -> str:
        if value.strip().lower() not in ("", "csv"):
            raise ValueError('must be "csv"')
        return "csv"
