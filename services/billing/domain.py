"""Billing rules in plain Python: budgets and their periods, rollover and status,
which alerts a state of spending or a bill's calendar calls for, and their
dedupe keys (one alert per rule and occurrence, whatever the repetition).

Money stays integer minor units and percentages integer tenths, so every figure
is exact; the projection rounds half-even once."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import Decimal

from services.kit.domain.money import format_amount, to_decimal
from services.kit.domain.periods import Period, period_containing
from services.ledger.replica import Move

RULE_TYPES = (
    "budget_threshold",
    "projected_overspend",
    "large_expense",
    "duplicate_charge",
    "bill_due",
    "bill_overdue",
    "price_increase",
)
RULE_DESCRIPTIONS = {
    "budget_threshold": "Spending in a budget's period crossed one of its thresholds.",
    "projected_overspend": "At the current pace a budget will be overspent by the end of its period.",
    "large_expense": "An expense far above what its category usually costs.",
    "duplicate_charge": "The same merchant charged the same amount twice within a short window.",
    "bill_due": "A bill is due in its reminder window.",
    "bill_overdue": "A bill's due date passed without a payment.",
    "price_increase": "A subscription charged more than before.",
}
BUDGET_PERIODS = ("week", "month", "year")


# ---------------------------------------------------------------- budgets


@dataclass(frozen=True)
class Budget:
    budget_id: str
    user_id: str
    # "" for all spending.
    category_id: str
    period: str
    currency: str
    rollover: bool
    thresholds: tuple[int, ...]
    start_date: date
    # (first day of the first period it applies to, amount), ascending.
    amounts: tuple[tuple[date, int], ...]
    arming: int
    version: int
    created_at: datetime
    updated_at: datetime

    @property
    def etag(self) -> str:
        return f'W/"{self.version}"'

    @property
    def current_amount(self) -> int:
        return self.amounts[-1][1]

    def amount_for(self, period: Period) -> int:
        """The amount of the latest change that applies to the period."""
        chosen = self.amounts[0][1]
        for start, amount in self.amounts:
            if start <= period.start:
                chosen = amount
        return chosen

    def first_period(self, first_day_of_week: str) -> Period:
        return period_containing(self.period, self.start_date, first_day_of_week)

    def with_amount(self, amount: int, period: Period) -> Budget:
        """A new amount from `period` on (earlier periods keep theirs); re-arms the
        threshold alerts."""
        kept = tuple((start, value) for start, value in self.amounts if start < period.start)
        return replace(self, amounts=(*kept, (period.start, amount)), arming=self.arming + 1)


@dataclass(frozen=True)
class PeriodFigures:
    """One period of a budget: its amount, what rollover carried in, what was spent."""

    period: Period
    amount: int
    carried: int
    spent: int

    @property
    def budgeted(self) -> int:
        return self.amount + self.carried

    @property
    def remaining(self) -> int:
        return self.budgeted - self.spent


# Per budget, what its spending rollup changes by: (period start, currency) -> (sum, count).
BudgetDeltas = dict[tuple[date, str], tuple[int, int]]


def budget_deltas(
    budget: Budget, members: set[str] | None, first_day_of_week: str, moves: Iterable[Move]
) -> BudgetDeltas:
    """How each (old, new) move of an expense changes the budget's rollup: lines in its
    categories (None: all), from its first period on, per period and currency."""
    first_start = budget.first_period(first_day_of_week).start
    sums: dict[tuple[date, str], list[int]] = defaultdict(lambda: [0, 0])
    for old, new in moves:
        for line, sign in ((old, -1), (new, 1)):
            if line is None or (members is not None and line.category_id not in members):
                continue
            start = period_containing(budget.period, line.spent_on, first_day_of_week).start
            if start >= first_start:
                entry = sums[(start, line.currency)]
                entry[0] += sign * line.amount_minor
                entry[1] += sign
    return {key: (total, count) for key, (total, count) in sums.items() if total or count}


def budget_rollup(
    budget: Budget, first_day_of_week: str, daily: Iterable[tuple[date, str, int, int]]
) -> BudgetDeltas:
    """The budget's rollup from daily (day, currency, sum, count) rows of its categories."""
    first_start = budget.first_period(first_day_of_week).start
    sums: dict[tuple[date, str], list[int]] = defaultdict(lambda: [0, 0])
    for day, currency, total, count in daily:
        start = period_containing(budget.period, day, first_day_of_week).start
        if start >= first_start:
            entry = sums[(start, currency)]
            entry[0] += total
            entry[1] += count
    return {key: (total, count) for key, (total, count) in sums.items()}


def budget_periods(
    budget: Budget, first_day_of_week: str, until: Period, spent_in: Mapping[date, int]
) -> list[PeriodFigures]:
    """Every period from the budget's first to `until`, oldest first, with rollover
    carrying each remainder (negative when overspent) into the next. `spent_in`: the
    budget currency's spending per period start."""
    figures: list[PeriodFigures] = []
    period = budget.first_period(first_day_of_week)
    carried = 0
    while period.start <= until.start:
        spent = spent_in.get(period.start, 0)
        figure = PeriodFigures(period, budget.amount_for(period), carried if budget.rollover else 0, spent)
        figures.append(figure)
        carried = figure.remaining
        period = period.following()
    return figures


def periods_between(kind: str, start: date, end: date) -> int:
    """How many periods of a kind start in [start, end), both being period starts."""
    if end <= start:
        return 0
    if kind == "week":
        return (end - start).days // 7
    if kind == "month":
        return (end.year - start.year) * 12 + end.month - start.month
    return end.year - start.year


def carried_into(budget: Budget, first_day_of_week: str, period: Period, spent_before: int) -> int:
    """What rollover carries into `period`: the amounts of every earlier period less what
    was spent in them (the chain of remainders budget_periods walks, summed at once). Each
    amount applies from its period start until the next amount's."""
    first = budget.first_period(first_day_of_week).start
    starts = [max(start, first) for start, _ in budget.amounts]
    ends = [*starts[1:], period.start]
    budgeted = sum(
        amount * periods_between(budget.period, start, min(end, period.start))
        for (_, amount), start, end in zip(budget.amounts, starts, ends, strict=True)
    )
    return budgeted - spent_before


def tenths_percent(part: int, whole: int) -> int:
    """part / whole in tenths of a percent, rounded half-even; whole > 0."""
    return int((Decimal(part) * 1000 / Decimal(whole)).to_integral_value())


def format_tenths(value: int) -> str:
    sign = "-" if value < 0 else ""
    whole, fraction = divmod(abs(value), 10)
    return f"{sign}{whole}.{fraction}"


@dataclass(frozen=True)
class BudgetStatus:
    figures: PeriodFigures
    # Spending at the end of the period at the pace so far.
    projected: int
    # Spending in other currencies in the budget's categories.
    other_currencies: dict[str, int] = field(default_factory=dict)

    @property
    def percent_tenths(self) -> int | None:
        """spent / budgeted; None when nothing is budgeted (a rollover can carry an
        overspend past the period's amount): no percentage of zero or less means anything."""
        budgeted = self.figures.budgeted
        if budgeted <= 0:
            return None
        return tenths_percent(self.figures.spent, budgeted)

    @property
    def on_track(self) -> bool:
        return self.projected <= self.figures.budgeted


def projection(spent: int, period: Period, today: date) -> int:
    """Spending at the end of the period if it goes on at the pace so far."""
    if today > period.end:
        return spent
    elapsed = max((today - period.start).days + 1, 1)
    return int((Decimal(spent) * period.days / elapsed).to_integral_value())


def budget_status(figures: PeriodFigures, today: date, other_currencies: dict[str, int]) -> BudgetStatus:
    return BudgetStatus(figures, projection(figures.spent, figures.period, today), other_currencies)


def crossed_thresholds(budget: Budget, status: BudgetStatus) -> list[int]:
    """The thresholds spending has reached in the period: every one once anything is
    spent against a budgeted figure of zero or less."""
    percent = status.percent_tenths
    if percent is None:
        return list(budget.thresholds) if status.figures.spent > 0 else []
    return [threshold for threshold in budget.thresholds if percent >= threshold * 10]


# ---------------------------------------------------------------- the spend view

# (user, day, category, currency) -> (sum, count) to add.
SpendDeltas = dict[tuple[str, date, str, str], tuple[int, int]]


def spend_deltas(moves: dict[str, list[Move]]) -> SpendDeltas:
    """What daily_spend changes by when each old line becomes its new one."""
    deltas: dict[tuple[str, date, str, str], list[int]] = defaultdict(lambda: [0, 0])
    for user_id, user_moves in moves.items():
        for old, new in user_moves:
            if old is not None:
                entry = deltas[(user_id, old.spent_on, old.category_id, old.currency)]
                entry[0] -= old.amount_minor
                entry[1] -= 1
            if new is not None:
                entry = deltas[(user_id, new.spent_on, new.category_id, new.currency)]
                entry[0] += new.amount_minor
                entry[1] += 1
    return {key: (total, count) for key, (total, count) in deltas.items() if total or count}


# ---------------------------------------------------------------- bills


@dataclass(frozen=True)
class Bill:
    bill_id: str
    user_id: str
    payee: str
    amount_minor: int
    currency: str
    category_id: str
    recurrence: str
    first_due: date
    remind_days_before: int
    autopay: bool
    version: int
    created_at: datetime
    updated_at: datetime

    @property
    def etag(self) -> str:
        return f'W/"{self.version}"'


@dataclass(frozen=True)
class Settlement:
    """A paid or skipped occurrence."""

    due_on: date
    # "paid" or "skipped".
    status: str
    expense_id: str = ""
    amount_minor: int = 0


@dataclass(frozen=True)
class OccurrenceView:
    due_on: date
    amount_minor: int
    status: str
    expense_id: str


def occurrence_status(due_on: date, settlement: Settlement | None, today: date, grace_days: int) -> str:
    if settlement is not None:
        return settlement.status
    return "overdue" if today > due_on + timedelta(days=grace_days) else "upcoming"


def first_open(due_dates: Iterable[date], settled: Collection[date]) -> date | None:
    """A bill's next_due: its earliest occurrence not paid or skipped, however old. The
    walk stops at the first date missing from `settled`, so it takes at most one step
    more than the bill has settlements; None when a finite rule is all settled."""
    return next((due_on for due_on in due_dates if due_on not in settled), None)


def occurrence_views(
    bill: Bill,
    due_dates: Iterable[date],
    settlements: Mapping[date, Settlement],
    today: date,
    grace_days: int,
) -> list[OccurrenceView]:
    views = []
    for due_on in due_dates:
        settlement = settlements.get(due_on)
        views.append(
            OccurrenceView(
                due_on,
                settlement.amount_minor if settlement and settlement.status == "paid" else bill.amount_minor,
                occurrence_status(due_on, settlement, today, grace_days),
                settlement.expense_id if settlement else "",
            )
        )
    return views


# ---------------------------------------------------------------- alerts


@dataclass(frozen=True)
class Alert:
    alert_id: str
    user_id: str
    type: str
    severity: str
    title: str
    details: dict[str, str]
    dedupe_key: str
    created_at: datetime
    acknowledged_at: datetime | None = None


@dataclass(frozen=True)
class AlertDraft:
    """An alert a rule calls for, before it gets an id and a time."""

    type: str
    title: str
    details: dict[str, str]
    dedupe_key: str
    severity: str = ""
    # False: stored (its rule has fired for the occurrence) but not told to the user, e.g.
    # the lower thresholds one expense passes together with a higher one.
    announce: bool = True


def money(minor: int, currency: str) -> str:
    return f"{format_amount(minor, currency)} {currency}"


def threshold_spent(status: BudgetStatus, currency: str) -> str:
    """ "85.0% of 10000.00 INR spent", or with nothing budgeted (a carried overspend past
    the amount) what was spent against what was budgeted, no percentage."""
    figures = status.figures
    if status.percent_tenths is None:
        return f"{money(figures.spent, currency)} spent, {money(figures.budgeted, currency)} budgeted"
    return f"{format_tenths(status.percent_tenths)}% of {money(figures.budgeted, currency)} spent"


def threshold_alerts(
    budget: Budget, budget_name: str, status: BudgetStatus, critical_percent: int
) -> list[AlertDraft]:
    """One per threshold reached, keyed by budget, period, arming and threshold: a
    spend that drops and rises again in the period finds its key taken. Only the highest
    is announced: a spend passing 50 % and 80 % at once is one message, not two."""
    figures = status.figures
    drafts = []
    crossed = crossed_thresholds(budget, status)
    # The templates want a number: past a budgeted figure of zero or less, 1000 (the
    # highest threshold a budget may name) rather than no percent at all.
    percent = format_tenths(status.percent_tenths if status.percent_tenths is not None else 10_000)
    for threshold in crossed:
        drafts.append(
            AlertDraft(
                type="budget_threshold",
                title=f"{budget_name}: {threshold_spent(status, budget.currency)} ({threshold}% threshold)",
                details={
                    "budget_id": budget.budget_id,
                    "budget": budget_name,
                    "threshold": str(threshold),
                    "percent": percent,
                    "spent": format_amount(figures.spent, budget.currency),
                    "budgeted": format_amount(figures.budgeted, budget.currency),
                    "currency": budget.currency,
                    "period_start": figures.period.start.isoformat(),
                    "period_end": figures.period.end.isoformat(),
                },
                dedupe_key=f"budget_threshold:{budget.budget_id}:{figures.period.start}:{budget.arming}:{threshold}",
                severity="critical" if threshold >= critical_percent else "",
                announce=threshold == max(crossed),
            )
        )
    return drafts


def projected_overspend_alert(
    budget: Budget, budget_name: str, status: BudgetStatus, today: date, min_elapsed_days: int
) -> AlertDraft | None:
    """The "before" alert: the projection passes the budget while spending is still under it."""
    figures = status.figures
    elapsed = (today - figures.period.start).days + 1
    if elapsed < min_elapsed_days or not figures.period.contains(today):
        return None
    if status.on_track or figures.spent >= figures.budgeted or figures.budgeted <= 0:
        return None
    return AlertDraft(
        type="projected_overspend",
        title=f"{budget_name}: on pace to spend {money(status.projected, budget.currency)} "
        f"of {money(figures.budgeted, budget.currency)} by {figures.period.end}",
        details={
            "budget_id": budget.budget_id,
            "budget": budget_name,
            "spent": format_amount(figures.spent, budget.currency),
            "projected": format_amount(status.projected, budget.currency),
            "budgeted": format_amount(figures.budgeted, budget.currency),
            "currency": budget.currency,
            "period_end": figures.period.end.isoformat(),
        },
        dedupe_key=f"projected_overspend:{budget.budget_id}:{figures.period.start}:{budget.arming}",
    )


def median(values: Sequence[int]) -> Decimal:
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return Decimal(ordered[middle])
    return (Decimal(ordered[middle - 1]) + Decimal(ordered[middle])) / 2


def is_large(
    amount_minor: int,
    currency: str,
    history: Sequence[int],
    multiplier: Decimal,
    min_history: int,
    absolute: Mapping[str, Decimal],
) -> bool:
    """Above multiplier x the median of the category's recent amounts (given enough
    of them), or above the currency's absolute limit."""
    limit = absolute.get(currency)
    if limit is not None and to_decimal(amount_minor, currency) > limit:
        return True
    return len(history) >= min_history and amount_minor > median(history) * multiplier


def large_expense_alert(
    user_id: str,
    expense_id: str,
    amount_minor: int,
    currency: str,
    merchant: str,
    category: str,
    typical: int,
) -> AlertDraft:
    return AlertDraft(
        type="large_expense",
        title=f"Large expense: {money(amount_minor, currency)}" + (f" at {merchant}" if merchant else ""),
        details={
            "expense_id": expense_id,
            "amount": format_amount(amount_minor, currency),
            "currency": currency,
            "merchant": merchant,
            "category": category,
            "typical": format_amount(typical, currency),
        },
        dedupe_key=f"large_expense:{user_id}:{expense_id}",
    )


def duplicate_alert(
    user_id: str,
    expense_id: str,
    others: Sequence[str],
    amount_minor: int,
    currency: str,
    merchant: str,
    day: date,
) -> AlertDraft:
    """Keyed by the pair's later expense (ids grow with time): one alert per pair."""
    first = min(others)
    return AlertDraft(
        type="duplicate_charge",
        title=f"Possible duplicate: {merchant} charged {money(amount_minor, currency)} twice",
        details={
            "expense_id": expense_id,
            "duplicate_of": first,
            "amount": format_amount(amount_minor, currency),
            "currency": currency,
            "merchant": merchant,
            "spent_on": day.isoformat(),
        },
        dedupe_key=f"duplicate_charge:{user_id}:{max(expense_id, first)}",
    )


def bill_due_alert(bill: Bill, due_on: date) -> AlertDraft:
    return AlertDraft(
        type="bill_due",
        title=f"{bill.payee}: {money(bill.amount_minor, bill.currency)} due on {due_on}",
        details=_bill_details(bill, due_on),
        dedupe_key=f"bill_due:{bill.bill_id}:{due_on}",
    )


def bill_overdue_alert(bill: Bill, due_on: date) -> AlertDraft:
    return AlertDraft(
        type="bill_overdue",
        title=f"{bill.payee}: {money(bill.amount_minor, bill.currency)} was due on {due_on} and is not paid",
        details=_bill_details(bill, due_on),
        dedupe_key=f"bill_overdue:{bill.bill_id}:{due_on}",
    )


def price_increase_alert(bill: Bill, previous_minor: int, new_minor: int, expense_id: str) -> AlertDraft:
    return AlertDraft(
        type="price_increase",
        title=f"{bill.payee} now costs {money(new_minor, bill.currency)} "
        f"(was {money(previous_minor, bill.currency)})",
        details={
            "bill_id": bill.bill_id,
            "payee": bill.payee,
            "previous_amount": format_amount(previous_minor, bill.currency),
            "amount": format_amount(new_minor, bill.currency),
            "currency": bill.currency,
            "expense_id": expense_id,
        },
        dedupe_key=f"price_increase:{bill.bill_id}:{expense_id}",
    )


def _bill_details(bill: Bill, due_on: date) -> dict[str, str]:
    return {
        "bill_id": bill.bill_id,
        "payee": bill.payee,
        "amount": format_amount(bill.amount_minor, bill.currency),
        "currency": bill.currency,
        "due_date": due_on.isoformat(),
        "autopay": "true" if bill.autopay else "false",
    }


def reminder_due(bill: Bill, due_on: date, today: date) -> bool:
    """Inside the reminder window (and not past due: that is overdue's business)."""
    if bill.remind_days_before <= 0 or bill.autopay:
        return False
    return due_on - timedelta(days=bill.remind_days_before) <= today <= due_on
