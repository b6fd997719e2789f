"""Insights on one user's spending, deterministic and explained: each says which
numbers produced it. Plain Python over the user's daily rollup (from ledger events)
and their recurring charges; integer minor units and Decimal throughout.

- projection: per currency, spent so far + expected recurring charges still due this
  period + the median day's spending (last `projection_lookback_days`) x days left; the
  range takes the 25th and 75th percentile day instead of the median.
- category_anomaly: this period so far against the category's last full periods,
  robust z = 0.6745 (x - median) / MAD above `anomaly_z` (Iglewicz-Hoaglin); with MAD 0,
  above every past period and 50 % above the median.
- trend: per currency, this period so far against the median of the same days of the
  last `trend_periods` periods, from `trend_min_percent` on.
- biggest_change: the categories whose spending so far moved most, by amount, against
  the same days of the last periods.
- subscription: a recurring charge first seen, or raised, within `subscription_recent_days`."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from itertools import accumulate

from services.billing.subscriptions import Suggestion, price_increase
from services.ds.settings import InsightSettings
from services.ds.storage import DailyRow
from services.kit.domain.money import format_amount
from services.kit.domain.periods import Period

CONSISTENCY = Decimal("0.6745")


@dataclass(frozen=True)
class Insight:
    type: str
    currency: str
    # The numbers behind it (amounts as decimal strings), by name.
    facts: dict[str, str]
    category_id: str = ""
    merchant: str = ""
    low: str = ""
    high: str = ""
    # What ranks it among insights of its type (larger first).
    weight: Decimal = Decimal(0)
    # The sentence's template key and its variables (templating renders them).
    sentence: str = ""
    variables: dict[str, object] = field(default_factory=dict)


def _money(minor: int, currency: str) -> str:
    return format_amount(minor, currency)


def _rounded(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def _percentile(values: Sequence[int], fraction: Decimal) -> Decimal:
    """Linear interpolation between closest ranks (values non-empty)."""
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return Decimal(ordered[low]) + (Decimal(ordered[high] - ordered[low]) * (position - low))


def _median(values: Sequence[int]) -> Decimal:
    return _percentile(values, Decimal("0.5"))


class History:
    """The user's daily rollup as running sums per (currency, category) and per currency,
    so any period's total is one subtraction (100,000 expenses make a few thousand
    daily rows; the rules ask for hundreds of totals)."""

    def __init__(self, rows: Sequence[DailyRow]) -> None:
        self.first = min((row.day for row in rows), default=date.min)
        last = max((row.day for row in rows), default=date.min)
        days = (last - self.first).days + 1 if rows else 0
        daily: dict[tuple[str, str | None], list[int]] = defaultdict(lambda: [0] * days)
        first = self.first
        for day, category_id, currency, sum_minor in rows:
            offset = (day - first).days
            daily[(currency, category_id)][offset] += sum_minor
            daily[(currency, None)][offset] += sum_minor
        self._daily = dict(daily)
        self._running = {key: [0, *accumulate(values)] for key, values in daily.items()}
        self._days = days

    def _span(self, start: date, end: date) -> tuple[int, int]:
        """Offsets [low, high) of the days between start and end inclusive, clamped."""
        low = max(0, (start - self.first).days)
        high = min(self._days, (end - self.first).days + 1)
        return low, max(low, high)

    def total(self, start: date, end: date, currency: str, category_id: str | None = None) -> int:
        running = self._running.get((currency, category_id))
        if running is None:
            return 0
        low, high = self._span(start, end)
        return running[high] - running[low]

    def currencies(self) -> list[str]:
        return sorted({currency for currency, category in self._running if category is None})

    def categories(self, currency: str) -> list[str]:
        return sorted(cat for cur, cat in self._running if cur == currency and cat is not None)

    def daily_totals(self, start: date, end: date, currency: str) -> list[int]:
        """Each day's spending from start to end, zero days included."""
        values = self._daily.get((currency, None), [])
        result = []
        for i in range((end - start).days + 1):
            offset = (start - self.first).days + i
            result.append(values[offset] if 0 <= offset < len(values) else 0)
        return result


def same_days(period: Period, elapsed_days: int) -> tuple[date, date]:
    """The first elapsed_days of a period (all of it when shorter)."""
    return period.start, min(period.end, period.start + timedelta(days=elapsed_days - 1))


class InsightRules:
    def __init__(self, settings: InsightSettings) -> None:
        self.settings = settings

    def all(
        self,
        history: History,
        current: Period,
        past: Sequence[Period],
        today: date,
        subscriptions: Iterable[Suggestion],
        first_charges: dict[str, date],
    ) -> list[Insight]:
        """Every insight, in a stable order: projections, anomalies, trends, biggest
        changes, subscriptions. `past` are the full periods before `current`, latest first."""
        recurring = list(subscriptions)
        insights: list[Insight] = []
        for currency in history.currencies():
            insights.append(self.projection(history, current, today, currency, recurring))
            insights.extend(self.anomalies(history, current, past, today, currency))
            trend = self.trend(history, current, past, today, currency)
            if trend is not None:
                insights.append(trend)
            insights.extend(self.biggest_changes(history, current, past, today, currency))
        insights.extend(self.subscription_news(recurring, first_charges, today))
        return insights

    def projection(
        self, history: History, current: Period, today: date, currency: str, recurring: Sequence[Suggestion]
    ) -> Insight:
        spent = history.total(current.start, today, currency)
        lookback_start = today - timedelta(days=self.settings.projection_lookback_days)
        days = history.daily_totals(lookback_start, today - timedelta(days=1), currency)
        days_left = (current.end - today).days
        bills = sum(
            s.amount_minor for s in recurring if s.currency == currency and today < s.next_due <= current.end
        )
        rate, low_rate, high_rate = (
            _percentile(days, q) for q in (Decimal("0.5"), Decimal("0.25"), Decimal("0.75"))
        )
        projected = spent + bills + _rounded(rate * days_left)
        low = spent + bills + _rounded(low_rate * days_left)
        high = spent + bills + _rounded(high_rate * days_left)
        facts = {
            "spent_so_far": _money(spent, currency),
            "expected_recurring": _money(bills, currency),
            "median_daily": _money(_rounded(rate), currency),
            "days_left": str(days_left),
            "lookback_days": str(len(days)),
        }
        return Insight(
            "projection",
            currency,
            facts,
            low=_money(low, currency),
            high=_money(high, currency),
            weight=Decimal(projected),
            sentence="insight.projection",
            variables={
                "projected": {"amount": _money(projected, currency), "currency": currency},
                "low": {"amount": _money(low, currency), "currency": currency},
                "high": {"amount": _money(high, currency), "currency": currency},
                "period_end": current.end.isoformat(),
            },
        )

    def anomalies(
        self, history: History, current: Period, past: Sequence[Period], today: date, currency: str
    ) -> list[Insight]:
        found = []
        for category_id in history.categories(currency):
            values = [history.total(p.start, p.end, currency, category_id) for p in past]
            if sum(1 for value in values if value) < self.settings.anomaly_min_history:
                continue
            now = history.total(current.start, today, currency, category_id)
            middle = _median(values)
            mad = _median([_rounded(abs(Decimal(value) - middle)) for value in values])  # Decimal
            if mad:
                z = CONSISTENCY * (Decimal(now) - middle) / mad
                unusual = z > self.settings.anomaly_z
            else:
                z = Decimal(0)
                unusual = now > max(values) and Decimal(now) > middle * Decimal("1.5")
            if not unusual:
                continue
            facts = {
                "this_period": _money(now, currency),
                "median": _money(_rounded(middle), currency),
                "mad": _money(_rounded(mad), currency),
                "robust_z": str(z.quantize(Decimal("0.01"))),
                "periods": str(len(values)),
            }
            found.append(
                Insight(
                    "category_anomaly",
                    currency,
                    facts,
                    category_id=category_id,
                    weight=Decimal(now) - middle,
                    sentence="insight.category_anomaly",
                    variables={
                        "spent": {"amount": _money(now, currency), "currency": currency},
                        "usual": {"amount": _money(_rounded(middle), currency), "currency": currency},
                    },
                )
            )
        return sorted(found, key=lambda insight: (-insight.weight, insight.category_id))

    def trend(
        self, history: History, current: Period, past: Sequence[Period], today: date, currency: str
    ) -> Insight | None:
        elapsed = (today - current.start).days + 1
        recent = past[: self.settings.trend_periods]
        if len(recent) < self.settings.trend_periods:
            return None
        now = history.total(current.start, today, currency)
        usual = _median([history.total(*same_days(p, elapsed), currency) for p in recent])
        if not usual:
            return None
        percent = (Decimal(now) - usual) * 100 / usual
        if abs(percent) < self.settings.trend_min_percent:
            return None
        rounded = _rounded(percent)
        facts = {
            "this_period_so_far": _money(now, currency),
            "usual_so_far": _money(_rounded(usual), currency),
            "change_percent": str(rounded),
            "days": str(elapsed),
            "periods": str(len(recent)),
        }
        return Insight(
            "trend",
            currency,
            facts,
            weight=abs(percent),
            sentence="insight.trend",
            variables={"percent": abs(rounded), "direction": "more" if rounded > 0 else "less"},
        )

    def biggest_changes(
        self, history: History, current: Period, past: Sequence[Period], today: date, currency: str
    ) -> list[Insight]:
        elapsed = (today - current.start).days + 1
        recent = past[: self.settings.trend_periods]
        if len(recent) < self.settings.trend_periods:
            return []
        changes = []
        for category_id in history.categories(currency):
            now = history.total(current.start, today, currency, category_id)
            usual = _median([history.total(*same_days(p, elapsed), currency, category_id) for p in recent])
            delta = Decimal(now) - usual
            if not usual or not delta:
                continue
            percent = _rounded(delta * 100 / usual)
            if abs(Decimal(percent)) < self.settings.trend_min_percent:
                continue
            facts = {
                "this_period_so_far": _money(now, currency),
                "usual_so_far": _money(_rounded(usual), currency),
                "change": _money(_rounded(delta), currency),
                "change_percent": str(percent),
            }
            changes.append(
                Insight(
                    "biggest_change",
                    currency,
                    facts,
                    category_id=category_id,
                    weight=abs(delta),
                    sentence="insight.category_change",
                    variables={"percent": abs(percent), "direction": "more" if percent > 0 else "less"},
                )
            )
        changes.sort(key=lambda insight: (-insight.weight, insight.category_id))
        return changes[: self.settings.biggest_changes]

    def subscription_news(
        self, recurring: Sequence[Suggestion], first_charges: dict[str, date], today: date
    ) -> list[Insight]:
        recent = today - timedelta(days=self.settings.subscription_recent_days)
        found = []
        for series in recurring:
            first = min((first_charges[e] for e in series.expense_ids if e in first_charges), default=None)
            grown = series.previous_amount_minor and price_increase(
                series.previous_amount_minor, series.amount_minor, Decimal("1")
            )
            is_new = first is not None and first >= recent
            if not (is_new or (grown and series.last_charge >= recent)):
                continue
            facts = {
                "amount": _money(series.amount_minor, series.currency),
                "previous_amount": _money(series.previous_amount_minor, series.currency),
                "cadence": series.cadence,
                "occurrences": str(series.occurrences),
                "first_charge": first.isoformat() if first else "",
                "last_charge": series.last_charge.isoformat(),
                "next_due": series.next_due.isoformat(),
            }
            found.append(
                Insight(
                    "subscription",
                    series.currency,
                    facts,
                    merchant=series.payee,
                    weight=Decimal(series.amount_minor),
                    sentence="insight.subscription",
                    variables={
                        "merchant": series.payee,
                        "amount": {
                            "amount": _money(series.amount_minor, series.currency),
                            "currency": series.currency,
                        },
                        "change": "new" if is_new else "grown",
                        "cadence": series.cadence,
                    },
                )
            )
        return sorted(found, key=lambda insight: (-insight.weight, insight.merchant))
