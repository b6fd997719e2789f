"""Reporting's plain rules: rounding, periods, category trees, versions, deltas, CSV."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.kit.domain.periods import Period, last_periods, period_containing, today_in
from services.ledger.replica import CategoryInfo, CategoryTree, ExpenseLine, StoredExpense, supersedes
from services.reporting.domain import (
    Rollup,
    Total,
    averaging_days,
    change_hundredths,
    divide_half_even,
    expenses_csv,
    format_hundredths,
    percent_hundredths,
    rollup_deltas,
    series_buckets,
)


@pytest.mark.parametrize(
    ("numerator", "denominator", "expected"),
    [
        (5, 2, 2),
        (7, 2, 4),
        (1, 2, 0),
        (3, 2, 2),
        (-5, 2, -2),
        (-7, 2, -4),
        (10, 4, 2),
        (14, 4, 4),
        (1, 3, 0),
        (2, 3, 1),
    ],
)
def test_division_rounds_half_to_even(numerator: int, denominator: int, expected: int) -> None:
    assert divide_half_even(numerator, denominator) == expected


@given(st.integers(-(10**15), 10**15), st.integers(1, 10**6))
def test_division_is_within_half_of_the_exact_quotient(numerator: int, denominator: int) -> None:
    result = divide_half_even(numerator, denominator)
    assert abs(2 * (result * denominator - numerator)) <= denominator


def test_percentages_have_two_exact_decimals() -> None:
    assert format_hundredths(percent_hundredths(1, 8)) == "12.50"
    # 1/800 = 0.125 % -> ties go to the even hundredth.
    assert format_hundredths(percent_hundredths(1, 800)) == "0.12"
    assert format_hundredths(percent_hundredths(3, 800)) == "0.38"
    assert change_hundredths(Total(0, 0), Total(250, 1)) == -10_000
    assert change_hundredths(Total(5, 1), Total(0, 0)) is None
    assert format_hundredths(-5) == "-0.05"


@pytest.mark.parametrize(
    ("first_day", "day", "start"),
    [
        ("monday", date(2024, 1, 1), date(2024, 1, 1)),
        ("sunday", date(2024, 1, 1), date(2023, 12, 31)),
        ("saturday", date(2024, 1, 1), date(2023, 12, 30)),
        ("saturday", date(2023, 12, 30), date(2023, 12, 30)),
        ("sunday", date(2023, 12, 30), date(2023, 12, 24)),
        ("", date(2024, 1, 3), date(2024, 1, 1)),
    ],
)
def test_weeks_start_on_the_users_first_day(first_day: str, day: date, start: date) -> None:
    week = period_containing("week", day, first_day)
    assert (week.start, week.days) == (start, 7)


def test_months_years_and_their_predecessors() -> None:
    february = period_containing("month", date(2024, 2, 10))
    assert (february.start, february.end, february.days) == (date(2024, 2, 1), date(2024, 2, 29), 29)
    assert february.previous() == Period("month", date(2024, 1, 1), date(2024, 1, 31))
    assert period_containing("month", date(2024, 1, 5)).previous().start == date(2023, 12, 1)
    assert period_containing("year", date(2024, 6, 1)).previous() == Period(
        "year", date(2023, 1, 1), date(2023, 12, 31)
    )
    assert [p.start for p in last_periods("week", date(2024, 1, 2), 3, "monday")] == [
        date(2023, 12, 18),
        date(2023, 12, 25),
        date(2024, 1, 1),
    ]


def test_series_are_days_or_months() -> None:
    assert len(series_buckets(period_containing("month", date(2024, 2, 1)))) == 29
    months = series_buckets(period_containing("year", date(2024, 2, 1)))
    assert months[1] == (date(2024, 2, 1), date(2024, 2, 29)) and len(months) == 12


def test_average_divides_by_elapsed_days_only_in_the_current_period() -> None:
    january = period_containing("month", date(2024, 1, 1))
    assert averaging_days(january, date(2024, 1, 10)) == 10
    assert averaging_days(january, date(2024, 3, 1)) == 31
    assert averaging_days(january, date(2023, 12, 1)) == 31


def test_today_follows_the_users_time_zone() -> None:
    instant = datetime(2024, 1, 1, 10, 30, tzinfo=UTC)
    assert today_in("Pacific/Kiritimati", instant) == date(2024, 1, 2)
    assert today_in("Pacific/Pago_Pago", instant) == date(2023, 12, 31)
    assert today_in("Not/AZone", instant) == date(2024, 1, 1)


def test_category_tree_rolls_up_and_follows_reassignments() -> None:
    tree = CategoryTree(
        [
            CategoryInfo("food", "Food"),
            CategoryInfo("groceries", "Groceries", "food"),
            CategoryInfo("organic", "Organic", "groceries"),
            CategoryInfo("old", "Old", "food", deleted=True, reassigned_to="older"),
            CategoryInfo("older", "Older", deleted=True, reassigned_to="food"),
            CategoryInfo("loop-a", "A", "loop-b"),
            CategoryInfo("loop-b", "B", "loop-a"),
        ]
    )
    assert tree.top_level("organic") == "food"
    assert tree.branch_under("food", "organic") == "groceries"
    assert tree.branch_under("food", "food") == "food"
    assert tree.subtree("groceries") == {"groceries", "organic"}
    assert tree.children("food") == ["groceries"]
    assert tree.resolve("old") == "food"
    assert tree.path_name("organic") == "Food > Groceries > Organic"
    assert tree.name("") == "Uncategorized" and tree.name("unknown") == ""
    assert "old" not in tree and "food" in tree
    assert tree.top_level("loop-a") in {"loop-a", "loop-b"}  # a corrupt cycle ends, it does not hang


def _line(version: int = 1, **changes: object) -> ExpenseLine:
    fields: dict[str, object] = {
        "expense_id": "e1",
        "amount_minor": 1250,
        "currency": "INR",
        "spent_on": date(2024, 1, 31),
        "category_id": "food",
        "merchant": " Acme ",
        "version": version,
    }
    return ExpenseLine(**(fields | changes))  # type: ignore[arg-type]


def test_versions_decide_which_snapshot_wins() -> None:
    assert supersedes(1, None)
    assert supersedes(3, StoredExpense(_line(2)))
    assert not supersedes(2, StoredExpense(_line(2)))
    assert not supersedes(1, StoredExpense(_line(2)))
    assert supersedes(1, StoredExpense(_line(0)))  # a rebuilt copy has no version
    assert not supersedes(0, StoredExpense(_line(3), deleted=True))  # deletion is final
    assert supersedes(4, StoredExpense(_line(3), deleted=True))


def test_an_update_moves_amounts_between_days_categories_and_currencies() -> None:
    before = _line()
    after = _line(amount_minor=99, currency="JPY", spent_on=date(2024, 2, 1), category_id="fun", merchant="")
    deltas = rollup_deltas([(before, after)])
    assert deltas[Rollup.DAILY_CATEGORY] == {
        (date(2024, 1, 31), "food", "INR", ""): Total(-1250, -1),
        (date(2024, 2, 1), "fun", "JPY", ""): Total(99, 1),
    }
    assert deltas[Rollup.MONTHLY_MERCHANT] == {(date(2024, 1, 1), "food", "INR", "Acme"): Total(-1250, -1)}
    unchanged = rollup_deltas([(before, _line(version=2))])
    assert all(not changes for changes in unchanged.values())
    amount_only = rollup_deltas([(before, _line(amount_minor=1000))])
    assert amount_only[Rollup.MONTHLY_CATEGORY] == {(date(2024, 1, 1), "food", "INR", ""): Total(-250, 0)}


def test_year_rollups_follow_an_expense_across_new_year_only() -> None:
    before = _line(spent_on=date(2023, 12, 31))
    after = _line(amount_minor=1000, spent_on=date(2024, 1, 1))
    deltas = rollup_deltas([(before, after)])
    assert deltas[Rollup.YEARLY_CATEGORY] == {
        (date(2023, 1, 1), "food", "INR", ""): Total(-1250, -1),
        (date(2024, 1, 1), "food", "INR", ""): Total(1000, 1),
    }
    assert deltas[Rollup.YEARLY_MERCHANT] == {
        (date(2023, 1, 1), "food", "INR", "Acme"): Total(-1250, -1),
        (date(2024, 1, 1), "food", "INR", "Acme"): Total(1000, 1),
    }
    within_the_year = rollup_deltas([(after, _line(amount_minor=1000, spent_on=date(2024, 12, 31)))])
    assert within_the_year[Rollup.YEARLY_CATEGORY] == {}
    assert within_the_year[Rollup.MONTHLY_CATEGORY] != {}


def test_csv_neutralises_formulas_and_quotes_properly() -> None:
    tree = CategoryTree([CategoryInfo("food", "Food, Drinks")])
    lines = [
        _line(merchant='=HYPERLINK("x")'),
        _line(expense_id="e2", merchant='Joe "the" Cafe', currency="BHD"),
    ]
    text, rows = expenses_csv(lines, tree)
    parsed = list(csv.reader(io.StringIO(text)))
    assert rows == 2 and parsed[0][0] == "expense_id"
    assert parsed[1][2:7] == ["12.50", "INR", "food", "Food, Drinks", '\'=HYPERLINK("x")']
    assert parsed[2][2] == "1.250" and parsed[2][6] == 'Joe "the" Cafe'
