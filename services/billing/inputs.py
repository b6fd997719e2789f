"""Request validation with pydantic against billing's limits (the validation
context). A failed model becomes InvalidArgument naming each field."""

from __future__ import annotations

import re
from datetime import date

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from services.billing.domain import BUDGET_PERIODS, RULE_TYPES
from services.billing.settings import BillingSettings
from services.kit.domain.errors import InvalidArgument
from services.kit.domain.money import MoneyError, parse_amount
from services.kit.domain.validation import canonical_currency, iso_date, money, optional_id, single_line

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")
MAX_RECURRENCE_LENGTH = 500


def _limits(info: ValidationInfo) -> BillingSettings:
    assert isinstance(info.context, BillingSettings)
    return info.context


class RequestIdInput(BaseModel):
    request_id: str

    @field_validator("request_id")
    @classmethod
    def _request_id(cls, value: str) -> str:
        if value and not _REQUEST_ID.match(value):
            raise ValueError("1-100 characters: letters, digits, '.', '_', ':' or '-'")
        return value


class BudgetInput(BaseModel):
    """A budget as a client sets it; amount stays text until the currency is known."""

    model_config = ConfigDict(frozen=True)

    category_id: str | None
    period: str
    # Before amount: the amount's validator reads it.
    currency: str
    # Minor units of currency.
    amount: int
    rollover: bool
    thresholds: tuple[int, ...]
    start_date: date | None

    @field_validator("category_id", mode="before")
    @classmethod
    def _category(cls, value: str) -> str | None:
        return optional_id(value)

    @field_validator("period", mode="before")
    @classmethod
    def _period(cls, value: str) -> str:
        text = value.strip().lower()
        if text not in BUDGET_PERIODS:
            raise ValueError(f"must be one of {', '.join(BUDGET_PERIODS)}")
        return text

    @field_validator("currency", mode="before")
    @classmethod
    def _currency(cls, value: str) -> str:
        return canonical_currency(value)

    @field_validator("thresholds", mode="before")
    @classmethod
    def _thresholds(cls, values: list[int], info: ValidationInfo) -> tuple[int, ...]:
        limits = _limits(info)
        chosen = list(values) or limits.default_thresholds
        if len(chosen) > limits.max_thresholds:
            raise ValueError(f"at most {limits.max_thresholds} thresholds")
        if any(not 1 <= value <= 1000 for value in chosen):
            raise ValueError("each must be a percentage from 1 to 1000")
        return tuple(sorted(set(chosen)))

    @field_validator("start_date", mode="before")
    @classmethod
    def _start(cls, value: str) -> date | None:
        return iso_date(value) if value.strip() else None

    @field_validator("amount", mode="before")
    @classmethod
    def _amount(cls, value: str, info: ValidationInfo) -> int:
        currency = info.data.get("currency")
        if currency is None:  # the currency's own error says what is wrong
            return 0
        return money(value, currency, _limits(info).max_amount)


class BillInput(BaseModel):
    model_config = ConfigDict(frozen=True)

    payee: str
    # Before amount: the amount's validator reads it.
    currency: str
    # Minor units of currency.
    amount: int
    category_id: str | None
    recurrence: str
    first_due: date
    remind_days_before: int
    autopay: bool

    @field_validator("payee", mode="before")
    @classmethod
    def _payee(cls, value: str, info: ValidationInfo) -> str:
        text = single_line(value, _limits(info).max_payee_length)
        if not text:
            raise ValueError("required")
        return text

    @field_validator("currency", mode="before")
    @classmethod
    def _currency(cls, value: str) -> str:
        return canonical_currency(value)

    @field_validator("category_id", mode="before")
    @classmethod
    def _category(cls, value: str) -> str | None:
        return optional_id(value)

    @field_validator("recurrence", mode="before")
    @classmethod
    def _recurrence(cls, value: str) -> str:
        text = value.strip()
        if not text:
            raise ValueError("required: an RFC 5545 RRULE such as FREQ=MONTHLY;BYMONTHDAY=5")
        if len(text) > MAX_RECURRENCE_LENGTH:
            raise ValueError(f"must be at most {MAX_RECURRENCE_LENGTH} characters")
        return text

    @field_validator("first_due", mode="before")
    @classmethod
    def _first_due(cls, value: str) -> date:
        if not value.strip():
            raise ValueError("required")
        return iso_date(value)

    @field_validator("remind_days_before")
    @classmethod
    def _remind(cls, value: int, info: ValidationInfo) -> int:
        most = _limits(info).max_remind_days_before
        if not 0 <= value <= most:
            raise ValueError(f"must be from 0 to {most}")
        return value

    @field_validator("amount", mode="before")
    @classmethod
    def _amount(cls, value: str, info: ValidationInfo) -> int:
        currency = info.data.get("currency")
        if currency is None:  # the currency's own error says what is wrong
            return 0
        return money(value, currency, _limits(info).max_amount)


class PaymentInput(BaseModel):
    due_date: date
    amount: str
    paid_on: date | None

    @field_validator("due_date", mode="before")
    @classmethod
    def _due(cls, value: str) -> date:
        return iso_date(value)

    @field_validator("paid_on", mode="before")
    @classmethod
    def _paid_on(cls, value: str) -> date | None:
        return iso_date(value) if value.strip() else None


class MutedRulesInput(BaseModel):
    muted: tuple[str, ...]

    @field_validator("muted", mode="before")
    @classmethod
    def _muted(cls, values: list[str]) -> tuple[str, ...]:
        unknown = [value for value in values if value not in RULE_TYPES]
        if unknown:
            raise ValueError(f"unknown rule type(s) {', '.join(unknown)}; rules are {', '.join(RULE_TYPES)}")
        return tuple(sorted(set(values)))


class DateRangeInput(BaseModel):
    """Optional inclusive dates of a list request, named as the request names them
    (`from`, `to`) in its field violations."""

    start: date | None = Field(alias="from")
    end: date | None = Field(alias="to")

    @field_validator("start", "end", mode="before")
    @classmethod
    def _day(cls, value: str) -> date | None:
        return iso_date(value) if value.strip() else None

    @field_validator("end")
    @classmethod
    def _ordered(cls, value: date | None, info: ValidationInfo) -> date | None:
        start = info.data.get("start")
        if value and start and start > value:
            raise ValueError("must not be before from")
        return value


def payment_amount(text: str, currency: str) -> int | None:
    if not text.strip():
        return None
    try:
        minor = parse_amount(text, currency)
    except MoneyError as error:
        raise InvalidArgument.of("amount", str(error)) from None
    if minor <= 0:
        raise InvalidArgument.of("amount", "must be greater than zero")
    return minor
