"""The scenarios of issue 5, in the order they run: reads before writes (so that
reporting is idle while reads are measured), the bulk import last (its events keep
reporting busy for a while)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bench.context import Bench
from bench.scenarios.baseline import baseline
from bench.scenarios.billing import alert_latency, budget_status
from bench.scenarios.event_lag import event_lag
from bench.scenarios.expenses import create_expense, list_expenses, list_expenses_by_text
from bench.scenarios.exports import account_export, custom_range_summary, export_month
from bench.scenarios.imports import bulk_import
from bench.scenarios.login import login
from bench.scenarios.notifications import notification_fanout
from bench.scenarios.page_load import page_load
from bench.scenarios.password_reset import password_reset_request
from bench.scenarios.reports import summaries_cached, summaries_uncached
from bench.scenarios.sms import insights, sms_ingest, sms_parse

Scenario = Callable[[Bench], Awaitable[None]]

SCENARIOS: dict[str, Scenario] = {
    "baseline": baseline,
    "list": list_expenses,
    "list-q": list_expenses_by_text,
    "summary-cached": summaries_cached,
    "summary-uncached": summaries_uncached,
    "summary-custom": custom_range_summary,
    "export": export_month,
    "account-export": account_export,
    "budget-status": budget_status,
    # A browser's page load is a read too: before the writes.
    "page-load": page_load,
    "insights": insights,
    "sms-parse": sms_parse,
    "create": create_expense,
    "event-lag": event_lag,
    "alert-latency": alert_latency,
    "sms-ingest": sms_ingest,
    "notifications": notification_fanout,
    "login": login,
    "reset-request": password_reset_request,
    "import": bulk_import,
}
