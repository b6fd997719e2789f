"""Bill recurrences: RRULE validation, normalisation, month-end clamping, expansion."""

from __future__ import annotations

import calendar
from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.billing.recurrence import MAX_OCCURRENCES, Recurrence, parse_recurrence
from services.kit.domain.errors import InvalidArgument

CLAMPED_31 = "FREQ=MONTHLY;BYMONTHDAY=28,29,30,31;BYSETPOS=-1"


def test_a_bill_on_the_31st_falls_on_the_last_day_of_shorter_months() -> None:
    rule = parse_recurrence("FREQ=MONTHLY;BYMONTHDAY=31", date(2026, 1, 31))
    assert rule.text == CLAMPED_31
    assert rule.occurrences(date(2026, 1, 1), date(2026, 5, 31)) == [
        date(2026, 1, 31),
        date(2026, 2, 28),
        date(2026, 3, 31),
        date(2026, 4, 30),
        date(2026, 5, 31),
    ]
    assert rule.occurrences(date(2028, 2, 1), date(2028, 2, 29)) == [date(2028, 2, 29)]


def test_without_a_day_the_first_due_date_sets_it_and_is_clamped_too() -> None:
    rule = parse_recurrence("FREQ=MONTHLY", date(2026, 1, 30))
    assert rule.text == "FREQ=MONTHLY;BYMONTHDAY=28,29,30;BYSETPOS=-1"
    assert rule.occurrences(date(2026, 2, 1), date(2026, 4, 30)) == [
        date(2026, 2, 28),
        date(2026, 3, 30),
        date(2026, 4, 30),
    ]


def test_yearly_rules_in_one_month_clamp_and_leap_days_fall_back_to_the_28th() -> None:
    leap = parse_recurrence("FREQ=YEARLY", date(2028, 2, 29))
    assert leap.text == "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=28,29;BYSETPOS=-1"
    assert leap.occurrences(date(2028, 1, 1), date(2032, 12, 31)) == [
        date(2028, 2, 29),
        date(2029, 2, 28),
        date(2030, 2, 28),
        date(2031, 2, 28),
        date(2032, 2, 29),
    ]
    april = parse_recurrence("FREQ=YEARLY;BYMONTH=4;BYMONTHDAY=31", date(2026, 1, 1))
    assert april.occurrences(date(2026, 1, 1), date(2027, 12, 31)) == [date(2026, 4, 30), date(2027, 4, 30)]


def test_rules_that_say_what_they_mean_keep_rfc_5545_meaning() -> None:
    assert parse_recurrence("FREQ=MONTHLY;BYMONTHDAY=-1", date(2026, 1, 1)).occurrences(
        date(2026, 2, 1), date(2026, 2, 28)
    ) == [date(2026, 2, 28)]
    # Several months in a YEARLY rule: a month without the 31st is skipped.
    skipping = parse_recurrence("FREQ=YEARLY;BYMONTH=1,4;BYMONTHDAY=31", date(2026, 1, 1))
    assert skipping.text == "FREQ=YEARLY;BYMONTH=1,4;BYMONTHDAY=31"
    assert skipping.occurrences(date(2026, 1, 1), date(2026, 12, 31)) == [date(2026, 1, 31)]


def test_the_text_is_normalised_and_parsing_it_again_changes_nothing() -> None:
    rule = parse_recurrence("  rrule:bymonthday=5;freq=monthly;interval=1 ", date(2026, 1, 5))
    assert rule.text == "FREQ=MONTHLY;BYMONTHDAY=5"
    assert parse_recurrence(rule.text, date(2026, 1, 5)) == rule
    assert parse_recurrence("RRULE:FREQ=MONTHLY;INTERVAL=3", date(2026, 1, 15)).text == (
        "FREQ=MONTHLY;INTERVAL=3"
    )
    assert parse_recurrence("FREQ=MONTHLY;UNTIL=20261231", date(2026, 1, 5)).text == (
        "FREQ=MONTHLY;UNTIL=20261231"
    )


def test_weekly_quarterly_and_yearly_rules_expand_from_the_first_due_date() -> None:
    weekly = parse_recurrence("FREQ=WEEKLY;BYDAY=MO", date(2026, 1, 1))
    assert weekly.occurrences(date(2025, 1, 1), date(2026, 1, 20)) == [
        date(2026, 1, 5),
        date(2026, 1, 12),
        date(2026, 1, 19),
    ]
    quarterly = parse_recurrence("FREQ=MONTHLY;INTERVAL=3", date(2026, 1, 15))
    assert quarterly.occurrences(date(2026, 1, 1), date(2026, 12, 31)) == [
        date(2026, 1, 15),
        date(2026, 4, 15),
        date(2026, 7, 15),
        date(2026, 10, 15),
    ]
    yearly = parse_recurrence("FREQ=YEARLY", date(2026, 3, 14))
    assert yearly.occurrences(date(2026, 3, 15), date(2028, 3, 14)) == [date(2027, 3, 14), date(2028, 3, 14)]


def test_next_and_previous_occurrences() -> None:
    rule = parse_recurrence("FREQ=MONTHLY;BYMONTHDAY=5", date(2026, 1, 5))
    assert rule.next_on_or_after(date(2026, 3, 5)) == date(2026, 3, 5)
    assert rule.next_on_or_after(date(2026, 3, 6)) == date(2026, 4, 5)
    assert rule.next_on_or_after(date(2020, 1, 1)) == date(2026, 1, 5)
    assert rule.previous_before(date(2026, 3, 5)) == date(2026, 2, 5)
    assert rule.previous_before(date(2026, 1, 5)) is None
    counted = parse_recurrence("FREQ=MONTHLY;BYMONTHDAY=5;COUNT=2", date(2026, 1, 5))
    assert counted.next_on_or_after(date(2026, 2, 6)) is None
    assert counted.previous_before(date(2030, 1, 1)) == date(2026, 2, 5)
    until = parse_recurrence("FREQ=MONTHLY;BYMONTHDAY=5;UNTIL=20260305", date(2026, 1, 5))
    assert until.occurrences(date(2026, 1, 1), date(2026, 12, 31))[-1] == date(2026, 3, 5)


def test_occurrences_are_bounded_and_empty_for_an_empty_range() -> None:
    daily = parse_recurrence("FREQ=DAILY", date(2026, 1, 1))
    assert len(daily.occurrences(date(2026, 1, 1), date(2036, 1, 1))) == MAX_OCCURRENCES
    assert daily.occurrences(date(2026, 2, 1), date(2026, 1, 1)) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("FREQ=WEEKLY;BYDAY=MO", 7),
        ("FREQ=WEEKLY;BYDAY=MO,TH", 4),  # gaps of 3 and 4 days
        ("FREQ=MONTHLY;BYMONTHDAY=5", 30),
        ("FREQ=MONTHLY;BYMONTHDAY=31", 30),
        ("FREQ=MONTHLY;INTERVAL=3", 91),
        ("FREQ=YEARLY", 365),
        ("FREQ=DAILY", 1),
        ("FREQ=MONTHLY;COUNT=1", 30),  # one occurrence: the nominal period
    ],
)
def test_typical_interval_days(text: str, expected: int) -> None:
    assert parse_recurrence(text, date(2026, 1, 5)).typical_interval_days() == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "FREQ=HOURLY",
        "FREQ=MINUTELY",
        "FREQ=SECONDLY;INTERVAL=30",
        "FREQ=FORTNIGHTLY",
        "BYDAY=MO",
        "FREQ=MONTHLY;BYHOUR=9",
        "DTSTART:20260101T090000\nRRULE:FREQ=MONTHLY",
        "FREQ=MONTHLY;DTSTART=20260101",
        "FREQ=MONTHLY;UNTIL=20261231T235959Z",
        "FREQ=MONTHLY;COUNT=3;UNTIL=20261231",
        "FREQ=MONTHLY;COUNT=0",
        "FREQ=MONTHLY;INTERVAL=0",
        "FREQ=MONTHLY;INTERVAL=-1",
        "FREQ=MONTHLY;FREQ=WEEKLY",
        "FREQ=MONTHLY;;",
        "FREQ=MONTHLY;FOO=1",
        "FREQ=MONTHLY;BYEASTER=0",
        "FREQ=WEEKLY;BYDAY=XX",
        "FREQ=MONTHLY;BYMONTHDAY=40",
        "FREQ=MONTHLY;BYSETPOS=0;BYDAY=MO",
        "FREQ=MONTHLY;UNTIL=20250101",  # ends before the first due date
        "FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30",  # never
        "garbage",
        "FREQ=MONTHLY;BYMONTHDAY=5" + ";BYMONTH=1" * 60,  # over 500 characters
    ],
)
def test_invalid_rules_are_refused_on_the_named_field(text: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_recurrence(text, date(2026, 1, 1), field="bill.recurrence")
    assert [v.field for v in caught.value.violations] == ["bill.recurrence"]
    assert caught.value.violations[0].description


def test_the_field_defaults_to_recurrence() -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_recurrence("FREQ=HOURLY", date(2026, 1, 1))
    assert caught.value.violations[0].field == "recurrence"
    assert "finer than a day" in caught.value.violations[0].description


_DAYS = st.dates(min_value=date(2000, 1, 1), max_value=date(2090, 12, 31))


@given(first_due=_DAYS, day=st.integers(1, 31))
def test_a_monthly_rule_on_any_day_falls_once_in_every_month(first_due: date, day: int) -> None:
    rule = parse_recurrence(f"FREQ=MONTHLY;BYMONTHDAY={day}", first_due)
    start = (first_due.replace(day=1) + timedelta(days=32)).replace(day=1)  # the next whole month
    end = (start + timedelta(days=24 * 31)).replace(day=1) - timedelta(days=1)
    found = rule.occurrences(start, end)
    months = [(d.year, d.month) for d in found]
    assert len(months) == len(set(months)) == 24
    for due in found:
        assert due.day == min(day, calendar.monthrange(due.year, due.month)[1])


_RULES = st.sampled_from(
    [
        "FREQ=DAILY;INTERVAL=3",
        "FREQ=WEEKLY;BYDAY=MO,FR",
        "FREQ=WEEKLY;INTERVAL=2",
        "FREQ=MONTHLY",
        "FREQ=MONTHLY;BYMONTHDAY=30",
        "FREQ=MONTHLY;BYDAY=-1FR",
        "FREQ=MONTHLY;INTERVAL=3;BYMONTHDAY=31",
        "FREQ=YEARLY",
        "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29",
        "FREQ=MONTHLY;BYMONTHDAY=15;COUNT=4",
    ]
)


@given(text=_RULES, first_due=_DAYS, start=_DAYS, length=st.integers(0, 2000))
def test_occurrences_are_sorted_in_range_and_never_before_the_first_due_date(
    text: str, first_due: date, start: date, length: int
) -> None:
    rule = parse_recurrence(text, first_due)
    end = start + timedelta(days=length)
    found = rule.occurrences(start, end)
    assert found == sorted(set(found))
    assert all(max(start, first_due) <= due <= end for due in found)
    assert len(found) <= MAX_OCCURRENCES
    if found:
        assert rule.next_on_or_after(start) == found[0]
        assert rule.previous_before(found[0]) is None or rule.previous_before(found[0]) < found[0]
    assert parse_recurrence(rule.text, first_due) == rule  # normalising twice is a no-op
    assert Recurrence(rule.text, first_due).occurrences(start, end) == found


def test_rules_at_the_end_of_the_calendar_stop_cleanly() -> None:
    yearly = parse_recurrence("FREQ=YEARLY", date(9999, 6, 1))
    assert yearly.next_on_or_after(date(9999, 6, 2)) is None
    assert yearly.occurrences(date(9999, 1, 1), date(9999, 12, 31)) == [date(9999, 6, 1)]
    assert yearly.typical_interval_days() == 365
    month_end = parse_recurrence("FREQ=MONTHLY;BYMONTHDAY=31", date(9999, 11, 1))
    assert month_end.occurrences(date(9999, 1, 1), date(9999, 12, 31)) == [
        date(9999, 11, 30),
        date(9999, 12, 31),
    ]
