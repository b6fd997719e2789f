"""Exact money, property-based: amounts round-trip through the wire form in
currencies with 0, 2 and 3 decimals, and more decimals than a currency has are
refused, never rounded."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from services.kit.domain.errors import InvalidArgument
from services.kit.domain.money import MoneyError, currencies, format_amount, parse_amount
from services.ledger.domain import VALUE_EXPONENT, amount_value, decimal_value
from services.ledger.inputs import ExpenseInput, validate
from services.ledger.settings import LedgerSettings

CURRENCIES = {0: ["JPY", "KRW", "VND"], 2: ["INR", "USD", "EUR"], 3: ["BHD", "KWD", "OMR"]}
MAX_MINOR = 10**15

currency_codes = st.sampled_from([code for codes in CURRENCIES.values() for code in codes])
minor_units = st.integers(min_value=1, max_value=MAX_MINOR)


def test_the_sampled_currencies_have_the_exponents_they_stand_for() -> None:
    for exponent, codes in CURRENCIES.items():
        assert {currencies().exponent(code) for code in codes} == {exponent}


@given(minor=minor_units, currency=currency_codes)
@example(minor=1, currency="KWD")
@example(minor=100, currency="INR")
@example(minor=7, currency="JPY")
def test_format_then_parse_is_the_identity(minor: int, currency: str) -> None:
    text = format_amount(minor, currency)
    assert parse_amount(text, currency) == minor
    exponent = currencies().exponent(currency)
    assert ("." in text) == (exponent > 0)
    if exponent:
        assert len(text.split(".")[1]) == exponent
    assert Decimal(text) == Decimal(minor).scaleb(-exponent)


@given(minor=minor_units, currency=currency_codes, extra_zeros=st.integers(0, 5))
def test_trailing_zeros_do_not_change_the_amount(minor: int, currency: str, extra_zeros: int) -> None:
    text = format_amount(minor, currency)
    padded = text + ("" if "." in text else ".") + "0" * extra_zeros if extra_zeros else text
    assert parse_amount(padded, currency) == minor


@given(
    whole=st.integers(0, 10**9),
    fraction=st.integers(1, 9),
    currency=currency_codes,
)
def test_more_decimals_than_the_currency_has_are_refused(whole: int, fraction: int, currency: str) -> None:
    exponent = currencies().exponent(currency)
    # One significant digit beyond the currency's last decimal place.
    text = f"{whole}." + "0" * exponent + str(fraction)
    with pytest.raises(MoneyError):
        parse_amount(text, currency)


@given(text=st.text(max_size=20), currency=currency_codes)
def test_parse_either_answers_exactly_or_refuses(text: str, currency: str) -> None:
    try:
        minor = parse_amount(text, currency)
    except MoneyError:
        return
    assert isinstance(minor, int)
    assert Decimal(text.strip()) == Decimal(minor).scaleb(-currencies().exponent(currency))
    assert set(text.strip()) <= set("-.0123456789")


@given(minor=st.integers(1, 10**14), currency=currency_codes)
def test_the_ordering_value_is_the_same_decimal(minor: int, currency: str) -> None:
    value = amount_value(minor, currency)
    assert Decimal(value).scaleb(-VALUE_EXPONENT) == Decimal(format_amount(minor, currency))
    assert decimal_value(format_amount(minor, currency)) == value


@given(minor=st.integers(1, 10**13), currency=currency_codes)
def test_validation_accepts_exactly_the_amounts_within_the_limit(minor: int, currency: str) -> None:
    limits = LedgerSettings(max_amount=Decimal("1000000"))
    text = format_amount(minor, currency)
    within = Decimal(text) <= limits.max_amount
    try:
        fields = validate(ExpenseInput, {"currency": currency, "amount": text}, limits)
    except Exception as error:
        assert not within, error
        return
    assert within and fields.amount == minor


@pytest.mark.parametrize("value", [1.5, 10.0, float("nan")])
def test_floats_are_not_amounts(value: float) -> None:
    with pytest.raises(MoneyError):
        parse_amount(value, "INR")  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["١٢", "１２", "1٢", "1.٥"])
def test_only_the_digits_0_to_9_make_an_amount(text: str) -> None:
    with pytest.raises(MoneyError, match="0-9"):
        parse_amount(text, "INR")
    with pytest.raises(MoneyError, match="0-9"):
        decimal_value(text)


@pytest.mark.parametrize("text", ["²", "1.²", "-1", "1e3", " ", "1.00001", "0x10", "١٢", "１２"])
def test_bad_filter_bounds_are_refused(text: str) -> None:
    with pytest.raises(MoneyError):
        decimal_value(text)


def test_huge_filter_bounds_are_clamped() -> None:
    assert decimal_value("9" * 30) == 2**63 - 1


@pytest.mark.parametrize("text", ["9223372036854775807", "1" + "0" * 30 + ".50", "-" + "9" * 19])
def test_a_number_too_large_is_called_too_large_not_a_non_number(text: str) -> None:
    """19 digits or more: the client sent a number, the message must not say otherwise
    (and the ledger's own limit check never sees it)."""
    with pytest.raises(MoneyError, match="too large"):
        parse_amount(text, "INR", allow_negative=True)
    with pytest.raises(InvalidArgument) as refused:
        validate(ExpenseInput, {"currency": "INR", "amount": text.lstrip("-")}, LedgerSettings())
    assert "too large" in refused.value.violations[0].description


def test_leading_zeros_are_no_digits_of_the_amount() -> None:
    assert parse_amount("0" * 40 + "12.50", "INR") == 1250
