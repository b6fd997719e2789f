"""Wiring of the reporting service: consumers of ledger and user events, the
report use cases and servicer, the cache and the preferences lookup."""

from __future__ import annotations

from expense.events.v1 import events_pb2
from expense.reporting.v1 import reporting_pb2_grpc
from services.kit.db.erasure import ErasedUsers, erasing
from services.kit.db.unit_of_work import UnitsOfWork
from services.kit.domain.timestamps import utcnow
from services.kit.events.subscription import Subscription
from services.kit.grpc.server import ServiceApp
from services.kit.responses import ResponseCache
from services.kit.runtime import Runtime
from services.reporting import storage
from services.reporting.api import ReportingServicer
from services.reporting.events import EventHandlers
from services.reporting.monthly import MonthlyReports
from services.reporting.preferences import StoredPreferences, UserServicePreferences
from services.reporting.settings import ReportingMeshSettings
from services.reporting.usecases import ReportRequests, Reports
from services.user.client import PreferencesClient

SERVICE_NAME = "expense.reporting.v1.ReportingService"

EXPENSE_CHANGES = Subscription(
    "reporting_expenses", (events_pb2.ExpenseCreated, events_pb2.ExpenseUpdated, events_pb2.ExpenseDeleted)
)
CATEGORY_CHANGES = Subscription("reporting_categories", (events_pb2.CategoryChanged,))
PROFILE_CHANGES = Subscription("reporting_profiles", (events_pb2.ProfileUpdated,))
DELETIONS = Subscription("reporting_erasure", (events_pb2.UserDeleted,))
# Every consumer the wiring starts; docs/events.md lists them.
SUBSCRIPTIONS = (EXPENSE_CHANGES, CATEGORY_CHANGES, PROFILE_CHANGES, DELETIONS)


def build_app(settings: ReportingMeshSettings) -> ServiceApp:
    runtime = Runtime("reporting", settings)
    verifier = runtime.remote_verifier()
    cache = ResponseCache(runtime.cache, settings.reporting.cache_ttl_seconds, "report")
    stored_preferences = StoredPreferences(runtime.db, settings.user.defaults)
    preferences = UserServicePreferences(
        PreferencesClient(
            settings.service_address("user"),
            settings.resilience.fallback_call_timeout_seconds,
            settings.resilience,
        ),
        stored_preferences,
    )
    handlers = EventHandlers(cache.invalidate, preferences.forget)
    # The ledger's events of a user erased meanwhile are skipped: they would bring data back.
    erased = ErasedUsers(storage.erased_users)
    inbox = storage.inbox_table
    runtime.consume_batches(inbox, EXPENSE_CHANGES, erased.skipping_batches(handlers.on_expense_events))
    runtime.consume(inbox, CATEGORY_CHANGES, erased.skipping(handlers.on_category_event))
    runtime.consume(inbox, PROFILE_CHANGES, erased.skipping(handlers.on_profile_event))
    runtime.consume(inbox, DELETIONS, erasing(storage.metadata, forget=cache.invalidate, erased=erased))
    runtime.purger.keep(storage.erased_users, "erased_at", settings.retention.inbox_window)
    # A tombstone only has to outlast the events that could still arrive for its expense,
    # as an inbox record does.
    runtime.purger.keep(storage.expenses, "updated_at", settings.retention.inbox_window, storage.tombstones)
    figures = Reports(runtime.db, settings.reporting)
    reports = ReportRequests(figures, preferences, cache, settings.reporting)
    # The monthly report needs no user token: reporting's own copy of the profile says
    # the user's time zone and locale.
    units = UnitsOfWork(runtime.db, runtime.outbox(storage.outbox_table))
    monthly = MonthlyReports(units, figures, stored_preferences, settings.reporting.monthly, utcnow)
    runtime.background.append(monthly.run)
    servicer = ReportingServicer(reports)
    app = runtime.app(
        verifier, [(reporting_pb2_grpc.add_ReportingServiceServicer_to_server, servicer, SERVICE_NAME)]
    )
    app.on_stop.append(preferences.close)
    return app
