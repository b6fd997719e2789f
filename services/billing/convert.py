"""Domain values -> billing's messages. Amounts become exact decimal strings."""

from __future__ import annotations

from expense.billing.v1 import billing_pb2
from services.billing.domain import Alert, Bill, OccurrenceView, PeriodFigures, format_tenths
from services.billing.rules import BudgetView
from services.billing.subscriptions import Suggestion
from services.kit.domain.money import format_amount
from services.kit.domain.timestamps import rfc3339


def budget_proto(view: BudgetView) -> billing_pb2.Budget:
    budget, status = view.budget, view.status
    figures, currency = status.figures, budget.currency
    return billing_pb2.Budget(
        budget_id=budget.budget_id,
        category_id=budget.category_id,
        period=budget.period,
        amount=format_amount(budget.current_amount, currency),
        currency=currency,
        rollover=budget.rollover,
        thresholds=list(budget.thresholds),
        start_date=budget.start_date.isoformat(),
        etag=budget.etag,
        create_time=rfc3339(budget.created_at),
        update_time=rfc3339(budget.updated_at),
        status=billing_pb2.BudgetStatus(
            period_start=figures.period.start.isoformat(),
            period_end=figures.period.end.isoformat(),
            budgeted=format_amount(figures.budgeted, currency),
            carried=format_amount(figures.carried, currency),
            spent=format_amount(figures.spent, currency),
            remaining=format_amount(figures.remaining, currency),
            percent="" if status.percent_tenths is None else format_tenths(status.percent_tenths),
            projected=format_amount(status.projected, currency),
            on_track=status.on_track,
            other_currencies=[
                billing_pb2.Money(amount=format_amount(amount, code), currency=code)
                for code, amount in sorted(status.other_currencies.items())
            ],
        ),
    )


def period_proto(figures: PeriodFigures, currency: str) -> billing_pb2.BudgetPeriod:
    return billing_pb2.BudgetPeriod(
        period_start=figures.period.start.isoformat(),
        period_end=figures.period.end.isoformat(),
        amount=format_amount(figures.amount, currency),
        carried=format_amount(figures.carried, currency),
        budgeted=format_amount(figures.budgeted, currency),
        spent=format_amount(figures.spent, currency),
        remaining=format_amount(figures.remaining, currency),
    )


def bill_proto(bill: Bill, next_due: str) -> billing_pb2.Bill:
    return billing_pb2.Bill(
        bill_id=bill.bill_id,
        payee=bill.payee,
        amount=format_amount(bill.amount_minor, bill.currency),
        currency=bill.currency,
        category_id=bill.category_id,
        recurrence=bill.recurrence,
        first_due=bill.first_due.isoformat(),
        remind_days_before=bill.remind_days_before,
        autopay=bill.autopay,
        etag=bill.etag,
        create_time=rfc3339(bill.created_at),
        update_time=rfc3339(bill.updated_at),
        next_due=next_due,
    )


def occurrence_proto(view: OccurrenceView, currency: str) -> billing_pb2.BillOccurrence:
    return billing_pb2.BillOccurrence(
        due_date=view.due_on.isoformat(),
        amount=format_amount(view.amount_minor, currency),
        currency=currency,
        status=view.status,
        expense_id=view.expense_id,
    )


def suggestion_proto(suggestion: Suggestion) -> billing_pb2.BillSuggestion:
    return billing_pb2.BillSuggestion(
        suggestion_id=suggestion.suggestion_id,
        payee=suggestion.payee,
        amount=format_amount(suggestion.amount_minor, suggestion.currency),
        currency=suggestion.currency,
        cadence=suggestion.cadence,
        recurrence=suggestion.recurrence,
        next_due=suggestion.next_due.isoformat(),
        occurrences=suggestion.occurrences,
        last_charge=suggestion.last_charge.isoformat(),
    )


def alert_proto(alert: Alert) -> billing_pb2.Alert:
    return billing_pb2.Alert(
        alert_id=alert.alert_id,
        type=alert.type,
        severity=alert.severity,
        title=alert.title,
        details=alert.details,
        create_time=rfc3339(alert.created_at),
        acknowledge_time=rfc3339(alert.acknowledged_at) if alert.acknowledged_at else "",
        dedupe_key=alert.dedupe_key,
    )
