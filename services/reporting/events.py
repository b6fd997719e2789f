"""Ledger and user events applied to reporting's tables. Each handler runs inside
the consumer's inbox transaction, so an event is applied once however often it
is delivered.

An expense event replaces reporting's copy of that expense: the rollups lose what
the copy contributed and gain what the new state contributes. When the copy is in
step with the ledger that is exactly "subtract before, add after"; when it is not
(an event lost to stream retention, a rebuild racing the stream), it still ends
at the ledger's state instead of counting a change twice. The ledger's version
numbers keep a late, older event from undoing a newer one.

Expense events come in batches and cost a fixed number of statements per batch
(see apply_expense_changes); categories and profiles are rare, one at a time."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from functools import partial

from sqlalchemy.ext.asyncio import AsyncSession

from expense.events.v1 import events_pb2
from services.kit.db.engine import after_commit
from services.kit.events.subscription import Event
from services.ledger.replica import ExpenseChange, category_info, expense_change
from services.reporting import storage
from services.reporting.domain import apply_changes

log = logging.getLogger(__name__)

Invalidate = Callable[[Collection[str]], Awaitable[None]]
# session.info key: the users whose cached reports to invalidate once the transaction
# commits, and the callback that does it.
PENDING_INVALIDATIONS = "reporting.invalidate"
ExpenseEvent = Event[events_pb2.ExpenseCreated | events_pb2.ExpenseUpdated | events_pb2.ExpenseDeleted]


def _usable_change(event: ExpenseEvent) -> ExpenseChange | None:
    """The event's change, or None (logged) for one that cannot be applied."""
    try:
        change = expense_change(event.user_id, event.payload)
    except ValueError:
        log.error("expense event with a bad date skipped", extra={"event_id": event.event_id})
        return None
    if change is None:
        log.warning("unusable expense event skipped", extra={"event_id": event.event_id})
        return None
    return change


async def apply_expense_changes(session: AsyncSession, changes: Sequence[ExpenseChange]) -> set[str]:
    """The changes in order, with the same few statements however many there are:
    one read of the copies, the rollup upserts (and deletes of emptied rows), the
    copies' writes. Returns the users whose copies changed."""
    stored = await storage.load_expenses(session, {change.key for change in changes})
    outcome = apply_changes(stored, changes)
    for _, expense_id in outcome.out_of_step:
        log.info("expense copy was out of step; replaced", extra={"expense_id": expense_id})
    await storage.apply_deltas(session, outcome.deltas)
    await storage.save_expenses(session, outcome.copies, existing=stored.keys())
    return {user_id for user_id, _ in outcome.copies}


async def apply_category_change(
    session: AsyncSession, user_id: str, change: events_pb2.CategoryChanged
) -> None:
    """Names and parents; a deletion with reassigned_to is followed when reports are read."""
    await storage.save_category(session, user_id, category_info(change))


class EventHandlers:
    """The consumers' handlers; they invalidate the cached reports of the users a
    transaction changed once it has committed (not before, or a report read in
    between would be cached under the new version with the old numbers)."""

    def __init__(self, invalidate: Invalidate, forget_preferences: Callable[[str], None]) -> None:
        self._invalidate = invalidate
        self._forget_preferences = forget_preferences
        self._pending: set[asyncio.Task[None]] = set()

    async def on_expense_events(self, session: AsyncSession, events: Sequence[ExpenseEvent]) -> None:
        changes = [change for event in events if (change := _usable_change(event)) is not None]
        if changes:
            self._invalidate_after_commit(session, await apply_expense_changes(session, changes))

    async def on_category_event(
        self, session: AsyncSession, event: Event[events_pb2.CategoryChanged]
    ) -> None:
        change = event.payload
        if not event.user_id or not change.category_id:
            log.warning("unusable category event skipped", extra={"event_id": event.event_id})
            return
        await apply_category_change(session, event.user_id, change)
        self._invalidate_after_commit(session, [event.user_id])

    async def on_profile_event(self, session: AsyncSession, event: Event[events_pb2.ProfileUpdated]) -> None:
        profile = event.payload
        if not event.user_id:
            log.warning("unusable profile event skipped", extra={"event_id": event.event_id})
            return
        stored = storage.StoredProfile(
            profile.default_currency, profile.time_zone, profile.first_day_of_week, profile.locale
        )
        if not await storage.save_profile(session, event.user_id, stored, profile.version):
            # An older profile redelivered after a newer one: the copy keeps the newer.
            log.info(
                "stale profile event ignored", extra={"event_id": event.event_id, "version": profile.version}
            )
            return
        self._forget_preferences(event.user_id)
        self._invalidate_after_commit(session, [event.user_id])

    async def settled(self) -> None:
        """Waits for the cache invalidations already scheduled."""
        await asyncio.gather(*self._pending, return_exceptions=True)

    def _invalidate_after_commit(self, session: AsyncSession, user_ids: Collection[str]) -> None:
        """Each user once per committed transaction, however many of their events it applied."""
        if not user_ids:
            return
        if PENDING_INVALIDATIONS not in session.info:
            users: set[str] = set()
            session.info[PENDING_INVALIDATIONS] = (users, partial(self._schedule, users))
        pending, schedule = session.info[PENDING_INVALIDATIONS]
        pending.update(user_ids)
        after_commit(session, schedule)  # the same callback each time: it runs once

    def _schedule(self, users: set[str]) -> None:
        """All of a transaction's users in one call (one Redis round trip)."""
        task = asyncio.get_running_loop().create_task(self._invalidate(sorted(users)))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        users.clear()
