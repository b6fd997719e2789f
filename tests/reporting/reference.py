"""A ledger model for reporting tests, and the reports computed straight from its
expense list: the answer every rollup-based report must equal, exactly.

Deliberately independent of services.reporting's code (decimal.Decimal rounding,
its own period and tree walks), so a shared mistake cannot hide."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from expense.events.v1 import events_pb2
from expense.reporting.v1 import reporting_pb2
from services.kit.events.bus import make_envelope

WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
EXPONENTS = {"JPY": 0, "INR": 2, "USD": 2, "BHD": 3}


@dataclass(frozen=True)
class Expense:
    expense_id: str
    amount_minor: int
    currency: str
    spent_on: date
    category_id: str
    merchant: str
    source: str = "manual"
    version: int = 1

    def snapshot(self) -> events_pb2.ExpenseSnapshot:
        return events_pb2.ExpenseSnapshot(
            expense_id=self.expense_id,
            amount_minor=self.amount_minor,
            currency=self.currency,
            spent_on=self.spent_on.isoformat(),
            category_id=self.category_id,
            merchant=self.merchant,
            source=self.source,
            version=self.version,
        )


@dataclass
class Category:
    category_id: str
    name: str
    parent_id: str = ""
    deleted: bool = False


@dataclass
class LedgerModel:
    """What the ledger holds for one user, and the events it would publish."""

    user_id: str
    expenses: dict[str, Expense] = field(default_factory=dict)
    categories: dict[str, Category] = field(default_factory=dict)

    def _envelope(self, kind: str, payload: object) -> events_pb2.EventEnvelope:
        return make_envelope(kind, self.user_id, payload, "ledger")  # type: ignore[arg-type]

    def add_category(self, category: Category) -> events_pb2.EventEnvelope:
        self.categories[category.category_id] = category
        return self._category_event(category)

    def _category_event(self, category: Category, reassigned_to: str = "") -> events_pb2.EventEnvelope:
        payload = events_pb2.CategoryChanged(
            category_id=category.category_id,
            name=category.name,
            parent_id=category.parent_id,
            deleted=category.deleted,
            reassigned_to=reassigned_to,
        )
        return self._envelope("category.changed", payload)

    def create(self, expense: Expense) -> events_pb2.EventEnvelope:
        self.expenses[expense.expense_id] = expense
        return self._envelope("expense.created", events_pb2.ExpenseCreated(expense=expense.snapshot()))

    def update(self, expense_id: str, **changes: object) -> events_pb2.EventEnvelope:
        before = self.expenses[expense_id]
        after = replace(before, **changes, version=before.version + 1)  # type: ignore[arg-type]
        self.expenses[expense_id] = after
        payload = events_pb2.ExpenseUpdated(before=before.snapshot(), after=after.snapshot())
        return self._envelope("expense.updated", payload)

    def delete(self, expense_id: str) -> events_pb2.EventEnvelope:
        before = self.expenses.pop(expense_id)
        return self._envelope("expense.deleted", events_pb2.ExpenseDeleted(before=before.snapshot()))

    def delete_category(self, category_id: str, reassign_to: str, per_expense_events: bool) -> list:
        """Like the ledger: expenses and children move to reassign_to, then the
        category goes. Some ledgers also publish an update per moved expense."""
        events = []
        for child in [c for c in self.categories.values() if c.parent_id == category_id and not c.deleted]:
            child.parent_id = reassign_to
            events.append(self._category_event(child))
        for expense_id in [e.expense_id for e in self.expenses.values() if e.category_id == category_id]:
            moved = self.update(expense_id, category_id=reassign_to)
            if per_expense_events:
                events.append(moved)
        gone = self.categories[category_id]
        gone.deleted = True
        events.append(self._category_event(gone, reassigned_to=reassign_to))
        return events

    def live_categories(self) -> list[str]:
        return [c.category_id for c in self.categories.values() if not c.deleted]

    def subtree(self, category_id: str) -> set[str]:
        found = {category_id}
        while True:
            more = {c.category_id for c in self.categories.values() if c.parent_id in found} - found
            if not more:
                return found
            found |= more


# ------------------------------------------------------------ arithmetic and calendars


def money(minor: int, currency: str) -> str:
    exponent = EXPONENTS[currency]
    return f"{Decimal(minor).scaleb(-exponent):.{exponent}f}"


def rounded(numerator: int, denominator: int, places: int) -> Decimal:
    quantum = Decimal(1).scaleb(-places)
    return (Decimal(numerator) / Decimal(denominator)).quantize(quantum, rounding=ROUND_HALF_EVEN)


def percent(part: int, whole: int) -> str:
    return f"{rounded(part * 100, whole, 2):.2f}"


def rollup_starts(day: date) -> list[tuple[str, date]]:
    """Each rollup grain with the first day of its period holding `day`."""
    return [("day", day), ("month", day.replace(day=1)), ("year", day.replace(month=1, day=1))]


def period_of(kind: str, day: date, first_day_of_week: str) -> tuple[date, date]:
    if kind == "week":
        start = day - timedelta(days=(day.weekday() - WEEKDAYS.index(first_day_of_week)) % 7)
        return start, start + timedelta(days=6)
    if kind == "month":
        start = day.replace(day=1)
        following = (start + timedelta(days=32)).replace(day=1)
        return start, following - timedelta(days=1)
    return date(day.year, 1, 1), date(day.year, 12, 31)


def previous_of(kind: str, start: date, first_day_of_week: str) -> tuple[date, date]:
    return period_of(kind, start - timedelta(days=1), first_day_of_week)


def buckets_of(kind: str, start: date, end: date) -> list[tuple[date, date]]:
    if kind == "year":
        return [period_of("month", date(start.year, month, 1), "monday") for month in range(1, 13)]
    return [(start + timedelta(days=n), start + timedelta(days=n)) for n in range((end - start).days + 1)]


# ------------------------------------------------------------ reports


def _name(model: LedgerModel, category_id: str) -> str:
    if not category_id:
        return "Uncategorized"
    category = model.categories.get(category_id)
    return category.name if category else ""


def _top_level(model: LedgerModel, category_id: str) -> str:
    while category_id in model.categories and model.categories[category_id].parent_id:
        category_id = model.categories[category_id].parent_id
    return category_id


def _branch(model: LedgerModel, root: str, category_id: str) -> str:
    while category_id != root and model.categories[category_id].parent_id != root:
        category_id = model.categories[category_id].parent_id
    return category_id


def _in(expenses: list[Expense], start: date, end: date) -> list[Expense]:
    return [e for e in expenses if start <= e.spent_on <= end]


def _category_totals(model: LedgerModel, expenses: list[Expense], group) -> list[reporting_pb2.CategoryTotal]:  # type: ignore[no-untyped-def]
    sums: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for expense in expenses:
        entry = sums[group(expense.category_id)]
        entry[0] += expense.amount_minor
        entry[1] += 1
    whole = sum(entry[0] for entry in sums.values())
    currency = expenses[0].currency if expenses else "USD"
    rows = [
        reporting_pb2.CategoryTotal(
            category_id=category_id,
            name=_name(model, category_id),
            total=money(total, currency),
            count=count,
            share_percent=percent(total, whole),
        )
        for category_id, (total, count) in sums.items()
    ]
    return sorted(rows, key=lambda row: (-sums[row.category_id][0], row.name.casefold(), row.category_id))


def _currency_blocks(
    model: LedgerModel,
    expenses: list[Expense],
    kind: str,
    start: date,
    end: date,
    previous: tuple[date, date],
    today: date,
    default_currency: str,
    top_merchants: int,
    group,  # type: ignore[no-untyped-def]
) -> list[reporting_pb2.CurrencySummary]:
    current = _in(expenses, start, end)
    before = _in(expenses, *previous)
    # Only currencies spent in the period (issue 18: no block for one spent only before).
    currencies = sorted({e.currency for e in current}, key=lambda c: (c != default_currency, c))
    days = (today - start).days + 1 if start <= today <= end else (end - start).days + 1
    blocks = []
    for currency in currencies:
        mine = [e for e in current if e.currency == currency]
        total = sum(e.amount_minor for e in mine)
        previous_total = sum(e.amount_minor for e in before if e.currency == currency)
        merchants: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for expense in mine:
            key = expense.merchant.strip()[:200]
            if key:
                merchants[key][0] += expense.amount_minor
                merchants[key][1] += 1
        ranked = sorted(merchants.items(), key=lambda item: (-item[1][0], item[0]))[:top_merchants]
        blocks.append(
            reporting_pb2.CurrencySummary(
                currency=currency,
                total=money(total, currency),
                count=len(mine),
                daily_average=money(int(rounded(total, days, 0)), currency),
                previous_total=money(previous_total, currency),
                change_percent=percent(total - previous_total, previous_total) if previous_total else "",
                by_category=_category_totals(model, mine, group),
                series=[
                    reporting_pb2.SeriesPoint(
                        start=first.isoformat(),
                        end=last.isoformat(),
                        total=money(sum(e.amount_minor for e in _in(mine, first, last)), currency),
                        count=len(_in(mine, first, last)),
                    )
                    for first, last in buckets_of(kind, start, end)
                ],
                top_merchants=[
                    reporting_pb2.MerchantTotal(merchant=name, total=money(s, currency), count=n)
                    for name, (s, n) in ranked
                ],
            )
        )
    return blocks


@dataclass(frozen=True)
class Viewpoint:
    """Who asks, when and in which calendar."""

    today: date
    first_day_of_week: str
    default_currency: str
    top_merchants: int = 5


def summary(model: LedgerModel, kind: str, day: date, view: Viewpoint) -> reporting_pb2.Summary:
    start, end = period_of(kind, day, view.first_day_of_week)
    blocks = _currency_blocks(
        model,
        list(model.expenses.values()),
        kind,
        start,
        end,
        previous_of(kind, start, view.first_day_of_week),
        view.today,
        view.default_currency,
        view.top_merchants,
        lambda category_id: _top_level(model, category_id),
    )
    return reporting_pb2.Summary(
        period=kind, period_start=start.isoformat(), period_end=end.isoformat(), currencies=blocks
    )


def category_report(
    model: LedgerModel, category_id: str, kind: str, day: date, view: Viewpoint
) -> reporting_pb2.CategoryReport:
    start, end = period_of(kind, day, view.first_day_of_week)
    members = model.subtree(category_id)
    expenses = [e for e in model.expenses.values() if e.category_id in members]
    blocks = _currency_blocks(
        model,
        expenses,
        kind,
        start,
        end,
        previous_of(kind, start, view.first_day_of_week),
        view.today,
        view.default_currency,
        view.top_merchants,
        lambda member: _branch(model, category_id, member),
    )
    children = sorted(
        (c for c in model.categories.values() if c.parent_id == category_id and not c.deleted),
        key=lambda c: (c.name.casefold(), c.category_id),
    )
    child_rows = []
    for child in children:
        row = reporting_pb2.CategoryTotal(category_id=child.category_id, name=child.name)
        for block in blocks:
            for entry in block.by_category:
                if entry.category_id == child.category_id:
                    row.count += entry.count
                    if len(blocks) == 1:
                        row.total, row.share_percent = entry.total, entry.share_percent
        if len(blocks) == 1 and not row.total:
            row.total, row.share_percent = money(0, blocks[0].currency), "0.00"
        child_rows.append(row)
    return reporting_pb2.CategoryReport(
        category_id=category_id,
        name=model.categories[category_id].name,
        period=kind,
        period_start=start.isoformat(),
        period_end=end.isoformat(),
        currencies=blocks,
        children=child_rows,
    )


def trend(model: LedgerModel, kind: str, count: int, view: Viewpoint) -> reporting_pb2.Trend:
    periods = [period_of(kind, view.today, view.first_day_of_week)]
    while len(periods) < count:
        periods.append(previous_of(kind, periods[-1][0], view.first_day_of_week))
    periods.reverse()
    window = [e for e in model.expenses.values() if periods[0][0] <= e.spent_on <= periods[-1][1]]
    currencies = sorted(
        {e.currency for e in window} or {view.default_currency}, key=lambda c: (c != view.default_currency, c)
    )
    points = []
    for start, end in periods:
        for currency in currencies:
            mine = [e for e in _in(window, start, end) if e.currency == currency]
            points.append(
                reporting_pb2.TrendPoint(
                    period_start=start.isoformat(),
                    period_end=end.isoformat(),
                    currency=currency,
                    total=money(sum(e.amount_minor for e in mine), currency),
                    count=len(mine),
                    by_category=_category_totals(model, mine, lambda c: _top_level(model, c)),
                )
            )
    # Per currency: from the first period it was spent in to the window's end (issue 18).
    series = []
    for currency in currencies:
        own = [point for point in points if point.currency == currency]
        first = next((i for i, point in enumerate(own) if point.count), None)
        if first is not None:
            series.append(reporting_pb2.CurrencyTrend(currency=currency, points=own[first:]))
    return reporting_pb2.Trend(period=kind, points=points, series=series)


def _path(model: LedgerModel, category_id: str) -> str:
    names = []
    current = category_id
    while current in model.categories:
        names.append(model.categories[current].name)
        current = model.categories[current].parent_id
    return " > ".join(reversed(names)) if names else _name(model, category_id)


def _cell(text: str) -> str:
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def export_csv(model: LedgerModel, kind: str, day: date, first_day_of_week: str) -> tuple[str, int]:
    start, end = period_of(kind, day, first_day_of_week)
    rows = sorted(_in(list(model.expenses.values()), start, end), key=lambda e: (e.spent_on, e.expense_id))
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        ["expense_id", "spent_on", "amount", "currency", "category_id", "category", "merchant", "source"]
    )
    for e in rows:
        writer.writerow(
            [
                e.expense_id,
                e.spent_on.isoformat(),
                money(e.amount_minor, e.currency),
                e.currency,
                e.category_id,
                _cell(_path(model, e.category_id)),
                _cell(e.merchant),
                e.source,
            ]
        )
    return buffer.getvalue(), len(rows)
