"""Insight rules on seeded histories: a known anomaly, trend and subscription are each
found, with the numbers behind them; a flat history raises nothing but its projection."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from services.billing.subscriptions import Charge, DetectionRules, detect_subscriptions
from services.ds.insights import History, Insight, InsightRules
from services.ds.settings import InsightSettings
from services.ds.storage import DailyRow
from services.kit.domain.periods import last_periods, period_containing

TODAY = date(2026, 12, 15)
FOOD, TRAVEL = "cat-food", "cat-travel"


def steady_days(start: date, end: date, category: str, per_day: int) -> list[DailyRow]:
    days = (end - start).days + 1
    return [DailyRow(start + timedelta(days=i), category, "INR", per_day) for i in range(days)]


def run(rows: list[DailyRow], charges: list[Charge] = ()) -> list[Insight]:
    current = period_containing("month", TODAY)
    past = list(reversed(last_periods("month", current.start - timedelta(days=1), 6, "monday")))
    series = detect_subscriptions(charges, TODAY, DetectionRules())
    first = {charge.expense_id: charge.spent_on for charge in charges}
    return InsightRules(InsightSettings()).all(History(rows), current, past, TODAY, series, first)


def of_type(insights: list[Insight], kind: str) -> list[Insight]:
    return [insight for insight in insights if insight.type == kind]


def test_a_flat_history_raises_nothing_but_a_projection() -> None:
    rows = steady_days(date(2026, 6, 1), TODAY, FOOD, 50_000)
    insights = run(rows)
    assert [insight.type for insight in insights] == ["projection"]
    projection = insights[0]
    # 15 days at 500.00 spent, 16 days left at a median day of 500.00.
    assert projection.facts["spent_so_far"] == "7500.00"
    assert projection.facts["median_daily"] == "500.00"
    assert projection.facts["days_left"] == "16"
    assert (projection.low, projection.high) == ("15500.00", "15500.00")
    assert projection.variables["projected"] == {"amount": "15500.00", "currency": "INR"}


def test_a_category_far_above_its_usual_months_is_an_anomaly() -> None:
    rows = steady_days(date(2026, 6, 1), TODAY, FOOD, 50_000)
    # Travel: about 3,000 a month, then 40,000 in the first half of December.
    for month in range(6, 12):
        rows.append(DailyRow(date(2026, month, 10), TRAVEL, "INR", 300_000 + month * 1_000))
    rows.append(DailyRow(date(2026, 12, 5), TRAVEL, "INR", 4_000_000))
    anomalies = of_type(run(rows), "category_anomaly")
    assert [a.category_id for a in anomalies] == [TRAVEL]
    facts = anomalies[0].facts
    assert facts["this_period"] == "40000.00" and facts["median"] == "3085.00"
    assert Decimal(facts["robust_z"]) > Decimal("3.5")


def test_spending_well_above_usual_by_this_day_is_a_trend_and_a_biggest_change() -> None:
    rows = steady_days(date(2026, 6, 1), date(2026, 11, 30), FOOD, 50_000)
    rows += steady_days(date(2026, 12, 1), TODAY, FOOD, 66_000)  # 32 % more every day
    insights = run(rows)
    trend = of_type(insights, "trend")
    assert len(trend) == 1 and trend[0].facts["change_percent"] == "32"
    assert trend[0].variables == {"percent": 32, "direction": "more"}
    change = of_type(insights, "biggest_change")
    assert [c.category_id for c in change] == [FOOD] and change[0].facts["change"] == "2400.00"


def test_a_new_monthly_charge_is_reported_as_a_subscription() -> None:
    rows = steady_days(date(2026, 6, 1), TODAY, FOOD, 50_000)
    charges = [
        Charge(f"e{i}", day, "NETFLIX.COM", 64_900, "INR")
        for i, day in enumerate([date(2026, 10, 3), date(2026, 11, 3), date(2026, 12, 3)])
    ]
    subscriptions = of_type(run(rows, charges), "subscription")
    assert len(subscriptions) == 1
    facts = subscriptions[0].facts
    assert (facts["amount"], facts["cadence"], facts["first_charge"]) == ("649.00", "monthly", "2026-10-03")
    assert subscriptions[0].variables["change"] == "new"


def test_an_old_unchanged_subscription_is_no_news() -> None:
    rows = steady_days(date(2026, 6, 1), TODAY, FOOD, 50_000)
    days = [date(2026, month, 3) for month in range(1, 13)]
    charges = [Charge(f"e{i}", day, "SPOTIFY", 11_900, "INR") for i, day in enumerate(days)]
    assert of_type(run(rows, charges), "subscription") == []
