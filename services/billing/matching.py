"""Matching a ledger expense to a bill occurrence: merchant names, amounts, dates.

Plain Python (rapidfuzz for the fuzzy part), no I/O. Thresholds, tolerances and
windows come from config; these functions only apply them.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from rapidfuzz import fuzz

# Words that say nothing about who was paid: legal forms, web noise, and the
# words banks and users wrap around a payee. Kept short on purpose: every entry
# makes two different merchants more alike.
NOISE_TOKENS = frozenset(
    {
        "ab",
        "co",
        "com",
        "corp",
        "gmbh",
        "inc",
        "limited",
        "llc",
        "ltd",
        "plc",
        "pvt",
        "www",
        "autopay",
        "bill",
        "payment",
        "subscription",
    }
)
# "netflix.com", "amazon.co.uk": keep the name, drop the top-level domain ("www"
# is a noise word). Only after a dot: "Dine In" keeps its "in".
_TOP_LEVEL_DOMAIN = re.compile(r"\.(?:com|net|org|io|in|co|uk|app|tv)\b")
# Card numbers, order and reference numbers: four digits or more.
_LONG_DIGITS = re.compile(r"[0-9]{4,}")
_APOSTROPHES = ("'", "’", "`")  # dropped, not spaces: "McDonald's" -> "mcdonalds"
_WORD = re.compile(r"[^\W_]+")
# partial_ratio scores a short key inside any longer name ("jio" in "jiomart"
# is 100), so it only counts when the shorter key has at least this many characters.
PARTIAL_MIN_LENGTH = 4


def merchant_key(text: str) -> str:
    """Normalised merchant or payee: casefolded, accents stripped, punctuation,
    noise words and long digit runs dropped, single spaces. When every word is
    noise ("Bill Payment"), the words are kept rather than returning nothing."""
    if text.isascii():  # most names: no accents to strip, and 10x faster
        plain = text.lower()
    else:
        decomposed = unicodedata.normalize("NFKD", text)
        plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()
    for apostrophe in _APOSTROPHES:
        if apostrophe in plain:  # str.translate costs 20x more on every name
            plain = plain.replace(apostrophe, "")
    if "." in plain:
        plain = _TOP_LEVEL_DOMAIN.sub(" ", plain)
    words = _WORD.findall(_LONG_DIGITS.sub(" ", plain))
    kept = [word for word in words if word not in NOISE_TOKENS]
    return " ".join(kept or words)


def payee_matches(payee_key: str, merchant_key: str, threshold: int) -> bool:
    """Whether two normalised names (see `merchant_key`) are the same payee:
    the better of rapidfuzz's token-set ratio (word order and extra words do not
    matter) and partial ratio (one name inside the other) reaches `threshold`
    (0..100). An empty name matches nothing."""
    if not 0 <= threshold <= 100:
        raise ValueError(f"threshold must be within 0..100, not {threshold}")
    if not payee_key or not merchant_key:
        return False
    score = fuzz.token_set_ratio(payee_key, merchant_key)
    if score < threshold and min(len(payee_key), len(merchant_key)) >= PARTIAL_MIN_LENGTH:
        score = max(score, fuzz.partial_ratio(payee_key, merchant_key))
    return score >= threshold


def amount_within(expected_minor: int, actual_minor: int, tolerance_percent: Decimal) -> bool:
    """|actual - expected| <= tolerance_percent % of |expected|, exactly: the
    percentage is turned into an integer fraction, nothing is rounded."""
    numerator, denominator = percent_ratio(tolerance_percent)
    return abs(actual_minor - expected_minor) * 100 * denominator <= numerator * abs(expected_minor)


def percent_ratio(percent: Decimal) -> tuple[int, int]:
    """A non-negative finite percentage as an exact integer fraction (n, d)."""
    if not isinstance(percent, Decimal) or not percent.is_finite() or percent < 0:
        raise ValueError(f"a percentage is a finite non-negative Decimal, not {percent!r}")
    return percent.as_integer_ratio()


@dataclass(frozen=True)
class Occurrence:
    due_on: date
    settled: bool


def best_occurrence(occurrences: Sequence[date], spent_on: date, window_days: int) -> date | None:
    """The due date closest to `spent_on`, at most `window_days` away either
    side; on a tie the earlier one (the payment settles the older bill first)."""
    best: tuple[int, date] | None = None
    for due_on in occurrences:
        distance = abs((spent_on - due_on).days)
        if distance <= window_days and (best is None or (distance, due_on) < best):
            best = (distance, due_on)
    return best[1] if best else None


def best_unsettled(occurrences: Sequence[Occurrence], spent_on: date, window_days: int) -> date | None:
    """`best_occurrence` among the occurrences not settled yet."""
    return best_occurrence([o.due_on for o in occurrences if not o.settled], spent_on, window_days)
