"""Wiring of the ledger service: servicers, outbox relay, and the consumer that
drops cached preferences when a profile changes."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from expense.events.v1 import events_pb2
from expense.ledger.v1 import ledger_pb2_grpc
from services.kit.config.secrets import symmetric_key
from services.kit.db.erasure import erasing
from services.kit.db.unit_of_work import UnitsOfWork
from services.kit.events.subscription import Event, Subscription
from services.kit.grpc.server import ServiceApp
from services.kit.runtime import Runtime
from services.ledger import storage
from services.ledger.api import INTERNAL_SERVICE_NAME, SERVICE_NAME, LedgerInternalServicer, LedgerServicer
from services.ledger.domain import PageTokens, load_default_categories
from services.ledger.settings import LedgerMeshSettings
from services.ledger.statements import load_mappings
from services.ledger.usecases import Ledger
from services.user.client import Preferences, PreferencesClient

PREFERENCE_CHANGES = Subscription("ledger_preferences", (events_pb2.ProfileUpdated,))
DELETIONS = Subscription("ledger_erasure", (events_pb2.UserDeleted,))
# Every consumer the wiring starts; docs/events.md lists them.
SUBSCRIPTIONS = (PREFERENCE_CHANGES, DELETIONS)


def build_app(settings: LedgerMeshSettings) -> ServiceApp:
    runtime = Runtime("ledger", settings)
    verifier = runtime.remote_verifier()
    units = UnitsOfWork(runtime.db, runtime.outbox(storage.outbox), storage.idempotency_keys)
    defaults = load_default_categories(settings.ledger.default_categories_file)
    page_tokens = PageTokens(symmetric_key(settings.page_token_key, settings.page_token_key_file))
    ledger = Ledger(units, settings.ledger, defaults, page_tokens)
    resilience = settings.resilience
    # A lookup with a fallback (cached preferences): a short deadline, within the client's.
    preferences = PreferencesClient(
        settings.service_address("user"), resilience.fallback_call_timeout_seconds, resilience
    )

    async def forget_preferences(session: AsyncSession, event: Event[events_pb2.ProfileUpdated]) -> None:
        # A changed currency or time zone applies to the very next expense; while the user
        # service is down, the event's preferences are the fallback (not an older event's).
        changed = event.payload
        latest = Preferences(
            changed.default_currency, changed.time_zone, changed.first_day_of_week, changed.locale
        )
        preferences.forget(event.user_id, latest, changed.version)

    runtime.consume(storage.inbox, PREFERENCE_CHANGES, forget_preferences)
    runtime.consume(
        storage.inbox,
        DELETIONS,
        erasing(storage.metadata, around=(storage.permit_erasure, storage.end_erasure)),
    )
    runtime.purger.keep(storage.idempotency_keys, "created_at", settings.retention.idempotency_window)
    servicers = [
        (
            ledger_pb2_grpc.add_LedgerServiceServicer_to_server,
            LedgerServicer(ledger, preferences, load_mappings(settings.ledger.import_mappings_file)),
            SERVICE_NAME,
        ),
        (
            ledger_pb2_grpc.add_LedgerInternalServiceServicer_to_server,
            LedgerInternalServicer(ledger),
            INTERNAL_SERVICE_NAME,
        ),
    ]
    app = runtime.app(verifier, servicers)
    app.on_stop.append(preferences.close)
    return app
