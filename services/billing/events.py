"""Ledger and user events applied to billing's spend view, each inside the consumer's
inbox transaction (so applied once however often delivered), with the alerts the new
spending calls for raised in the same transaction: an alert is stored and published
exactly when its spending is."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from expense.events.v1 import events_pb2
from services.billing import storage
from services.billing.domain import spend_deltas
from services.billing.matching import merchant_key
from services.billing.rules import RuleChecks, refresh_budgets
from services.billing.storage import Calendar
from services.billing.usecases import Calendars
from services.kit.db.engine import after_commit
from services.kit.db.unit_of_work import UnitsOfWork
from services.kit.domain.periods import today_in
from services.kit.domain.timestamps import utcnow
from services.kit.events.subscription import Event
from services.kit.responses import ResponseCache
from services.ledger import replica_storage
from services.ledger.replica import CategoryInfo, ExpenseChange, category_info, expense_change, replay

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
    def __init__(
        self, units: UnitsOfWork, calendars: Calendars, checks: RuleChecks, statuses: ResponseCache
    ) -> None:
        self.units = units
        self.calendars = calendars
        self.checks = checks
        self.statuses = statuses
        self._pending: set[asyncio.Task[None]] = set()

    async def on_expense_events(self, session: AsyncSession, events: Sequence[ExpenseEvent]) -> None:
        changes = [change for event in events if (change := _usable(event)) is not None]
        if not changes:
            return
        stored = await replica_storage.load_copies(
            session, storage.expenses, {change.key for change in changes}
        )
        result = replay(stored, changes)
        await storage.apply_spend_deltas(session, spend_deltas(result.moves))
        keys = {key: merchant_key(copy.line.merchant) for key, copy in result.copies.items()}
        await replica_storage.save_copies(session, storage.expenses, result.copies, keys, utcnow())
        unit = self.units.joining(session)
        calendars = await storage.load_calendars(session, list(result.moves))
        for user_id, moves in result.moves.items():
            calendar = calendars.get(user_id, self.calendars.default)
            today = today_in(calendar.time_zone, utcnow())
            await self.checks.after_spending(unit, user_id, moves, calendar, today)
        self._invalidate_after_commit(session, list(result.moves))

    async def on_category_event(
        self, session: AsyncSession, event: Event[events_pb2.CategoryChanged]
    ) -> None:
        if not event.user_id or not event.payload.category_id:
            log.warning("unusable category event skipped", extra={"event_id": event.event_id})
            return
        info = category_info(event.payload)
        before = (await storage.category_tree(session, event.user_id)).get(info.category_id)
        await storage.save_categories(session, event.user_id, [info])
        if before is None or _placement(before) != _placement(info):
            # Where its spending counts moved (a rename changes nothing a budget counts).
            await self._refresh_budgets(session, event.user_id, ("week", "month", "year"))
        self._invalidate_after_commit(session, [event.user_id])  # names in statuses

    async def on_profile_event(self, session: AsyncSession, event: Event[events_pb2.ProfileUpdated]) -> None:
        profile = event.payload
        if not event.user_id:
            log.warning("unusable profile event skipped", extra={"event_id": event.event_id})
            return
        default = self.calendars.default
        calendar = Calendar(
            profile.time_zone or default.time_zone, profile.first_day_of_week or default.first_day_of_week
        )
        before = await self.calendars.of(session, event.user_id, lock=True)
        if not await storage.save_calendar(session, event.user_id, calendar, profile.version):
            # An older profile redelivered after a newer one: its calendar is not the user's.
            log.info(
                "stale profile event ignored", extra={"event_id": event.event_id, "version": profile.version}
            )
            return
        if before.first_day_of_week != calendar.first_day_of_week:
            await self._refresh_budgets(session, event.user_id, ("week",))
        self._invalidate_after_commit(session, [event.user_id])

    def _invalidate_after_commit(self, session: AsyncSession, user_ids: list[str]) -> None:
        """Cached statuses of these users go once the transaction commits (not before: a
        status read in between would be cached under the new token with the old figures)."""

        def schedule() -> None:
            task = asyncio.get_running_loop().create_task(self.statuses.invalidate(user_ids))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

        after_commit(session, schedule)

    async def _refresh_budgets(self, session: AsyncSession, user_id: str, periods: tuple[str, ...]) -> None:
        """The tree or the week changed: the user's budgets of these periods count afresh."""
        budgets = [b for b in await storage.load_budgets(session, user_id, lock=True) if b.period in periods]
        if budgets:
            tree = await storage.category_tree(session, user_id)
            await refresh_budgets(session, budgets, tree, await self.calendars.of(session, user_id))


def _placement(info: CategoryInfo) -> tuple[str, bool, str]:
    """What decides which budgets count a category's spending."""
    return (info.parent_id, info.deleted, info.reassigned_to)
