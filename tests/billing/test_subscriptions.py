"""Subscription detection from a seeded history with noise, price increases, speed."""

from __future__ import annotations

import random
import time
from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.billing.recurrence import parse_recurrence
from services.billing.subscriptions import (
    Charge,
    DetectionRules,
    Suggestion,
    detect_subscriptions,
    price_increase,
    suggestion_id,
)

TODAY = date(2026, 12, 10)
RULES = DetectionRules()
NOISE_MERCHANTS = ("Swiggy", "Uber", "Reliance Fresh", "Starbucks", "Shell", "Apollo Pharmacy", "Croma")


class History:
    def __init__(self) -> None:
        self.charges: list[Charge] = []

    def add(self, merchant: str, day: date, amount_minor: int, currency: str = "INR") -> str:
        expense_id = f"e{len(self.charges):05d}"
        self.charges.append(Charge(expense_id, day, merchant, amount_minor, currency))
        return expense_id


def _monthly(day_of_month: int, months: range, year: int = 2026) -> list[date]:
    return [date(year, month, day_of_month) for month in months]


def _seeded_year() -> History:
    """A year of one user's spending: subscriptions, near misses, and noise."""
    rnd = random.Random(2026)
    history = History()
    # Noise: everyday merchants at random days and amounts, all year.
    for _ in range(400):
        day = date(2026, 1, 1) + timedelta(days=rnd.randrange(340))
        history.add(rnd.choice(NOISE_MERCHANTS), day, rnd.randrange(5_000, 400_000))
    # Netflix on about the 5th (a weekend moves it a day or two), one month a bit off.
    for month, shift in zip(range(1, 13), (0, 0, 1, 0, 0, 2, 0, 0, 0, 1, 0, 0), strict=True):
        amount = 65_200 if month == 7 else 64_900
        history.add("NETFLIX.COM" if month % 4 else "Netflix", date(2026, month, 5 + shift), amount)
    # A yearly plan, three years running.
    for year in (2024, 2025, 2026):
        history.add("Amazon Prime", date(year, 3, 14), 149_900)
    # A price increase in the last month: 649 -> 699.
    for month in range(1, 13):
        history.add("Disney+ Hotstar", date(2026, month, 1), 69_900 if month == 12 else 64_900)
    # A weekly delivery on Mondays since September.
    monday = date(2026, 9, 7)
    while monday <= TODAY:
        history.add("Country Delight", monday, 35_000)
        monday += timedelta(days=7)
    # Near misses, none of which is a subscription:
    # a supermarket about monthly, amounts swinging by ~30 %;
    for day, amount in zip(
        _monthly(12, range(1, 13)),
        (
            240_000,
            310_000,
            215_000,
            290_000,
            205_000,
            275_000,
            320_000,
            230_000,
            300_000,
            210_000,
            285_000,
            225_000,
        ),
        strict=True,
    ):
        history.add("Big Bazaar", day, amount)
    # only two charges;
    history.add("Cult.fit", date(2026, 10, 2), 99_900)
    history.add("Cult.fit", date(2026, 11, 2), 99_900)
    # the same amount at irregular intervals;
    for day in (
        date(2026, 1, 3),
        date(2026, 1, 15),
        date(2026, 3, 1),
        date(2026, 3, 21),
        date(2026, 6, 2),
        date(2026, 7, 30),
        date(2026, 8, 20),
        date(2026, 11, 1),
    ):
        history.add("Urban Company", day, 59_900)
    # a monthly plan cancelled in June (stale by December).
    for day in _monthly(8, range(1, 7)):
        history.add("Gaana", day, 9_900)
    return history


@pytest.fixture(scope="module")
def seeded() -> tuple[History, dict[str, Suggestion]]:
    history = _seeded_year()
    found = detect_subscriptions(history.charges, TODAY, RULES)
    return history, {s.merchant_key: s for s in found}


def test_exactly_the_subscriptions_are_suggested(seeded: tuple[History, dict[str, Suggestion]]) -> None:
    _, found = seeded
    assert {(key, s.cadence) for key, s in found.items()} == {
        ("netflix", "monthly"),
        ("amazon prime", "yearly"),
        ("disney hotstar", "monthly"),
        ("country delight", "weekly"),
    }


def test_the_monthly_service(seeded: tuple[History, dict[str, Suggestion]]) -> None:
    history, found = seeded
    netflix = found["netflix"]
    assert netflix.payee == "NETFLIX.COM"  # the most common spelling (9 of 12)
    assert (netflix.currency, netflix.amount_minor, netflix.previous_amount_minor) == ("INR", 64_900, 64_900)
    assert netflix.recurrence == "FREQ=MONTHLY;BYMONTHDAY=5"  # the usual day, not a weekend's shift
    assert netflix.next_due == date(2027, 1, 5)
    assert (netflix.occurrences, netflix.last_charge) == (12, date(2026, 12, 5))
    assert netflix.expense_ids == tuple(
        c.expense_id for c in history.charges if c.merchant in ("NETFLIX.COM", "Netflix")
    )
    assert netflix.suggestion_id == suggestion_id("netflix", "INR", "monthly")
    assert len(netflix.suggestion_id) == 16


def test_the_yearly_plan(seeded: tuple[History, dict[str, Suggestion]]) -> None:
    prime = seeded[1]["amazon prime"]
    assert prime.recurrence == "FREQ=YEARLY;BYMONTH=3;BYMONTHDAY=14"
    assert (prime.occurrences, prime.last_charge, prime.next_due) == (3, date(2026, 3, 14), date(2027, 3, 14))
    assert parse_recurrence(prime.recurrence, prime.next_due).text == prime.recurrence


def test_a_price_increase_keeps_the_series_and_is_noticed(
    seeded: tuple[History, dict[str, Suggestion]],
) -> None:
    hotstar = seeded[1]["disney hotstar"]
    assert (hotstar.occurrences, hotstar.amount_minor, hotstar.previous_amount_minor) == (12, 69_900, 64_900)
    assert price_increase(hotstar.previous_amount_minor, hotstar.amount_minor, Decimal(5))
    assert not price_increase(hotstar.previous_amount_minor, hotstar.amount_minor, Decimal(10))
    assert hotstar.suggestion_id == suggestion_id("disney hotstar", "INR", "monthly")
    assert (hotstar.recurrence, hotstar.next_due) == ("FREQ=MONTHLY;BYMONTHDAY=1", date(2027, 1, 1))


def test_the_weekly_delivery(seeded: tuple[History, dict[str, Suggestion]]) -> None:
    delivery = seeded[1]["country delight"]
    assert delivery.recurrence == "FREQ=WEEKLY;BYDAY=MO"
    assert delivery.next_due == date(2026, 12, 14)
    assert delivery.occurrences == 14


def test_suggestions_are_latest_first_and_independent_of_input_order() -> None:
    history = _seeded_year()
    found = detect_subscriptions(history.charges, TODAY, RULES)
    assert [s.last_charge for s in found] == sorted((s.last_charge for s in found), reverse=True)
    shuffled = list(history.charges)
    random.Random(1).shuffle(shuffled)
    assert detect_subscriptions(shuffled, TODAY, RULES) == found


def test_the_id_is_stable_across_calls_new_charges_and_price_changes() -> None:
    history = _seeded_year()
    before = {s.merchant_key: s.suggestion_id for s in detect_subscriptions(history.charges, TODAY, RULES)}
    history.add("Netflix", date(2027, 1, 5), 79_900)
    later = detect_subscriptions(history.charges, date(2027, 1, 6), RULES)
    netflix = next(s for s in later if s.merchant_key == "netflix")
    assert netflix.suggestion_id == before["netflix"]
    assert (netflix.occurrences, netflix.amount_minor, netflix.previous_amount_minor) == (13, 79_900, 64_900)


def test_charges_on_one_day_count_once() -> None:
    history = _seeded_year()
    duplicate = history.add("Netflix", date(2026, 8, 5), 64_900)
    netflix = next(
        s for s in detect_subscriptions(history.charges, TODAY, RULES) if s.merchant_key == "netflix"
    )
    assert netflix.occurrences == 12
    assert len(set(netflix.expense_ids)) == 12
    assert (
        sum(c.spent_on == date(2026, 8, 5) for c in history.charges if c.expense_id in netflix.expense_ids)
        == 1
    )
    assert duplicate not in netflix.expense_ids  # the first of the day's charges is the one kept


def test_the_rules_decide() -> None:
    history = _seeded_year()
    two = detect_subscriptions(history.charges, TODAY, replace(RULES, min_occurrences=2))
    assert "cult fit" in {s.merchant_key for s in two}
    # Gaana's last charge was 185 days ago: stale after 2 x 34 days, not after 6 x 34.
    patient = detect_subscriptions(history.charges, TODAY, replace(RULES, stale_after_intervals=6))
    assert "gaana" in {s.merchant_key for s in patient}
    # Amazon Prime (last charged 2026-03-14) is stale after 2 x 372 days: from 2028-03-28.
    for today, suggested in ((date(2028, 3, 27), True), (date(2028, 3, 28), False)):
        keys = {s.merchant_key for s in detect_subscriptions(history.charges, today, RULES)}
        assert ("amazon prime" in keys) is suggested
    # At a 40 % tolerance the supermarket's swings (205,000..320,000 around 240,000) fit.
    loose = {
        s.merchant_key
        for s in detect_subscriptions(
            history.charges, TODAY, replace(RULES, amount_tolerance_percent=Decimal(40))
        )
    }
    assert "big bazaar" in loose
    # No price change allowed: the increased series ends in November.
    strict = detect_subscriptions(history.charges, TODAY, replace(RULES, max_price_change_percent=Decimal(0)))
    hotstar = next(s for s in strict if s.merchant_key == "disney hotstar")
    assert (hotstar.occurrences, hotstar.amount_minor, hotstar.last_charge) == (11, 64_900, date(2026, 11, 1))


def test_month_end_charges_make_a_clamped_rule() -> None:
    history = History()
    for day in (
        date(2026, 7, 31),
        date(2026, 8, 31),
        date(2026, 9, 30),
        date(2026, 10, 31),
        date(2026, 11, 30),
    ):
        history.add("Rent Co", day, 2_500_000)
    (rent,) = detect_subscriptions(history.charges, TODAY, RULES)
    assert rent.recurrence == "FREQ=MONTHLY;BYMONTHDAY=28,29,30,31;BYSETPOS=-1"
    assert rent.next_due == date(2026, 12, 31)
    assert rent.payee == "Rent Co"


def test_currencies_are_kept_apart_and_refunds_future_and_nameless_charges_ignored() -> None:
    history = History()
    for month in range(8, 13):
        history.add("GitHub", date(2026, month, 3), 400, "USD")
    history.add("GitHub", date(2026, 9, 3), 33_000, "INR")
    for month in range(8, 12):
        history.add("Spotify", date(2026, month, 9), -11_900)  # refunds
    for month in (12,):
        history.add("Later", date(2026, month, 20), 100)
    for month in range(8, 13):
        history.add("***", date(2026, month, 1), 5_000)
    found = detect_subscriptions(history.charges, date(2026, 12, 5), RULES)
    assert [(s.merchant_key, s.currency, s.occurrences) for s in found] == [("github", "USD", 5)]
    assert found[0].suggestion_id != suggestion_id("github", "INR", "monthly")


def test_a_one_off_purchase_at_the_merchant_does_not_break_the_series() -> None:
    history = History()
    for month in range(1, 13):
        history.add("Apple", date(2026, month, 10), 7_500)  # iCloud
    history.add("Apple", date(2026, 6, 22), 29_900)  # an app
    for year in (2024, 2025, 2026):
        history.add("Apple", date(year, 2, 1), 399_900)  # a yearly plan
    found = {s.cadence: s for s in detect_subscriptions(history.charges, TODAY, RULES)}
    assert set(found) == {"monthly", "yearly"}
    assert found["monthly"].occurrences == 12
    assert found["yearly"].occurrences == 3
    assert not set(found["monthly"].expense_ids) & set(found["yearly"].expense_ids)


def test_a_merchant_visited_all_the_time_holds_no_series() -> None:
    rnd = random.Random(7)
    history = History()
    day = date(2024, 1, 1)
    while day <= TODAY:
        history.add("Reliance Fresh", day, rnd.randrange(40_000, 60_000))
        day += timedelta(days=rnd.choice((1, 2, 3)))
    assert detect_subscriptions(history.charges, TODAY, RULES) == []


def test_price_increase() -> None:
    assert price_increase(64_900, 69_900, Decimal(5))
    assert price_increase(10_000, 10_500, Decimal(5))  # exactly at the threshold
    assert not price_increase(10_000, 10_499, Decimal(5))
    assert not price_increase(10_000, 10_000, Decimal(0))
    assert not price_increase(10_000, 9_000, Decimal(0))
    assert price_increase(0, 1, Decimal(50))
    with pytest.raises(ValueError, match="percentage"):
        price_increase(1, 2, Decimal(-1))


@pytest.mark.parametrize(
    "bad",
    [
        {"min_occurrences": 1},
        {"monthly_days": (34, 26)},
        {"weekly_days": (0, 8)},
        {"stale_after_intervals": 0},
        {"max_stray_percent": -1},
        {"max_skipped_per_gap": -1},
        {"amount_tolerance_percent": Decimal(-1)},
        {"max_price_change_percent": Decimal("NaN")},
    ],
)
def test_detection_rules_are_checked(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        DetectionRules(**bad)  # type: ignore[arg-type]


_CHARGES = st.lists(
    st.builds(
        Charge,
        expense_id=st.uuids().map(str),
        spent_on=st.dates(min_value=date(2024, 1, 1), max_value=TODAY),
        merchant=st.sampled_from(("Netflix", "NETFLIX.COM", "Spotify", "Jio")),
        amount_minor=st.sampled_from((64_900, 65_000, 69_900, 11_900, 100, -5)),
        currency=st.sampled_from(("INR", "USD")),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(charges=_CHARGES)
def test_any_history_gives_consistent_suggestions(charges: list[Charge]) -> None:
    found = detect_subscriptions(charges, TODAY, RULES)
    assert detect_subscriptions(list(reversed(charges)), TODAY, RULES) == found
    by_id = {c.expense_id: c for c in charges}
    seen: set[str] = set()
    for suggestion in found:
        assert suggestion.occurrences == len(suggestion.expense_ids) >= RULES.min_occurrences
        assert not seen & set(suggestion.expense_ids)
        seen |= set(suggestion.expense_ids)
        series = [by_id[i] for i in suggestion.expense_ids]
        days = [c.spent_on for c in series]
        assert days == sorted(set(days))
        assert {c.currency for c in series} == {suggestion.currency}
        assert series[-1].amount_minor == suggestion.amount_minor > 0
        assert suggestion.next_due > suggestion.last_charge == days[-1]
        assert parse_recurrence(suggestion.recurrence, suggestion.next_due).text == suggestion.recurrence
    assert len({(s.merchant_key, s.currency, s.cadence) for s in found}) == len(found)


def _large_history(count: int) -> list[Charge]:
    """Five years: 800 merchants at random, and 200 monthly subscriptions."""
    rnd = random.Random(5)
    start = date(2021, 1, 1)
    charges = [
        Charge(
            f"s{m}-{k}",
            start + timedelta(days=30 * k + m % 5),
            f"Service {chr(65 + m % 26)}{m}",
            49_900,
            "INR",
        )
        for m in range(200)
        for k in range(60)
    ]
    while len(charges) < count:
        charges.append(
            Charge(
                f"r{len(charges)}",
                start + timedelta(days=rnd.randrange(1826)),
                f"Shop {chr(65 + len(charges) % 26)}{rnd.randrange(800)}",
                rnd.randrange(1_000, 500_000),
                "INR",
            )
        )
    return charges


def test_a_hundred_thousand_charges_take_well_under_a_second_of_cpu() -> None:
    charges = _large_history(100_000)
    started = time.process_time()
    found = detect_subscriptions(charges, date(2025, 12, 31), RULES)
    spent = time.process_time() - started
    assert sum(s.merchant_key.startswith("service") for s in found) == 200
    # Typically ~0.3 s; the bound leaves room for a loaded CI machine.
    assert spent < 1.5, f"{spent:.2f} s of CPU for 100,000 charges"
