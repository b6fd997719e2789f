"""Turning the text a template or the generic extractor captured into values:
amounts as Decimal (never float), currencies, dates, masks, counterparties. Plain
Python; every function answers None (or "") for text it cannot read instead of raising."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal, InvalidOperation

from services.kit.domain.money import MoneyError, currencies, parse_amount

# Every way a message writes the rupee; other currencies come as their ISO code.
RUPEE_TOKENS = frozenset({"RS", "RS.", "INR", "INR.", "₹", "RUPEES", "RUPEE", "RE", "RE."})
# Symbols some foreign issuers write instead of the code.
CURRENCY_SYMBOLS = {"$": "USD", "US$": "USD", "S$": "SGD", "€": "EUR", "£": "GBP", "฿": "THB", "¥": "JPY"}
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?", re.ASCII)
_SPACES = re.compile(r"\s+")
_VPA = re.compile(r"^[a-z0-9._-]{2,64}@[a-z][a-z0-9.]{1,32}$", re.ASCII)
# Words around a merchant name that are not part of it.
_PARTY_PREFIXES = re.compile(r"^(?:vpa|upi|m/s\.?|ms\.?|merchant|info|to|at|by|from)[\s:/-]+", re.IGNORECASE)
_PARTY_TRAILING = re.compile(r"[\s.,:;/-]+$")
_MASK_DIGITS = re.compile(r"[0-9]{2,6}$", re.ASCII)
_MONTHS = {
    m: i
    for i, m in enumerate(
        ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], 1
    )
}
_DATE_NUMERIC = re.compile(r"^([0-9]{1,4})[-/.:]([0-9]{1,2})[-/.:]([0-9]{2,4})", re.ASCII)
_DATE_MONTH_NAME = re.compile(r"^([0-9]{1,2})[-/ ]?([A-Za-z]{3})[A-Za-z]*[-/, ]*([0-9]{2,4})", re.ASCII)
_DATE_NAME_FIRST = re.compile(r"^([A-Za-z]{3})[A-Za-z]* ([0-9]{1,2}),? ([0-9]{4})", re.ASCII)
_DAY_MONTH = re.compile(r"^([0-9]{1,2})[-/ ]?([A-Za-z]{3})$", re.ASCII)
_MAX_AMOUNT_DIGITS = 15


def currency_of(token: str | None, default: str = "INR") -> str | None:
    """ "Rs." -> INR, "usd" -> USD; None for a token that names no known currency."""
    if not token:
        return default
    cleaned = token.strip().upper().rstrip(":")
    if cleaned in RUPEE_TOKENS:
        return "INR"
    if cleaned in CURRENCY_SYMBOLS:
        return CURRENCY_SYMBOLS[cleaned]
    return cleaned if cleaned in currencies() else None


def decimal_amount(text: str | None) -> Decimal | None:
    """ "1,23,456.78" -> Decimal("123456.78"); "890/-" -> Decimal("890"). None when the
    text is no amount (or an absurdly long one)."""
    if not text:
        return None
    # Commas group digits (Indian 1,23,456 or western 123,456): both only separate.
    match = _NUMBER.search(text.replace(" ", "").replace(",", ""))
    if match is None:
        return None
    digits = match.group()
    if len(digits.split(".")[0]) > _MAX_AMOUNT_DIGITS:
        return None
    try:
        return Decimal(digits)
    except InvalidOperation:
        return None


def minor_units(amount: Decimal, currency: str) -> int | None:
    """The amount in the currency's minor units; None when it has more decimals than
    the currency allows (a misread, not something to round)."""
    try:
        return parse_amount(format(amount, "f"), currency)
    except MoneyError:
        return None


def two_digit_year(year: int) -> int:
    return 2000 + year if year < 100 else year


def parse_date(text: str | None, received: date) -> date | None:
    """The dates Indian and foreign issuers write, day first: 17/05/26, 17-05-2026,
    2026-05-02:00:17:56, 20NOV24, 20-NOV-24, 08/MAY/2026, 5 May 2026, May 5, 2026.
    None for text that reads as no real date, or one far from the message's arrival."""
    if not text:
        return None
    value = _date_from_text(text.strip()) or _date_without_year(text.strip(), received)
    if value is None or abs((received - value).days) > 400:
        return None
    return value


def _date_from_text(text: str) -> date | None:
    try:
        if match := _DATE_NUMERIC.match(text):
            first, month, last = (int(part) for part in match.groups())
            if len(match.group(1)) == 4:  # ISO: year first
                return date(first, month, last)
            return date(two_digit_year(last), month, first)
        if match := _DATE_MONTH_NAME.match(text):
            month = _MONTHS.get(match.group(2).upper())
            if month is None:
                return None
            return date(two_digit_year(int(match.group(3))), month, int(match.group(1)))
        if match := _DATE_NAME_FIRST.match(text):
            month = _MONTHS.get(match.group(1).upper())
            if month is None:
                return None
            return date(int(match.group(3)), month, int(match.group(2)))
    except ValueError:
        return None
    return None


def _date_without_year(text: str, received: date) -> date | None:
    """ "05 NOV" (issuers abroad print no year): the latest such day not after arrival."""
    match = _DAY_MONTH.match(text)
    month = _MONTHS.get(match.group(2).upper()) if match else None
    if match is None or month is None:
        return None
    try:
        value = date(received.year, month, int(match.group(1)))
        return value if value <= received else date(received.year - 1, month, int(match.group(1)))
    except ValueError:
        return None


def account_mask(text: str | None) -> str:
    """The last digits a message shows of an account or card ("XX1234", "*0000",
    "4xxx0000" -> "1234", "0000", "0000")."""
    if not text:
        return ""
    match = _MASK_DIGITS.search(text.strip())
    return match.group()[-4:] if match else ""


def counterparty(text: str | None) -> str:
    """A merchant, payee or VPA as one canonical string: VPAs lower-case, names with
    collapsed spaces, without "VPA"/"M/S" prefixes or trailing punctuation; an all
    upper-case name (as banks print them) in title case."""
    if not text:
        return ""
    value = _SPACES.sub(" ", text).strip()
    for _ in range(2):
        value = _PARTY_PREFIXES.sub("", value)
    value = _PARTY_TRAILING.sub("", value).strip(" '\"")
    if _VPA.match(value.lower()):
        return value.lower()
    if value.isupper():
        value = value.title()
    return value


def merchant_key(name: str) -> str:
    """What a user's merchant -> category mapping is keyed by: letters and digits of
    the name, lower-case (so "AMAZON PAY", "Amazon Pay" and "amazon-pay" are one)."""
    return "".join(char for char in name.casefold() if char.isalnum())[:100]
