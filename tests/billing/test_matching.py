"""Matching an expense to a bill: merchant keys, fuzzy payees, amount tolerance, dates."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.billing.matching import (
    NOISE_TOKENS,
    Occurrence,
    amount_within,
    best_occurrence,
    best_unsettled,
    merchant_key,
    payee_matches,
)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("NETFLIX.COM*123456", "netflix"),
        ("Netflix", "netflix"),
        ("www.netflix.com", "netflix"),
        ("Amazon.co.uk", "amazon"),
        ("Dine In", "dine in"),
        ("Spotify AB", "spotify"),
        ("Airtel Postpaid Bill", "airtel postpaid"),
        ("Zomato Pvt. Ltd.", "zomato"),
        ("Café Crème", "cafe creme"),
        ("ＮＥＴＦＬＩＸ", "netflix"),  # full-width letters (NFKD)
        ("McDonald's", "mcdonalds"),
        ("JIO-PREPAID 9876543210", "jio prepaid"),
        ("Uber   *Trip", "uber trip"),
        ("7-Eleven", "7 eleven"),  # short numbers are part of the name
        ("Apple.com/bill", "apple"),
        ("Bill Payment", "bill payment"),  # only noise: kept rather than nothing
        ("", ""),
        (" *** 12345 ", ""),
    ],
)
def test_merchant_key(text: str, key: str) -> None:
    assert merchant_key(text) == key


def test_the_noise_list_stays_small_and_lower_case() -> None:
    expected = {"ltd", "pvt", "inc", "llc", "com", "www", "payment", "autopay", "subscription", "bill"}
    assert expected <= NOISE_TOKENS
    assert len(NOISE_TOKENS) <= 24
    assert all(token == merchant_key(token) for token in NOISE_TOKENS)


@pytest.mark.parametrize(
    ("payee", "merchant", "matches"),
    [
        ("Netflix", "NETFLIX.COM*123456", True),
        ("Netflix", "Netflix India", True),  # extra words
        ("Airtel Postpaid", "AIRTEL POSTPAID BILL 4412", True),
        ("Spotify", "Spotfy AB", True),  # a typo
        ("Hotstar", "Disney+ Hotstar", True),
        ("Netflix", "Hotstar", False),
        ("Jio", "JioMart", False),  # a short key inside a longer name is not enough
        ("Amazon Prime", "Amazon Pay Later", False),
        ("", "Netflix", False),
        ("Netflix", "", False),
    ],
)
def test_payee_matches_at_the_default_threshold(payee: str, merchant: str, matches: bool) -> None:
    assert payee_matches(merchant_key(payee), merchant_key(merchant), 85) is matches


def test_the_threshold_bounds_are_inclusive_and_checked() -> None:
    assert payee_matches("netflix", "hotstar", 0)
    assert payee_matches("netflix", "netflix", 100)
    assert not payee_matches("netflix", "netflx", 100)
    assert not payee_matches("", "", 0)
    for bad in (-1, 101):
        with pytest.raises(ValueError, match="threshold"):
            payee_matches("a", "a", bad)


def test_amount_within_is_inclusive_at_the_tolerance_and_exact() -> None:
    tolerance = Decimal("7.5")
    assert amount_within(10000, 10750, tolerance)
    assert not amount_within(10000, 10751, tolerance)
    assert amount_within(10000, 9250, tolerance)
    assert not amount_within(10000, 9249, tolerance)
    assert amount_within(64900, 64900, Decimal(0))
    assert not amount_within(64900, 64901, Decimal(0))
    # 0.1 % of 1e20 + 1 minor units: a float would round this away.
    assert not amount_within(10**20, 10**20 + 10**17 + 1, Decimal("0.1"))
    assert amount_within(10**20, 10**20 + 10**17, Decimal("0.1"))
    assert amount_within(0, 0, tolerance)
    assert not amount_within(0, 1, tolerance)


@pytest.mark.parametrize("bad", [Decimal(-1), Decimal("NaN"), Decimal("Infinity"), 7.5, 7])
def test_amount_within_refuses_a_tolerance_that_is_not_a_finite_non_negative_decimal(bad: object) -> None:
    with pytest.raises(ValueError, match="percentage"):
        amount_within(100, 100, bad)  # type: ignore[arg-type]


@given(
    expected=st.integers(-(10**15), 10**15),
    actual=st.integers(-(10**15), 10**15),
    tolerance=st.decimals(min_value=0, max_value=200, places=3, allow_nan=False, allow_infinity=False),
)
def test_amount_within_agrees_with_exact_fractions(expected: int, actual: int, tolerance: Decimal) -> None:
    exact = abs(Fraction(actual - expected)) <= Fraction(tolerance) / 100 * abs(expected)
    assert amount_within(expected, actual, tolerance) is exact


def test_best_occurrence_is_the_closest_within_the_window_and_the_earlier_on_a_tie() -> None:
    dues = [date(2026, 1, 5), date(2026, 2, 5), date(2026, 3, 5)]
    assert best_occurrence(dues, date(2026, 2, 7), 5) == date(2026, 2, 5)
    assert best_occurrence(dues, date(2026, 2, 10), 5) == date(2026, 2, 5)  # exactly at the window
    assert best_occurrence(dues, date(2026, 2, 11), 5) is None
    assert best_occurrence(dues, date(2026, 1, 20), 20) == date(2026, 1, 5)  # 15 days before vs 16 after
    tie = [date(2026, 1, 10), date(2026, 1, 20)]
    assert best_occurrence(tie, date(2026, 1, 15), 5) == date(2026, 1, 10)
    assert best_occurrence(list(reversed(tie)), date(2026, 1, 15), 5) == date(2026, 1, 10)
    assert best_occurrence([], date(2026, 1, 15), 5) is None


def test_best_unsettled_skips_settled_occurrences() -> None:
    occurrences = [Occurrence(date(2026, 1, 5), True), Occurrence(date(2026, 2, 5), False)]
    assert best_unsettled(occurrences, date(2026, 1, 6), 31) == date(2026, 2, 5)
    assert best_unsettled(occurrences, date(2026, 1, 6), 5) is None


@given(
    dues=st.lists(st.dates(min_value=date(2020, 1, 1), max_value=date(2030, 1, 1)), max_size=20),
    spent_on=st.dates(min_value=date(2020, 1, 1), max_value=date(2030, 1, 1)),
    window=st.integers(0, 400),
)
def test_best_occurrence_is_the_minimum_by_distance_then_date(
    dues: list[date], spent_on: date, window: int
) -> None:
    inside = [d for d in dues if abs((d - spent_on).days) <= window]
    expected = min(inside, key=lambda d: (abs((d - spent_on).days), d)) if inside else None
    assert best_occurrence(dues, spent_on, window) == expected
