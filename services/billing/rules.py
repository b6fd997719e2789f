"""The alert rules at work, inside the caller's unit of work: a budget's figures
from billing's spend view, the rules an expense or a day's passing calls for, and
the sink that stores each alert once (its dedupe key) and publishes it through the
outbox in the same transaction."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession

from expense.events.v1 import events_pb2
from services.billing import storage
from services.billing.domain import (
    Alert,
    AlertDraft,
    Bill,
    Budget,
    BudgetStatus,
    PeriodFigures,
    Settlement,
    bill_due_alert,
    bill_overdue_alert,
    budget_deltas,
    budget_periods,
    budget_rollup,
    budget_status,
    carried_into,
    duplicate_alert,
    is_large,
    large_expense_alert,
    median,
    occurrence_status,
    price_increase_alert,
    projected_overspend_alert,
    reminder_due,
    threshold_alerts,
)
from services.billing.matching import amount_within, best_occurrence, merchant_key, payee_matches
from services.billing.recurrence import parse_recurrence
from services.billing.settings import BillingSettings
from services.billing.storage import Calendar
from services.billing.subscriptions import price_increase
from services.kit.db.engine import Queryable, after_commit
from services.kit.db.unit_of_work import UnitOfWork
from services.kit.domain.ids import new_id
from services.kit.domain.periods import Period, period_containing
from services.kit.domain.timestamps import rfc3339, utcnow
from services.ledger.replica import CategoryTree, ExpenseLine, Move

ALL_SPENDING = "All spending"


def budget_name(budget: Budget, tree: CategoryTree) -> str:
    return tree.path_name(budget.category_id) if budget.category_id else ALL_SPENDING


@dataclass(frozen=True)
class BudgetView:
    budget: Budget
    name: str
    status: BudgetStatus


def members_of(budget: Budget, tree: CategoryTree) -> set[str] | None:
    """The categories whose spending the budget counts (None: all)."""
    return tree.members(budget.category_id) if budget.category_id else None


def _start(period: Period) -> date:
    return period.start


def current_period(budget: Budget, calendar: Calendar, today: date) -> Period:
    """The period containing today, or the budget's first period if that is later."""
    first_day = calendar.first_day_of_week
    return max(period_containing(budget.period, today, first_day), budget.first_period(first_day), key=_start)


def budget_view(
    budget: Budget, tree: CategoryTree, calendar: Calendar, today: date, spending: dict[tuple[date, str], int]
) -> BudgetView:
    """The budget's status in its current period, from its rollup (`spending`)."""
    period = current_period(budget, calendar, today)
    by_currency = {currency: total for (start, currency), total in spending.items() if start == period.start}
    spent = by_currency.pop(budget.currency, 0)
    carried = 0
    if budget.rollover:
        spent_before = sum(
            total
            for (start, currency), total in spending.items()
            if currency == budget.currency and start < period.start
        )
        carried = carried_into(budget, calendar.first_day_of_week, period, spent_before)
    figures = PeriodFigures(period, budget.amount_for(period), carried, spent)
    return BudgetView(budget, budget_name(budget, tree), budget_status(figures, today, by_currency))


def past_periods(
    budget: Budget, calendar: Calendar, until: Period, spending: dict[tuple[date, str], int]
) -> list[PeriodFigures]:
    """The budget's periods from its first to `until`, oldest first, rollover applied."""
    spent_in = {start: total for (start, currency), total in spending.items() if currency == budget.currency}
    return budget_periods(budget, calendar.first_day_of_week, until, spent_in)


async def budget_views(
    connection: Queryable, budgets: Sequence[Budget], tree: CategoryTree, calendar: Calendar, today: date
) -> list[BudgetView]:
    """Each budget's status, their rollups read in one query."""
    spending = await storage.budget_spending(connection, [budget.budget_id for budget in budgets])
    return [budget_view(budget, tree, calendar, today, spending[budget.budget_id]) for budget in budgets]


async def refresh_budgets(
    session: AsyncSession, budgets: Sequence[Budget], tree: CategoryTree, calendar: Calendar
) -> None:
    """Recomputes each budget's rollup from the daily spend view: when what it counts changed."""
    first_day = calendar.first_day_of_week
    for budget in budgets:
        since = budget.first_period(first_day).start
        daily = await storage.daily_rows(session, budget.user_id, members_of(budget, tree), since)
        await storage.replace_budget_spending(
            session, budget.budget_id, budget_rollup(budget, first_day, daily)
        )


async def move_budgets(
    session: AsyncSession,
    budgets: Sequence[Budget],
    tree: CategoryTree,
    calendar: Calendar,
    moves: Sequence[Move],
) -> None:
    """Carries expense moves into the rollups of the budgets that count them."""
    deltas = {
        (budget.budget_id, start, currency): change
        for budget in budgets
        for (start, currency), change in budget_deltas(
            budget, members_of(budget, tree), calendar.first_day_of_week, moves
        ).items()
    }
    await storage.apply_budget_deltas(session, deltas)


def alert_raised(alert: Alert) -> events_pb2.AlertRaised:
    return events_pb2.AlertRaised(
        alert_id=alert.alert_id,
        type=alert.type,
        severity=alert.severity,
        title=alert.title,
        details=alert.details,
        dedupe_key=alert.dedupe_key,
        create_time=rfc3339(alert.created_at),
    )


class AlertSink:
    """Stores each draft once (a taken dedupe key means the rule already fired for that
    occurrence) and publishes alert.raised for those to announce with the same commit;
    muted rules are dropped."""

    def __init__(self, settings: BillingSettings) -> None:
        self.severity = settings.alerts.severity

    async def raise_all(self, unit: UnitOfWork, user_id: str, drafts: Sequence[AlertDraft]) -> list[Alert]:
        return await self.raise_for_users(unit, {user_id: drafts})

    async def raise_for_users(
        self, unit: UnitOfWork, drafts: Mapping[str, Sequence[AlertDraft]]
    ) -> list[Alert]:
        """raise_all for several users' drafts (a scheduler page's): one query for their
        mutes, one insert, one outbox write."""
        pending = {user_id: found for user_id, found in drafts.items() if found}
        if not pending:
            return []
        muted = await storage.muted_rules_of(unit.session, pending)
        now = utcnow()
        candidates = {  # one per dedupe key: a batch may call for the same one twice
            draft.dedupe_key: (self._alert(user_id, draft, now), draft.announce)
            for user_id, found in pending.items()
            for draft in found
            if draft.type not in muted[user_id]
        }
        stored = await storage.insert_alerts(unit.session, [alert for alert, _ in candidates.values()])
        raised = [(alert, announce) for alert, announce in candidates.values() if alert.alert_id in stored]
        told = [alert for alert, announce in raised if announce]
        if told:
            await unit.publish_all([(alert.user_id, alert_raised(alert)) for alert in told])
            after_commit(unit.session, lambda: _count_raised(told))
        return [alert for alert, _ in raised]

    def _alert(self, user_id: str, draft: AlertDraft, now: datetime) -> Alert:
        severity = draft.severity or self.severity.get(draft.type, "info")
        return Alert(
            new_id(), user_id, draft.type, severity, draft.title, draft.details, draft.dedupe_key, now
        )


# Bounded labels: alert types are the rules' ([billing.alerts.severity]), severities three.
ALERTS_RAISED = Counter(
    "em_billing_alerts_raised", "Alerts billing raised, by type and severity.", ["type", "severity"]
)


def _count_raised(alerts: Sequence[Alert]) -> None:
    # Counted once committed: a rolled-back transaction raised nothing.
    for alert in alerts:
        ALERTS_RAISED.labels(alert.type, alert.severity).inc()


class RuleChecks:
    """Which rules a user's new spending, or the calendar, calls for."""

    def __init__(self, settings: BillingSettings, sink: AlertSink) -> None:
        self.settings = settings
        self.rules = settings.alerts
        self.sink = sink

    async def after_budget_change(self, unit: UnitOfWork, view: BudgetView) -> None:
        """A new or changed budget: thresholds its spending already reached fire now."""
        drafts = threshold_alerts(view.budget, view.name, view.status, self.rules.critical_threshold_percent)
        await self.sink.raise_all(unit, view.budget.user_id, drafts)

    async def after_spending(
        self,
        unit: UnitOfWork,
        user_id: str,
        moves: Sequence[Move],
        calendar: Calendar,
        today: date,
    ) -> None:
        """Carries the moves into the user's budget rollups, then fires the thresholds of
        budgets whose current period the new states touched, and each new expense's rules."""
        session = unit.session
        # FOR UPDATE: one user's checks run one at a time, each seeing the spending the
        # ones before it committed (two replicas could otherwise both miss a crossing).
        budgets = await storage.load_budgets(session, user_id, lock=True)
        tree = await storage.category_tree(session, user_id)
        await move_budgets(session, budgets, tree, calendar, moves)
        changed = [new for old, new in moves if new is not None and _grew(old, new)]
        touched = [budget for budget in budgets if _touches(budget, tree, changed, calendar, today)]
        drafts: list[AlertDraft] = []
        for view in await budget_views(session, touched, tree, calendar, today):
            drafts += threshold_alerts(
                view.budget, view.name, view.status, self.rules.critical_threshold_percent
            )
        created = [new for old, new in moves if new is not None and old is None]
        if created:
            drafts += await self._expense_rules(unit, user_id, created, tree)
        await self.sink.raise_all(unit, user_id, drafts)

    async def _expense_rules(
        self, unit: UnitOfWork, user_id: str, lines: Sequence[ExpenseLine], tree: CategoryTree
    ) -> list[AlertDraft]:
        """The rules of each new expense: large, duplicate, a bill's payment. Reads are
        shared by the batch's lines (one history per category and currency, one bill list)."""
        session = unit.session
        rules = self.rules
        drafts: list[AlertDraft] = []
        histories: dict[tuple[str, str], list[tuple[str, int]]] = {}
        bills = (
            await storage.load_bills(session, user_id) if any(_may_pay_bill(line) for line in lines) else []
        )
        for line in lines:
            scope = (line.category_id, line.currency)
            if scope not in histories:
                histories[scope] = await storage.recent_in_category(
                    session, user_id, *scope, rules.large_expense_history + len(lines)
                )
            history = [amount for expense_id, amount in histories[scope] if expense_id != line.expense_id]
            history = history[: rules.large_expense_history]
            if is_large(
                line.amount_minor,
                line.currency,
                history,
                rules.large_expense_median_multiplier,
                rules.large_expense_min_history,
                rules.large_expense_absolute,
            ):
                typical = int(median(history)) if history else 0
                category = tree.path_name(line.category_id) if line.category_id else ""
                drafts.append(
                    large_expense_alert(
                        user_id,
                        line.expense_id,
                        line.amount_minor,
                        line.currency,
                        line.merchant,
                        category,
                        typical,
                    )
                )
            key = merchant_key(line.merchant)
            if not key:
                continue
            window = timedelta(days=rules.duplicate_window_days)
            same = await storage.same_charges(
                session, user_id, line, key, line.spent_on - window, line.spent_on + window
            )
            if same:
                drafts.append(
                    duplicate_alert(
                        user_id,
                        line.expense_id,
                        same,
                        line.amount_minor,
                        line.currency,
                        line.merchant,
                        line.spent_on,
                    )
                )
            if _may_pay_bill(line):
                drafts += await self._settle_bills(unit, bills, line, key)
        return drafts

    async def _settle_bills(
        self, unit: UnitOfWork, bills: Sequence[Bill], line: ExpenseLine, key: str
    ) -> list[AlertDraft]:
        """Settles the occurrence this expense pays, if any; notices a price increase."""
        matching = self.settings.matching
        window = timedelta(days=matching.window_days)
        drafts = []
        for bill in bills:
            if bill.currency != line.currency or not payee_matches(
                merchant_key(bill.payee), key, matching.payee_similarity
            ):
                continue
            recurrence = parse_recurrence(bill.recurrence, bill.first_due)
            near = recurrence.occurrences(line.spent_on - window, line.spent_on + window)
            settled = await storage.load_settlements(
                unit.session, [bill.bill_id], line.spent_on - window, line.spent_on + window
            )
            open_dates = [due for due in near if (bill.bill_id, due) not in settled]
            due_on = best_occurrence(open_dates, line.spent_on, matching.window_days)
            if due_on is None:
                continue
            if price_increase(
                bill.amount_minor, line.amount_minor, self.settings.subscriptions.price_increase_min_percent
            ):
                drafts.append(
                    price_increase_alert(bill, bill.amount_minor, line.amount_minor, line.expense_id)
                )
            if amount_within(bill.amount_minor, line.amount_minor, matching.amount_tolerance_percent):
                await storage.settle(
                    unit.session, bill.bill_id, _paid(due_on, line.expense_id, line.amount_minor), utcnow()
                )
                break
        return drafts

    # ------------------------------------------------------------ the calendar's rules

    def bill_window(self, bill: Bill, today: date) -> tuple[date, date]:
        """The due dates bill_drafts looks at: back to the lookback, ahead to the reminder."""
        start = today - timedelta(days=self.rules.overdue_lookback_days)
        return start, today + timedelta(days=bill.remind_days_before)

    def bill_drafts(self, bill: Bill, settled: Collection[date], today: date) -> list[AlertDraft]:
        """Reminders inside their window and overdue occurrences, back to the lookback;
        `settled`: the bill's settled due dates, at least those in bill_window."""
        rules = self.rules
        recurrence = parse_recurrence(bill.recurrence, bill.first_due)
        start, end = self.bill_window(bill, today)
        drafts = []
        for due_on in recurrence.occurrences(start, end):
            if due_on in settled:
                continue
            if occurrence_status(due_on, None, today, rules.overdue_grace_days) == "overdue":
                drafts.append(bill_overdue_alert(bill, due_on))
            elif reminder_due(bill, due_on, today):
                drafts.append(bill_due_alert(bill, due_on))
        return drafts

    def projection_drafts(self, view: BudgetView, today: date) -> list[AlertDraft]:
        draft = projected_overspend_alert(
            view.budget, view.name, view.status, today, self.rules.projected_min_elapsed_days
        )
        return [draft] if draft else []


def _paid(due_on: date, expense_id: str, amount_minor: int) -> Settlement:
    return Settlement(due_on, "paid", expense_id, amount_minor)


def _may_pay_bill(line: ExpenseLine) -> bool:
    """Billing's own payments (source "recurring") settle their occurrence themselves."""
    return bool(line.merchant.strip()) and line.source != "recurring"


def _grew(old: ExpenseLine | None, new: ExpenseLine) -> bool:
    """Whether a change can push a budget up: a new expense, or one that moved or grew."""
    if old is None:
        return True
    return (new.amount_minor, new.currency, new.category_id, new.spent_on) != (
        old.amount_minor,
        old.currency,
        old.category_id,
        old.spent_on,
    )


def _touches(
    budget: Budget, tree: CategoryTree, lines: Sequence[ExpenseLine], calendar: Calendar, today: date
) -> bool:
    """Whether a change lies in the budget's current period, currency and categories."""
    period = period_containing(budget.period, today, calendar.first_day_of_week)
    members = tree.members(budget.category_id) if budget.category_id else None
    return any(
        line.currency == budget.currency
        and period.contains(line.spent_on)
        and (members is None or line.category_id in members)
        for line in lines
    )
