"""Wiring of the billing service: the spend view's consumers, the rule checks and
alert sink, the scheduler, the use cases and servicer, the ledger client."""

from __future__ import annotations

from expense.billing.v1 import billing_pb2_grpc
from expense.events.v1 import events_pb2
from services.billing import storage
from services.billing.api import SERVICE_NAME, BillingServicer
from services.billing.events import EventHandlers
from services.billing.rules import AlertSink, RuleChecks
from services.billing.scheduler import Scheduler
from services.billing.settings import BillingMeshSettings
from services.billing.usecases import Alerts, Bills, Budgets, Calendars, CategoryCopies
from services.kit.db.erasure import ErasedUsers, OwnedThrough, erasing
from services.kit.db.unit_of_work import UnitsOfWork
from services.kit.events.subscription import Subscription
from services.kit.grpc.server import ServiceApp
from services.kit.responses import ResponseCache
from services.kit.runtime import Runtime
from services.ledger.client import LedgerClient

EXPENSE_CHANGES = Subscription(
    "billing_expenses", (events_pb2.ExpenseCreated, events_pb2.ExpenseUpdated, events_pb2.ExpenseDeleted)
)
CATEGORY_CHANGES = Subscription("billing_categories", (events_pb2.CategoryChanged,))
PROFILE_CHANGES = Subscription("billing_profiles", (events_pb2.ProfileUpdated,))
DELETIONS = Subscription("billing_erasure", (events_pb2.UserDeleted,))
# Every consumer the wiring starts; docs/events.md lists them.
SUBSCRIPTIONS = (EXPENSE_CHANGES, CATEGORY_CHANGES, PROFILE_CHANGES, DELETIONS)
# Billing's tables keyed through a parent of the user's, erased with it.
OWNED_THROUGH = (
    OwnedThrough(storage.budget_amounts, "budget_id", storage.budgets, "budget_id"),
    OwnedThrough(storage.budget_spend, "budget_id", storage.budgets, "budget_id"),
    OwnedThrough(storage.bill_settlements, "bill_id", storage.bills, "bill_id"),
)


def build_app(settings: BillingMeshSettings) -> ServiceApp:
    runtime = Runtime("billing", settings)
    verifier = runtime.remote_verifier()
    config = settings.billing
    units = UnitsOfWork(runtime.db, runtime.outbox(storage.outbox_table), storage.idempotency_keys)
    calendars = Calendars(settings.user.defaults)
    checks = RuleChecks(config, AlertSink(config))
    statuses = ResponseCache(runtime.cache, config.status_cache_seconds, "budgets")
    handlers = EventHandlers(units, calendars, checks, statuses)
    # The ledger's and user's events of a user erased meanwhile are skipped (they would
    # bring data back); the erasure records the user for as long as such events may come.
    erased = ErasedUsers(storage.erased_users)
    inbox = storage.inbox_table
    runtime.consume_batches(inbox, EXPENSE_CHANGES, erased.skipping_batches(handlers.on_expense_events))
    runtime.consume(inbox, CATEGORY_CHANGES, erased.skipping(handlers.on_category_event))
    runtime.consume(inbox, PROFILE_CHANGES, erased.skipping(handlers.on_profile_event))
    runtime.purger.keep(storage.erased_users, "erased_at", settings.retention.inbox_window)
    runtime.consume(
        storage.inbox_table,
        DELETIONS,
        erasing(storage.metadata, OWNED_THROUGH, statuses.invalidate, erased=erased),
    )
    # A tombstone only has to outlast the events that could still arrive for its expense.
    runtime.purger.keep(
        storage.expenses, "updated_at", settings.retention.inbox_window, storage.expenses.c.deleted.is_(True)
    )
    runtime.purger.keep(storage.idempotency_keys, "created_at", settings.retention.idempotency_window)
    runtime.background.append(Scheduler(units, config, calendars, checks, erased).run)
    # No fallback for the ledger: a payment or an unknown category answers UNAVAILABLE
    # (at once while the breaker is open); a retried payment finds its first expense.
    ledger = LedgerClient(
        settings.service_address("ledger"),
        settings.internal_call_timeout_seconds,
        runtime.service_tokens(),
        resilience=settings.resilience,
    )
    categories = CategoryCopies(ledger)
    servicer = BillingServicer(
        Budgets(runtime.db, units, config, calendars, categories, checks, statuses),
        Bills(runtime.db, units, config, calendars, categories, ledger),
        Alerts(runtime.db, units, config),
        config,
    )
    app = runtime.app(
        verifier, [(billing_pb2_grpc.add_BillingServiceServicer_to_server, servicer, SERVICE_NAME)]
    )
    app.on_stop.append(ledger.close)
    return app
