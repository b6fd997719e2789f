"""Events ds applies, each inside its consumer's inbox transaction (applied once however
often delivered): the ledger's expenses and categories into its copies and daily rollup
(ledger/replica.py rules), and the user's consent and calendar from user.profile_updated,
only when newer than the copy's version. Turning consent off deletes the raw messages kept so far."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from expense.events.v1 import events_pb2
from services.billing.domain import spend_deltas
from services.ds import storage
from services.ds.domain import Consent, merchant_deltas
from services.ds.normalise import merchant_key
from services.ds.storage import Calendar
from services.kit.domain.timestamps import utcnow
from services.kit.events.subscription import Event
from services.ledger import replica_storage
from services.ledger.replica import ExpenseChange, category_info, expense_change, replay

log = logging.getLogger(__name__)

ExpenseEvent = Event[events_pb2.ExpenseCreated | events_pb2.ExpenseUpdated | events_pb2.ExpenseDeleted]


def _usable(event: ExpenseEvent) -> ExpenseChange | None:
    try:
        change = expense_change(event.user_id, event.payload)
    except ValueError:
        log.error("expense event with a bad date skipped", extra={"event_id": event.event_id})
        return None
    if change is None:
        log.warning("unusable expense event skipped", extra={"event_id": event.event_id})
    return change


class EventHandlers:
    def __init__(self, default_calendar: Calendar) -> None:
        self.default_calendar = default_calendar

    async def on_expense_events(self, session: AsyncSession, events: Sequence[ExpenseEvent]) -> None:
        changes = [change for event in events if (change := _usable(event)) is not None]
        if not changes:
            return
        stored = await replica_storage.load_copies(
            session, storage.expenses, {change.key for change in changes}
        )
        result = replay(stored, changes)
        await storage.apply_spend_deltas(session, spend_deltas(result.moves))
        await storage.apply_merchant_deltas(session, merchant_deltas(result.moves))
        keys = {key: merchant_key(copy.line.merchant) for key, copy in result.copies.items()}
        await replica_storage.save_copies(session, storage.expenses, result.copies, keys, utcnow())

    async def on_category_event(
        self, session: AsyncSession, event: Event[events_pb2.CategoryChanged]
    ) -> None:
        if not event.user_id or not event.payload.category_id:
            log.warning("unusable category event skipped", extra={"event_id": event.event_id})
            return
        await storage.save_categories(session, event.user_id, [category_info(event.payload)])

    async def on_profile_event(self, session: AsyncSession, event: Event[events_pb2.ProfileUpdated]) -> None:
        profile = event.payload
        if not event.user_id:
            log.warning("unusable profile event skipped", extra={"event_id": event.event_id})
            return
        default = self.default_calendar
        calendar = Calendar(
            profile.time_zone or default.time_zone,
            profile.first_day_of_week or default.first_day_of_week,
            profile.locale or default.locale,
        )
        consent = Consent(
            profile.sms_auto_import, frozenset(sender.upper() for sender in profile.sms_allowed_senders)
        )
        before = await storage.load_consent(session, event.user_id, lock=True)
        if not await storage.save_profile(session, event.user_id, consent, calendar, profile.version):
            # An older profile redelivered after a newer one: applying it would, e.g., take
            # back a consent given since and delete the messages kept under it.
            log.info(
                "stale profile event ignored", extra={"event_id": event.event_id, "version": profile.version}
            )
            return
        if before.auto_import and not consent.auto_import:
            await storage.forget_raw_messages(session, event.user_id)
            log.info("SMS consent withdrawn: raw messages deleted", extra={"user_id": event.user_id})
