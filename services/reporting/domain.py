"""Reporting rules in plain Python: periods in the user's calendar, how expense
changes replace reporting's copies and move rollup amounts, and how rollup rows
become reports.

Money stays integer minor units and percentages integer hundredths, so every
figure is exact; rounding is half-even, once, at the end."""

from __future__ import annotations

import calendar
import csv
import io
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum

from services.kit.domain.money import format_amount
from services.kit.domain.periods import Period
from services.ledger.replica import (
    CategoryTree,
    ExpenseChange,
    ExpenseKey,
    ExpenseLine,
    StoredExpense,
    replay,
)

# Merchant rollups are keyed on the trimmed name, cut to this length.
MERCHANT_KEY_LENGTH = 200
CSV_HEADER = ("expense_id", "spent_on", "amount", "currency", "category_id", "category", "merchant", "source")
# Cells starting with these are formulas to spreadsheet programs (OWASP CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


# ---------------------------------------------------------------- periods


def series_buckets(period: Period) -> list[tuple[date, date]]:
    """Days of a week, month or custom range; months of a quarter or year (inclusive ranges)."""
    if period.kind in ("quarter", "year"):
        year = period.start.year
        return [
            (date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1]))
            for month in range(period.start.month, period.end.month + 1)
        ]
    return [(day, day) for day in (period.start + timedelta(days=n) for n in range(period.days))]


def averaging_days(period: Period, today: date) -> int:
    """Days a daily average divides by: the days elapsed so far (today included)
    for the current period, every day of the period otherwise."""
    if period.contains(today):
        return (today - period.start).days + 1
    return period.days


# ---------------------------------------------------------------- arithmetic


def divide_half_even(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded half-even to an integer; denominator > 0."""
    quotient, remainder = divmod(numerator, denominator)
    twice = 2 * remainder
    if twice > denominator or (twice == denominator and quotient % 2 == 1):
        quotient += 1
    return quotient


def percent_hundredths(part: int, whole: int) -> int:
    """part / whole as a percentage in hundredths of a percent (12.50 % -> 1250)."""
    return divide_half_even(part * 10_000, whole)


def format_hundredths(value: int) -> str:
    sign = "-" if value < 0 else ""
    whole, fraction = divmod(abs(value), 100)
    return f"{sign}{whole}.{fraction:02d}"


@dataclass(frozen=True)
class Total:
    sum_minor: int = 0
    count: int = 0

    def __add__(self, other: Total) -> Total:
        return Total(self.sum_minor + other.sum_minor, self.count + other.count)


ZERO = Total()


# ---------------------------------------------------------------- expense lines and rollups


class Rollup(StrEnum):
    """The rollup tables: per (day, month or year, category, currency[, merchant])."""

    DAILY_CATEGORY = "daily_category"
    MONTHLY_CATEGORY = "monthly_category"
    YEARLY_CATEGORY = "yearly_category"
    DAILY_MERCHANT = "daily_merchant"
    MONTHLY_MERCHANT = "monthly_merchant"
    YEARLY_MERCHANT = "yearly_merchant"


# (day, or first day of the month or year; category_id, currency, merchant key or "" for
# category rollups)
RollupKey = tuple[date, str, str, str]
RollupDeltas = dict[Rollup, dict[RollupKey, Total]]


def rollup_keys(line: ExpenseLine) -> list[tuple[Rollup, RollupKey]]:
    category, currency, day = line.category_id, line.currency, line.spent_on
    month, year = day.replace(day=1), day.replace(month=1, day=1)
    keys = [
        (Rollup.DAILY_CATEGORY, (day, category, currency, "")),
        (Rollup.MONTHLY_CATEGORY, (month, category, currency, "")),
        (Rollup.YEARLY_CATEGORY, (year, category, currency, "")),
    ]
    merchant = merchant_key(line.merchant)
    if merchant:
        keys.append((Rollup.DAILY_MERCHANT, (day, category, currency, merchant)))
        keys.append((Rollup.MONTHLY_MERCHANT, (month, category, currency, merchant)))
        keys.append((Rollup.YEARLY_MERCHANT, (year, category, currency, merchant)))
    return keys


def merchant_key(merchant: str) -> str:
    return merchant.strip()[:MERCHANT_KEY_LENGTH]


def rollup_deltas(changes: Iterable[tuple[ExpenseLine | None, ExpenseLine | None]]) -> RollupDeltas:
    """What the rollups must change by when each `old` line becomes its `new` line
    (None: absent). Changes that cancel out leave no entry."""
    sums: dict[Rollup, dict[RollupKey, Total]] = {rollup: defaultdict(Total) for rollup in Rollup}
    for old, new in changes:
        if old is not None:
            for rollup, key in rollup_keys(old):
                sums[rollup][key] += Total(-old.amount_minor, -1)
        if new is not None:
            for rollup, key in rollup_keys(new):
                sums[rollup][key] += Total(new.amount_minor, 1)
    return {
        rollup: {key: total for key, total in keys.items() if total != ZERO} for rollup, keys in sums.items()
    }


@dataclass(frozen=True)
class CopyChanges:
    """What a run of expense changes does to reporting's copies and rollups."""

    # The last state of each copy the changes replaced.
    copies: dict[ExpenseKey, StoredExpense]
    # Per user, what the rollups change by (changes that cancel out leave nothing).
    deltas: dict[str, RollupDeltas]
    # Copies that were out of step with the ledger when replaced.
    out_of_step: list[ExpenseKey]


def apply_changes(
    stored: Mapping[ExpenseKey, StoredExpense], changes: Iterable[ExpenseChange]
) -> CopyChanges:
    """The changes replayed over the stored copies; each replacement moves the
    rollups from what the copy contributed to what the new state contributes."""
    result = replay(stored, changes)
    deltas = {user_id: rollup_deltas(moves) for user_id, moves in result.moves.items()}
    return CopyChanges(result.copies, deltas, result.out_of_step)


# ---------------------------------------------------------------- reports


@dataclass(frozen=True)
class CategoryShare:
    category_id: str
    name: str
    total: Total
    share_hundredths: int


@dataclass(frozen=True)
class SeriesPoint:
    start: date
    end: date
    total: Total


@dataclass(frozen=True)
class MerchantTotal:
    merchant: str
    total: Total


@dataclass(frozen=True)
class CurrencyReport:
    currency: str
    total: Total
    daily_average_minor: int
    previous: Total
    # None when the previous period had no spending in this currency.
    change_hundredths: int | None
    by_category: list[CategoryShare]
    series: list[SeriesPoint]
    top_merchants: list[MerchantTotal]


@dataclass(frozen=True)
class PeriodRows:
    """What storage read for one period (and the one before)."""

    # (currency, category_id) -> total, in the period.
    categories: Mapping[tuple[str, str], Total]
    # (currency, first day of a series bucket) -> total.
    buckets: Mapping[tuple[str, date], Total]
    # currency -> total, in the previous period.
    previous: Mapping[str, Total]
    # currency -> the top merchants, largest first.
    merchants: Mapping[str, list[MerchantTotal]]


def currency_order(currencies: Iterable[str], default_currency: str) -> list[str]:
    """The user's default currency first, then the others alphabetically."""
    return sorted(set(currencies), key=lambda code: (code != default_currency, code))


def grouped_by_currency(
    rows: Mapping[tuple[str, str], Total], group_of: Callable[[str], str]
) -> dict[str, dict[str, Total]]:
    groups: dict[str, dict[str, Total]] = defaultdict(lambda: defaultdict(Total))
    for (currency, category_id), total in rows.items():
        groups[currency][group_of(category_id)] += total
    return groups


def category_shares(groups: Mapping[str, Total], tree: CategoryTree) -> list[CategoryShare]:
    whole = sum(total.sum_minor for total in groups.values())
    shares = [
        CategoryShare(category_id, tree.name(category_id), total, percent_hundredths(total.sum_minor, whole))
        for category_id, total in groups.items()
        if total.count
    ]
    return sorted(
        shares, key=lambda share: (-share.total.sum_minor, share.name.casefold(), share.category_id)
    )


def change_hundredths(current: Total, previous: Total) -> int | None:
    if previous.sum_minor == 0:
        return None
    return percent_hundredths(current.sum_minor - previous.sum_minor, previous.sum_minor)


def currency_reports(
    period: Period,
    today: date,
    rows: PeriodRows,
    tree: CategoryTree,
    group_of: Callable[[str], str],
    default_currency: str,
) -> list[CurrencyReport]:
    """One block per currency spent in the period (none for a currency spent only in the
    one before: its previous_total would be the block's only figure); never summed across
    currencies."""
    groups = grouped_by_currency(rows.categories, group_of)
    buckets = series_buckets(period)
    days = averaging_days(period, today)
    reports = []
    for currency in currency_order(list(groups), default_currency):
        by_group = groups.get(currency, {})
        total = sum(by_group.values(), ZERO)
        previous = rows.previous.get(currency, ZERO)
        series = [
            SeriesPoint(start, end, rows.buckets.get((currency, start), ZERO)) for start, end in buckets
        ]
        reports.append(
            CurrencyReport(
                currency=currency,
                total=total,
                daily_average_minor=divide_half_even(total.sum_minor, days),
                previous=previous,
                change_hundredths=change_hundredths(total, previous),
                by_category=category_shares(by_group, tree),
                series=series,
                top_merchants=rows.merchants.get(currency, []),
            )
        )
    return reports


@dataclass(frozen=True)
class ChildTotal:
    """A direct child in a category report. Its total is given only when the
    report has a single currency (the per-currency figures are in by_category)."""

    category_id: str
    name: str
    count: int
    currency: str | None
    total: Total | None
    share_hundredths: int | None


def child_totals(tree: CategoryTree, root: str, reports: list[CurrencyReport]) -> list[ChildTotal]:
    per_currency = {report.currency: {s.category_id: s for s in report.by_category} for report in reports}
    single = reports[0].currency if len(reports) == 1 else None
    children = []
    for child in tree.children(root):
        count = sum(shares[child].total.count for shares in per_currency.values() if child in shares)
        share = per_currency[single].get(child) if single else None
        children.append(
            ChildTotal(
                category_id=child,
                name=tree.name(child),
                count=count,
                currency=single,
                total=(share.total if share else ZERO) if single else None,
                share_hundredths=(share.share_hundredths if share else 0) if single else None,
            )
        )
    return children


@dataclass(frozen=True)
class TrendPoint:
    period: Period
    currency: str
    total: Total
    by_category: list[CategoryShare]


def quarters_of_months(rows: Mapping[tuple[date, str, str], Total]) -> dict[tuple[date, str, str], Total]:
    """Monthly bucket totals summed into their quarters (keyed by the quarter's first day)."""
    quarters: dict[tuple[date, str, str], Total] = defaultdict(Total)
    for (month, currency, category_id), total in rows.items():
        quarters[(month.replace(month=3 * ((month.month - 1) // 3) + 1), currency, category_id)] += total
    return dict(quarters)


def currency_series(points: Iterable[TrendPoint]) -> dict[str, list[TrendPoint]]:
    """Per currency, its points from the first period with spending to the window's end:
    zeros inside that span, none before it."""
    series: dict[str, list[TrendPoint]] = defaultdict(list)
    for point in points:
        started = bool(series[point.currency]) or point.total.count > 0
        if started:
            series[point.currency].append(point)
    return {currency: found for currency, found in series.items() if found}


def trend_points(
    periods: list[Period],
    rows: Mapping[tuple[date, str, str], Total],
    tree: CategoryTree,
    default_currency: str,
) -> list[TrendPoint]:
    """One point per period and currency spent in any of the periods (zeros included,
    so charts have every period); just the default currency when nothing was spent.
    `rows`: (period start, currency, category_id) -> total."""
    top_level = {category_id: tree.top_level(category_id) for category_id in {key[2] for key in rows}}
    groups: dict[tuple[date, str], dict[str, Total]] = defaultdict(lambda: defaultdict(Total))
    for (start, currency, category_id), total in rows.items():
        groups[(start, currency)][top_level[category_id]] += total
    currencies = currency_order({currency for _, currency in groups} or {default_currency}, default_currency)
    points = []
    for period in periods:
        for currency in currencies:
            by_group = groups.get((period.start, currency), {})
            points.append(
                TrendPoint(period, currency, sum(by_group.values(), ZERO), category_shares(by_group, tree))
            )
    return points


# ---------------------------------------------------------------- export


def export_filename(period: Period) -> str:
    return f"expenses-{period.kind}-{period.start.isoformat()}.csv"


def safe_cell(text: str) -> str:
    return f"'{text}" if text.startswith(FORMULA_PREFIXES) else text


def expenses_csv(lines: Iterable[ExpenseLine], tree: CategoryTree) -> tuple[str, int]:
    """RFC 4180 CSV (header first) of the lines as given, and the number of rows."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_HEADER)
    rows = 0
    for line in lines:
        writer.writerow(
            (
                line.expense_id,
                line.spent_on.isoformat(),
                format_amount(line.amount_minor, line.currency),
                line.currency,
                tree.resolve(line.category_id),
                safe_cell(tree.path_name(line.category_id)),
                safe_cell(line.merchant),
                line.source,
            )
        )
        rows += 1
    return buffer.getvalue(), rows
