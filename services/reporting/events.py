"""Ledger and user events applied to reporting's tables. Each handler runs inside
the consumer's inbox transaction, so an event is applied once however often it
is delivered.

An expense event replaces reporting's copy of that expense: the rollups lose what
the copy contributed and gain what the new state contributes. When the copy is in
step with the ledger that is exactly "subtract before, add after"; when it is not
(an event lost to stream retention, a rebuild racing the stream), it still ends
at the ledger's state instead of counting a change twice. The ledger's version
numbers keep a late, older event from undoing a newer one."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import date

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

from expense.events.v1 import events_pb2
from services.reporting import storage
from services.reporting.domain import (
    CategoryInfo,
    ExpenseLine,
    StoredExpense,
    rollup_deltas,
    supersedes,
)

log = logging.getLogger(__name__)

Invalidate = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class ExpenseChange:
    expense_id: str
    # The new state; None for a deletion.
    after: ExpenseLine | None
    # The state the ledger changed (None for a creation).
    before: ExpenseLine | None
    version: int


def _line(snapshot: events_pb2.ExpenseSnapshot) -> ExpenseLine:
    return ExpenseLine(
        expense_id=snapshot.expense_id,
        amount_minor=snapshot.amount_minor,
        currency=snapshot.currency,
        spent_on=date.fromisoformat(snapshot.spent_on),
        category_id=snapshot.category_id,
        merchant=snapshot.merchant,
        source=snapshot.source,
        version=snapshot.version,
    )


def expense_change(envelope: events_pb2.EventEnvelope) -> ExpenseChange | None:
    """The change an expense.* event describes; None for anything else."""
    payload = envelope.payload
    if payload.Is(events_pb2.ExpenseCreated.DESCRIPTOR):
        created = events_pb2.ExpenseCreated()
        payload.Unpack(created)
        line = _line(created.expense)
        return ExpenseChange(line.expense_id, line, None, line.version)
    if payload.Is(events_pb2.ExpenseUpdated.DESCRIPTOR):
        updated = events_pb2.ExpenseUpdated()
        payload.Unpack(updated)
        after = _line(updated.after)
        before = _line(updated.before) if updated.HasField("before") else None
        return ExpenseChange(after.expense_id, after, before, after.version)
    if payload.Is(events_pb2.ExpenseDeleted.DESCRIPTOR):
        deleted = events_pb2.ExpenseDeleted()
        payload.Unpack(deleted)
        before = _line(deleted.before)
        # A deletion is the version after the state it deleted (0 stays "unknown").
        return ExpenseChange(before.expense_id, None, before, before.version + 1 if before.version else 0)
    return None


async def apply_expense_change(session: AsyncSession, user_id: str, change: ExpenseChange) -> bool:
    """False when reporting already holds this or a newer state of the expense."""
    stored = await storage.load_expense(session, user_id, change.expense_id)
    if not supersedes(change.version, stored):
        return False
    current = stored.line if stored is not None and not stored.deleted else None
    if current is not None and change.before is not None and _differs(current, change.before):
        log.info("expense copy was out of step; replaced", extra={"expense_id": change.expense_id})
    if change.after is not None:
        new_state = StoredExpense(change.after)
    else:
        # Kept as a tombstone, so a late copy of an older event cannot bring it back.
        tombstone = change.before or current
        if tombstone is None:
            return False
        known_version = stored.line.version if stored is not None else 0
        new_state = StoredExpense(
            replace(tombstone, version=max(change.version, known_version)), deleted=True
        )
    await storage.apply_deltas(session, user_id, rollup_deltas([(current, change.after)]))
    await storage.save_expense(session, user_id, new_state, existed=stored is not None)
    return True


def _differs(copy: ExpenseLine, before: ExpenseLine) -> bool:
    # Not the category: the ledger moves a deleted category's expenses without an
    # event per expense (reports follow category.changed's reassigned_to instead).
    return (copy.amount_minor, copy.currency, copy.spent_on, copy.merchant) != (
        before.amount_minor,
        before.currency,
        before.spent_on,
        before.merchant,
    )


async def apply_category_change(
    session: AsyncSession, user_id: str, change: events_pb2.CategoryChanged
) -> None:
    """Names and parents; a deletion with reassigned_to is followed when reports are read."""
    await storage.save_category(
        session,
        user_id,
        CategoryInfo(change.category_id, change.name, change.parent_id, change.deleted, change.reassigned_to),
    )


class EventHandlers:
    """The consumers' handlers; each invalidates the user's cached reports once
    its transaction has committed (not before, or a report read in between
    would be cached under the new version with the old numbers)."""

    def __init__(self, invalidate: Invalidate, forget_preferences: Callable[[str], None]) -> None:
        self._invalidate = invalidate
        self._forget_preferences = forget_preferences
        self._pending: set[asyncio.Task[None]] = set()

    async def on_expense_event(self, session: AsyncSession, envelope: events_pb2.EventEnvelope) -> None:
        try:
            change = expense_change(envelope)
        except ValueError:
            log.error("expense event with a bad date skipped", extra={"event_id": envelope.event_id})
            return
        if change is None or not envelope.user_id or not change.expense_id:
            log.warning("unusable expense event skipped", extra={"event_id": envelope.event_id})
            return
        if await apply_expense_change(session, envelope.user_id, change):
            self._invalidate_after_commit(session, envelope.user_id)

    async def on_category_event(self, session: AsyncSession, envelope: events_pb2.EventEnvelope) -> None:
        change = events_pb2.CategoryChanged()
        if not envelope.payload.Unpack(change) or not envelope.user_id or not change.category_id:
            log.warning("unusable category event skipped", extra={"event_id": envelope.event_id})
            return
        await apply_category_change(session, envelope.user_id, change)
        self._invalidate_after_commit(session, envelope.user_id)

    async def on_profile_event(self, session: AsyncSession, envelope: events_pb2.EventEnvelope) -> None:
        profile = events_pb2.ProfileUpdated()
        if not envelope.payload.Unpack(profile) or not envelope.user_id:
            log.warning("unusable profile event skipped", extra={"event_id": envelope.event_id})
            return
        stored = storage.StoredProfile(profile.default_currency, profile.time_zone, profile.first_day_of_week)
        await storage.save_profile(session, envelope.user_id, stored)
        self._forget_preferences(envelope.user_id)
        self._invalidate_after_commit(session, envelope.user_id)

    async def settled(self) -> None:
        """Waits for the cache invalidations already scheduled."""
        await asyncio.gather(*self._pending, return_exceptions=True)

    def _invalidate_after_commit(self, session: AsyncSession, user_id: str) -> None:
        loop = asyncio.get_running_loop()

        def schedule(_session: object) -> None:
            task = loop.create_task(self._invalidate(user_id))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

        event.listen(session.sync_session, "after_commit", schedule, once=True)
