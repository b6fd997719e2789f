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
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from services.kit.domain.money import format_amount

PERIOD_KINDS = ("week", "month", "year")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
DEFAULT_FIRST_DAY_OF_WEEK = "monday"
UNCATEGORIZED_NAME = "Uncategorized"
# Parent links come from events; a bound keeps a corrupt cycle from looping forever.
MAX_CATEGORY_DEPTH = 32
# Merchant rollups are keyed on the trimmed name, cut to this length.
MERCHANT_KEY_LENGTH = 200
CSV_HEADER = ("expense_id", "spent_on", "amount", "currency", "category_id", "category", "merchant", "source")
# Cells starting with these are formulas to spreadsheet programs (OWASP CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


# ---------------------------------------------------------------- periods


@dataclass(frozen=True)
class Period:
    kind: str
    start: date
    end: date  # inclusive

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def contains(self, day: date) -> bool:
        return self.start <= day <= self.end

    def previous(self) -> Period:
        if self.kind == "week":
            return Period("week", self.start - timedelta(days=7), self.end - timedelta(days=7))
        return period_containing(self.kind, self.start - timedelta(days=1))


def period_containing(kind: str, day: date, first_day_of_week: str = DEFAULT_FIRST_DAY_OF_WEEK) -> Period:
    if kind == "week":
        offset = (day.weekday() - weekday_index(first_day_of_week)) % 7
        start = day - timedelta(days=offset)
        return Period(kind, start, start + timedelta(days=6))
    if kind == "month":
        last = calendar.monthrange(day.year, day.month)[1]
        return Period(kind, day.replace(day=1), day.replace(day=last))
    if kind == "year":
        return Period(kind, date(day.year, 1, 1), date(day.year, 12, 31))
    raise ValueError(f"unknown period {kind!r}")


def weekday_index(first_day_of_week: str) -> int:
    name = first_day_of_week.strip().lower()
    return WEEKDAYS.index(name) if name in WEEKDAYS else 0


def last_periods(kind: str, today: date, count: int, first_day_of_week: str) -> list[Period]:
    """The `count` periods ending with the one containing today, oldest first."""
    periods = [period_containing(kind, today, first_day_of_week)]
    while len(periods) < count:
        periods.append(periods[-1].previous())
    return periods[::-1]


def series_buckets(period: Period) -> list[tuple[date, date]]:
    """Days of a week or month; months of a year (inclusive ranges)."""
    if period.kind == "year":
        return [
            (
                date(period.start.year, month, 1),
                date(period.start.year, month, calendar.monthrange(period.start.year, month)[1]),
            )
            for month in range(1, 13)
        ]
    return [(day, day) for day in (period.start + timedelta(days=n) for n in range(period.days))]


def today_in(time_zone: str, now: datetime) -> date:
    """The calendar date at `now` where the user lives (UTC when the zone is unknown)."""
    try:
        zone = ZoneInfo(time_zone) if time_zone else ZoneInfo("UTC")
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    return now.astimezone(zone).date()


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


@dataclass(frozen=True)
class ExpenseLine:
    """An expense as reporting sees it (from ledger events or a ledger rebuild)."""

    expense_id: str
    amount_minor: int
    currency: str
    spent_on: date
    category_id: str
    merchant: str
    source: str = ""
    version: int = 0

    @property
    def month(self) -> date:
        return self.spent_on.replace(day=1)

    @property
    def year(self) -> date:
        return self.spent_on.replace(month=1, day=1)

    def rollup_keys(self) -> list[tuple[Rollup, RollupKey]]:
        category, currency = self.category_id, self.currency
        keys = [
            (Rollup.DAILY_CATEGORY, (self.spent_on, category, currency, "")),
            (Rollup.MONTHLY_CATEGORY, (self.month, category, currency, "")),
            (Rollup.YEARLY_CATEGORY, (self.year, category, currency, "")),
        ]
        merchant = merchant_key(self.merchant)
        if merchant:
            keys.append((Rollup.DAILY_MERCHANT, (self.spent_on, category, currency, merchant)))
            keys.append((Rollup.MONTHLY_MERCHANT, (self.month, category, currency, merchant)))
            keys.append((Rollup.YEARLY_MERCHANT, (self.year, category, currency, merchant)))
        return keys


def merchant_key(merchant: str) -> str:
    return merchant.strip()[:MERCHANT_KEY_LENGTH]


def rollup_deltas(changes: Iterable[tuple[ExpenseLine | None, ExpenseLine | None]]) -> RollupDeltas:
    """What the rollups must change by when each `old` line becomes its `new` line
    (None: absent). Changes that cancel out leave no entry."""
    sums: dict[Rollup, dict[RollupKey, Total]] = {rollup: defaultdict(Total) for rollup in Rollup}
    for old, new in changes:
        if old is not None:
            for rollup, key in old.rollup_keys():
                sums[rollup][key] += Total(-old.amount_minor, -1)
        if new is not None:
            for rollup, key in new.rollup_keys():
                sums[rollup][key] += Total(new.amount_minor, 1)
    return {
        rollup: {key: total for key, total in keys.items() if total != ZERO} for rollup, keys in sums.items()
    }


@dataclass(frozen=True)
class StoredExpense:
    """reporting's copy of an expense; a deleted one stays as a tombstone."""

    line: ExpenseLine
    deleted: bool = False


def supersedes(incoming_version: int, stored: StoredExpense | None) -> bool:
    """Whether a ledger snapshot replaces what reporting holds. Ledger versions grow
    by one per change, so a late, older snapshot (a redelivery after a newer one)
    changes nothing. Version 0 means unknown (a rebuilt row): arrival order decides,
    except that a deletion stays final."""
    if stored is None:
        return True
    if stored.deleted:
        return incoming_version > stored.line.version
    if incoming_version == 0 or stored.line.version == 0:
        return True
    return incoming_version > stored.line.version


# (user_id, expense_id): which copy an expense change replaces.
ExpenseKey = tuple[str, str]


@dataclass(frozen=True)
class ExpenseChange:
    """What one ledger event says about an expense."""

    user_id: str
    expense_id: str
    # The new state; None for a deletion.
    after: ExpenseLine | None
    # The state the ledger changed (None for a creation).
    before: ExpenseLine | None
    version: int

    @property
    def key(self) -> ExpenseKey:
        return (self.user_id, self.expense_id)


def live_line(stored: StoredExpense | None) -> ExpenseLine | None:
    """What a copy contributes to the rollups (nothing once deleted)."""
    return stored.line if stored is not None and not stored.deleted else None


def replaced_copy(stored: StoredExpense | None, change: ExpenseChange) -> StoredExpense | None:
    """The copy once `change` applies; None when it changes nothing (reporting
    already holds this or a newer state, or a deletion of nothing it knows)."""
    if not supersedes(change.version, stored):
        return None
    if change.after is not None:
        return StoredExpense(change.after)
    # Kept as a tombstone, so a late copy of an older event cannot bring it back.
    tombstone = change.before or live_line(stored)
    if tombstone is None:
        return None
    known_version = stored.line.version if stored is not None else 0
    return StoredExpense(replace(tombstone, version=max(change.version, known_version)), deleted=True)


def out_of_step(stored: StoredExpense | None, change: ExpenseChange) -> bool:
    """Whether the copy differs from the state the ledger says it changed."""
    current = live_line(stored)
    if current is None or change.before is None:
        return False
    before = change.before
    # Not the category: the ledger moves a deleted category's expenses without an
    # event per expense (reports follow category.changed's reassigned_to instead).
    return (current.amount_minor, current.currency, current.spent_on, current.merchant) != (
        before.amount_minor,
        before.currency,
        before.spent_on,
        before.merchant,
    )


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
    """The changes applied in order over the stored copies, each seeing what the
    ones before it left (so a creation and an update in one batch end right).
    Each replacement moves the rollups from what the copy contributed to what
    the new state contributes."""
    copies: dict[ExpenseKey, StoredExpense] = {}
    moves: dict[str, list[tuple[ExpenseLine | None, ExpenseLine | None]]] = defaultdict(list)
    stale: list[ExpenseKey] = []
    for change in changes:
        copy = copies.get(change.key, stored.get(change.key))
        replacement = replaced_copy(copy, change)
        if replacement is None:
            continue
        if out_of_step(copy, change):
            stale.append(change.key)
        moves[change.user_id].append((live_line(copy), live_line(replacement)))
        copies[change.key] = replacement
    deltas = {user_id: rollup_deltas(user_moves) for user_id, user_moves in moves.items()}
    return CopyChanges(copies, deltas, stale)


# ---------------------------------------------------------------- categories


@dataclass(frozen=True)
class CategoryInfo:
    category_id: str
    name: str
    parent_id: str = ""
    deleted: bool = False
    # Where a deleted category's expenses went.
    reassigned_to: str = ""


class CategoryTree:
    """The user's categories as reporting knows them from category events."""

    def __init__(self, categories: Iterable[CategoryInfo]) -> None:
        self._nodes = {category.category_id: category for category in categories}
        self._children: dict[str, list[str]] = defaultdict(list)
        for category in self._nodes.values():
            if category.parent_id:
                self._children[category.parent_id].append(category.category_id)

    def __contains__(self, category_id: object) -> bool:
        node = self._nodes.get(category_id) if isinstance(category_id, str) else None
        return node is not None and not node.deleted

    def name(self, category_id: str) -> str:
        if not category_id:
            return UNCATEGORIZED_NAME
        node = self._nodes.get(category_id)
        return node.name if node else ""

    def path_name(self, category_id: str) -> str:
        """ "Food > Groceries" for a nested category."""
        names = [self.name(ancestor) for ancestor in reversed(self._ancestry(category_id))]
        return " > ".join(name for name in names if name) or self.name(category_id)

    def _ancestry(self, category_id: str) -> list[str]:
        """The (live) category, its parent, ... up to its top-level category."""
        chain = [self.resolve(category_id)]
        for _ in range(MAX_CATEGORY_DEPTH):
            node = self._nodes.get(chain[-1])
            if node is None or not node.parent_id or node.parent_id in chain:
                break
            chain.append(node.parent_id)
        return chain

    def top_level(self, category_id: str) -> str:
        return self._ancestry(category_id)[-1]

    def branch_under(self, root: str, category_id: str) -> str:
        """The direct child of root that category_id lies under (root for root itself)."""
        chain = self._ancestry(category_id)
        if root not in chain:
            return category_id
        position = chain.index(root)
        return chain[position - 1] if position > 0 else root

    def children(self, category_id: str) -> list[str]:
        live = [child for child in self._children.get(category_id, []) if child in self]
        return sorted(live, key=lambda child: (self.name(child).casefold(), child))

    def members(self, category_id: str) -> set[str]:
        """The ids whose expenses count for this category: itself, its descendants,
        and deleted categories whose expenses were reassigned into them."""
        subtree = self.subtree(category_id)
        return {known for known in self._nodes if self.resolve(known) in subtree} | {category_id}

    def subtree(self, category_id: str) -> set[str]:
        """The category and every category below it (deleted ones too)."""
        found = {category_id}
        frontier = [category_id]
        for _ in range(MAX_CATEGORY_DEPTH):
            frontier = [
                child for parent in frontier for child in self._children.get(parent, []) if child not in found
            ]
            if not frontier:
                break
            found.update(frontier)
        return found

    def resolve(self, category_id: str) -> str:
        """The live category that now holds a deleted category's expenses. Rollups
        keep the id an expense was recorded with; reports follow reassignments."""
        current = category_id
        for _ in range(MAX_CATEGORY_DEPTH):
            node = self._nodes.get(current)
            if node is None or not node.deleted or not node.reassigned_to:
                return current
            current = node.reassigned_to
        return current


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
    """One block per currency spent in the period or the one before; never summed across currencies."""
    groups = grouped_by_currency(rows.categories, group_of)
    buckets = series_buckets(period)
    days = averaging_days(period, today)
    reports = []
    for currency in currency_order([*groups, *rows.previous], default_currency):
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
