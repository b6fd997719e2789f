"""Exact money: integer minor units in storage, decimal strings on the wire,
never a float. Currency exponents come from config/currencies.toml."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache

from services.kit.config.settings import REPO_ROOT

CURRENCIES_FILE = REPO_ROOT / "config" / "currencies.toml"
# ASCII digits only: Python's \d and int() also take Arabic-Indic or full-width digits.
_AMOUNT = re.compile(r"(?P<sign>-?)(?P<int>[0-9]+)(?:\.(?P<frac>[0-9]+))?")
# Whole digits an amount may have: beyond, no minor units fit a BIGINT (nor any limit).
MAX_WHOLE_DIGITS = 18
# Said of any amount or decimal a client sends that is not one.
NOT_A_DECIMAL = "must be a decimal number such as 1250.50, in the digits 0-9"
TOO_LARGE = f"is too large: at most {MAX_WHOLE_DIGITS} digits before the decimal point"


class MoneyError(ValueError):
    """A wire amount or currency that cannot be represented exactly."""


@dataclass(frozen=True)
class CurrencyTable:
    exponents: dict[str, int]

    def exponent(self, currency: str) -> int:
        try:
            return self.exponents[currency]
        except KeyError:
            raise MoneyError(f"unknown currency {currency!r} (expected an ISO 4217 code)") from None

    def __contains__(self, currency: object) -> bool:
        return currency in self.exponents


@lru_cache(maxsize=1)
def currencies() -> CurrencyTable:
    data = tomllib.loads(CURRENCIES_FILE.read_text())
    default = int(data["default_exponent"])
    special = {code: int(exp) for code, exp in data["exponents"].items()}
    return CurrencyTable({code: special.get(code, default) for code in data["codes"]["list"].split()})


def parse_amount(text: str, currency: str, *, allow_negative: bool = False) -> int:
    """ "1250.50" in INR -> 125050. Rejects more decimals than the currency has."""
    exponent = currencies().exponent(currency)
    match = _AMOUNT.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise MoneyError(NOT_A_DECIMAL)
    if match["sign"] and not allow_negative:
        raise MoneyError("must not be negative")
    if len(match["int"].lstrip("0")) > MAX_WHOLE_DIGITS:
        raise MoneyError(TOO_LARGE)  # a number all the same: saying it is none misleads
    fraction = (match["frac"] or "").rstrip("0")
    if len(fraction) > exponent:
        raise MoneyError(f"{currency} allows at most {exponent} decimal places")
    minor = int(match["int"].lstrip("0") or "0") * 10**exponent + int(fraction.ljust(exponent, "0") or "0")
    return -minor if match["sign"] else minor


def format_amount(minor: int, currency: str) -> str:
    """125050 in INR -> "1250.50"; exact for any integer."""
    exponent = currencies().exponent(currency)
    sign = "-" if minor < 0 else ""
    whole, fraction = divmod(abs(minor), 10**exponent)
    return f"{sign}{whole}.{fraction:0{exponent}d}" if exponent else f"{sign}{whole}"


def to_decimal(minor: int, currency: str) -> Decimal:
    return Decimal(minor).scaleb(-currencies().exponent(currency))
