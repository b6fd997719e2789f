"""Billing's budget rules in plain Python: periods in the user's calendar, rollover
across months, projection, thresholds and their dedupe keys."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from services.billing.convert import budget_proto
from services.billing.domain import (
    Bill,
    Budget,
    PeriodFigures,
    bill_due_alert,
    budget_periods,
    budget_status,
    carried_into,
    crossed_thresholds,
    first_open,
    is_large,
    occurrence_status,
    projected_overspend_alert,
    reminder_due,
    threshold_alerts,
)
from services.billing.inputs import DateRangeInput
from services.billing.recurrence import parse_recurrence
from services.billing.rules import BudgetView
from services.kit.domain.errors import InvalidArgument
from services.kit.domain.periods import period_containing, today_in
from services.kit.domain.validation import validated

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def budget(**changes: object) -> Budget:
    fields: dict[str, object] = {
        "budget_id": "b1",
        "user_id": "u1",
        "category_id": "",
        "period": "month",
        "currency": "INR",
        "rollover": False,
        "thresholds": (80, 100),
        "start_date": date(2026, 1, 10),
        "amounts": ((date(2026, 1, 1), 1_000_000),),
        "arming": 0,
        "version": 1,
        "created_at": NOW,
        "updated_at": NOW,
    }
    fields.update(changes)
    return Budget(**fields)  # type: ignore[arg-type]


def test_the_last_evening_of_a_month_is_still_that_month_where_the_user_lives() -> None:
    # 23:30 on 31 January in Kolkata is 18:00 UTC; in Los Angeles, 1 February 07:30 UTC.
    kolkata = today_in("Asia/Kolkata", datetime(2026, 1, 31, 18, 0, tzinfo=UTC))
    los_angeles = today_in("America/Los_Angeles", datetime(2026, 2, 1, 7, 30, tzinfo=UTC))
    assert kolkata == los_angeles == date(2026, 1, 31)
    assert period_containing("month", kolkata).end == date(2026, 1, 31)


def test_weeks_start_on_the_users_first_day() -> None:
    saturday = date(2026, 1, 3)
    assert period_containing("week", saturday, "monday").start == date(2025, 12, 29)
    assert period_containing("week", saturday, "sunday").start == date(2025, 12, 28)
    assert period_containing("week", saturday, "saturday").start == saturday


def test_rollover_carries_remainders_across_three_months() -> None:
    rolling = budget(rollover=True, amounts=((date(2026, 1, 1), 10_000),))
    spending = {date(2026, 1, 1): 7_000, date(2026, 2, 1): 15_000, date(2026, 3, 1): 9_000}
    periods = budget_periods(rolling, "monday", period_containing("month", date(2026, 3, 5)), spending)
    assert [(p.period.start.month, p.carried, p.budgeted, p.spent, p.remaining) for p in periods] == [
        (1, 0, 10_000, 7_000, 3_000),
        (2, 3_000, 13_000, 15_000, -2_000),  # overspent: the next month starts 2,000 short
        (3, -2_000, 8_000, 9_000, -1_000),
    ]
    march = periods[-1].period
    assert carried_into(rolling, "monday", march, spent_before=22_000) == -2_000  # as the chain says
    raised = rolling.with_amount(20_000, periods[1].period)  # February on: 20,000
    assert carried_into(raised, "monday", march, spent_before=22_000) == 10_000 + 20_000 - 22_000
    weekly = budget(
        period="week", rollover=True, start_date=date(2026, 1, 5), amounts=((date(2026, 1, 5), 700),)
    )
    assert (
        carried_into(weekly, "monday", period_containing("week", date(2026, 2, 2)), spent_before=0) == 4 * 700
    )
    plain = budget_periods(
        budget(amounts=((date(2026, 1, 1), 10_000),)), "monday", periods[-1].period, spending
    )
    assert [p.carried for p in plain] == [0, 0, 0]


def test_a_new_amount_applies_from_its_period_on() -> None:
    changed = budget().with_amount(2_000_000, period_containing("month", date(2026, 3, 2)))
    assert changed.amount_for(period_containing("month", date(2026, 2, 1))) == 1_000_000
    assert changed.amount_for(period_containing("month", date(2026, 4, 1))) == 2_000_000
    assert changed.arming == 1


def test_thresholds_and_their_keys() -> None:
    figures = PeriodFigures(period_containing("month", date(2026, 1, 20)), 1_000_000, 0, 850_000)
    status = budget_status(figures, date(2026, 1, 20), {})
    assert status.percent_tenths == 850 and crossed_thresholds(budget(), status) == [80]
    drafts = threshold_alerts(budget(), "Food", status, 100)
    assert [draft.dedupe_key for draft in drafts] == ["budget_threshold:b1:2026-01-01:0:80"]
    assert drafts[0].details["spent"] == "8500.00" and drafts[0].details["percent"] == "85.0"
    rearmed = threshold_alerts(budget(arming=1), "Food", status, 100)
    assert rearmed[0].dedupe_key != drafts[0].dedupe_key


def test_nothing_budgeted_after_a_carried_overspend_has_no_percentage() -> None:
    """Rollover carried 1,294.77 over into a 1,000 budget: budgeted is -294.77. A
    percentage of that is meaningless (it used to read "1000.0"): the API says none,
    every threshold counts as reached, and the alert names the amounts instead."""
    figures = PeriodFigures(period_containing("month", date(2026, 2, 10)), 100_000, -129_477, 5_000)
    status = budget_status(figures, date(2026, 2, 10), {})
    assert status.percent_tenths is None and crossed_thresholds(budget(), status) == [80, 100]
    view = BudgetView(budget(rollover=True, amounts=((date(2026, 1, 1), 100_000),)), "Food", status)
    shown = budget_proto(view).status
    assert (shown.percent, shown.budgeted, shown.remaining) == ("", "-294.77", "-344.77")
    drafts = threshold_alerts(budget(), "Food", status, 100)
    assert drafts[-1].title == "Food: 50.00 INR spent, -294.77 INR budgeted (100% threshold)"
    assert drafts[-1].details["percent"] == "1000.0"  # what the templates' number takes
    untouched = budget_status(PeriodFigures(figures.period, 100_000, -129_477, 0), date(2026, 2, 10), {})
    assert crossed_thresholds(budget(), untouched) == []


def test_a_spend_passing_several_thresholds_announces_only_the_highest() -> None:
    figures = PeriodFigures(period_containing("month", date(2026, 1, 20)), 1_000_000, 0, 1_050_000)
    status = budget_status(figures, date(2026, 1, 20), {})
    drafts = threshold_alerts(budget(thresholds=(50, 80, 100)), "Food", status, 100)
    # Each stored (their keys taken: none fires later in the period), one told.
    assert [(d.details["threshold"], d.announce) for d in drafts] == [
        ("50", False), ("80", False), ("100", True),
    ]  # fmt: skip


def test_projection_warns_before_the_budget_is_spent() -> None:
    january = period_containing("month", date(2026, 1, 1))
    # 4,000 of 10,000 in 10 days: 12,400 by the 31st.
    status = budget_status(PeriodFigures(january, 1_000_000, 0, 400_000), date(2026, 1, 10), {})
    assert status.projected == 1_240_000 and not status.on_track
    draft = projected_overspend_alert(budget(), "All spending", status, date(2026, 1, 10), 5)
    assert draft is not None and draft.dedupe_key == "projected_overspend:b1:2026-01-01:0"
    too_early = budget_status(PeriodFigures(january, 1_000_000, 0, 300_000), date(2026, 1, 2), {})
    assert projected_overspend_alert(budget(), "x", too_early, date(2026, 1, 2), 5) is None
    already_over = budget_status(PeriodFigures(january, 1_000_000, 0, 1_100_000), date(2026, 1, 10), {})
    assert projected_overspend_alert(budget(), "x", already_over, date(2026, 1, 10), 5) is None


def test_large_expenses_by_median_or_absolute_limit() -> None:
    history = [10_000, 12_000, 9_000, 11_000, 10_500]
    assert is_large(40_000, "INR", history, multiplier=3, min_history=5, absolute={})
    assert not is_large(30_000, "INR", history, multiplier=3, min_history=5, absolute={})
    assert not is_large(40_000, "INR", history[:4], multiplier=3, min_history=5, absolute={})
    assert is_large(10_000_001, "INR", [], multiplier=3, min_history=5, absolute={"INR": 100_000})


def test_bill_reminders_and_overdue() -> None:
    bill = Bill(
        "bill", "u1", "Rent", 2_500_000, "INR", "", "FREQ=MONTHLY", date(2026, 1, 5), 3, False, 1, NOW, NOW
    )
    assert reminder_due(bill, date(2026, 2, 5), date(2026, 2, 2))
    assert not reminder_due(bill, date(2026, 2, 5), date(2026, 2, 1))
    assert occurrence_status(date(2026, 2, 5), None, date(2026, 2, 6), grace_days=1) == "upcoming"
    assert occurrence_status(date(2026, 2, 5), None, date(2026, 2, 7), grace_days=1) == "overdue"
    assert bill_due_alert(bill, date(2026, 2, 5)).details["amount"] == "25000.00"


@pytest.mark.parametrize(
    ("window", "field"),
    [
        ({"from": "garbage", "to": ""}, "from"),
        ({"from": "", "to": "2026-02-30"}, "to"),
        ({"from": "2026-12-31", "to": "2026-01-01"}, "to"),
    ],
)
def test_an_occurrence_window_names_the_query_parameters_it_refuses(
    window: dict[str, str], field: str
) -> None:
    """ListBillOccurrences' `from` and `to` were refused as "start", "end" or "request"."""
    with pytest.raises(InvalidArgument) as refused:
        validated(DateRangeInput, window)
    assert [violation.field for violation in refused.value.violations] == [field]


def test_an_occurrence_window_reads_from_and_to() -> None:
    window = validated(DateRangeInput, {"from": "2026-01-01", "to": "2026-01-31"})
    assert (window.start, window.end) == (date(2026, 1, 1), date(2026, 1, 31))


def test_next_due_is_the_earliest_open_occurrence_however_old() -> None:
    """A gap two years back is next_due, not the first open date of a recent window; a
    settled date that is no occurrence (left by an edit) settles nothing; a finite rule
    all settled has none."""
    monthly = parse_recurrence("FREQ=MONTHLY;BYMONTHDAY=10", date(2024, 1, 10))
    settled = {date(2024, 1, 10), date(2024, 2, 10), date(2024, 3, 11), date(2024, 4, 10)}
    assert first_open(monthly.each(), settled) == date(2024, 3, 10)
    assert first_open(monthly.each(), set()) == date(2024, 1, 10)
    twice = parse_recurrence("FREQ=MONTHLY;COUNT=2;BYMONTHDAY=10", date(2024, 1, 10))
    assert first_open(twice.each(), {date(2024, 1, 10), date(2024, 2, 10)}) is None
