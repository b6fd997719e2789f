"""Wiring of the ds service: the parser (templates loaded and compiled once), the
consumers of ledger and user events, the ledger and templating clients, the use cases
and servicer."""

from __future__ import annotations

from pathlib import Path

from expense.ds.v1 import ds_pb2_grpc
from expense.events.v1 import events_pb2
from services.ds import storage
from services.ds.api import SERVICE_NAME, DsServicer
from services.ds.categories import MerchantRules
from services.ds.digest import WeeklyDigest
from services.ds.events import EventHandlers
from services.ds.parser import SmsParser
from services.ds.sentences import Sentences
from services.ds.settings import DsMeshSettings
from services.ds.storage import Calendar
from services.ds.templates import ParserConfig
from services.ds.usecases import InsightComputer, Insights, Sms
from services.kit.config.settings import REPO_ROOT
from services.kit.consistency import Consistency
from services.kit.db.erasure import ErasedUsers, erasing
from services.kit.db.unit_of_work import UnitsOfWork
from services.kit.events.subscription import Subscription
from services.kit.grpc.server import ServiceApp
from services.kit.runtime import Runtime
from services.ledger.client import LedgerClient

EXPENSE_CHANGES = Subscription(
    "ds_expenses", (events_pb2.ExpenseCreated, events_pb2.ExpenseUpdated, events_pb2.ExpenseDeleted)
)
CATEGORY_CHANGES = Subscription("ds_categories", (events_pb2.CategoryChanged,))
PROFILE_CHANGES = Subscription("ds_profiles", (events_pb2.ProfileUpdated,))
DELETIONS = Subscription("ds_erasure", (events_pb2.UserDeleted,))
# Every consumer the wiring starts; docs/events.md lists them.
SUBSCRIPTIONS = (EXPENSE_CHANGES, CATEGORY_CHANGES, PROFILE_CHANGES, DELETIONS)


def repo_path(configured: str) -> Path:
    path = Path(configured)
    return path if path.is_absolute() else REPO_ROOT / path


def build_app(settings: DsMeshSettings) -> ServiceApp:
    runtime = Runtime("ds", settings)
    verifier = runtime.remote_verifier()
    config = settings.ds
    units = UnitsOfWork(runtime.db, runtime.outbox(storage.outbox_table))
    defaults = settings.user.defaults
    calendar = Calendar(defaults.time_zone, defaults.first_day_of_week, defaults.locale)
    handlers = EventHandlers(calendar)
    # The ledger's and user's events of a user erased meanwhile are skipped (they would
    # bring data back); the erasure records the user for as long as such events may come.
    erased = ErasedUsers(storage.erased_users)
    inbox = storage.inbox_table
    runtime.consume_batches(inbox, EXPENSE_CHANGES, erased.skipping_batches(handlers.on_expense_events))
    runtime.consume(inbox, CATEGORY_CHANGES, erased.skipping(handlers.on_category_event))
    runtime.consume(inbox, PROFILE_CHANGES, erased.skipping(handlers.on_profile_event))
    runtime.consume(inbox, DELETIONS, erasing(storage.metadata, erased=erased))
    runtime.purger.keep(storage.erased_users, "erased_at", settings.retention.inbox_window)
    # A tombstone only has to outlast the events that could still arrive for its expense.
    runtime.purger.keep(
        storage.expenses, "updated_at", settings.retention.inbox_window, storage.expenses.c.deleted.is_(True)
    )
    parser = SmsParser(ParserConfig.load(repo_path(config.parsers_dir)))
    rules = MerchantRules.load(repo_path(config.merchant_rules_file), config.fuzzy_min_score)
    # No fallback for the ledger: ingest answers UNAVAILABLE (at once while the breaker is
    # open); a retry books nothing twice (the request id comes from the transaction).
    ledger = LedgerClient(
        settings.service_address("ledger"),
        settings.internal_call_timeout_seconds,
        runtime.service_tokens(),
        resilience=settings.resilience,
    )
    sentences = Sentences(
        settings.service_address("templating"),
        settings.resilience.fallback_call_timeout_seconds,
        runtime.service_tokens(),
        settings.resilience,
    )
    computer = InsightComputer(runtime.db, config, calendar)
    if config.digest.enabled:
        digest = WeeklyDigest(runtime.db, units, computer, config.digest, calendar)
        runtime.background.append(digest.run)
    consistency = Consistency(
        runtime.db,
        storage.expense_version,
        config.consistency_wait_seconds,
        config.consistency_poll_seconds,
        "insights",
    )
    insights = Insights(computer, sentences, consistency)
    servicer = DsServicer(Sms(runtime.db, units, parser, rules, ledger, config), insights, config)
    app = runtime.app(verifier, [(ds_pb2_grpc.add_DsServiceServicer_to_server, servicer, SERVICE_NAME)])
    app.on_stop.append(ledger.close)
    app.on_stop.append(sentences.close)
    return app
