"""The time-based rules (bill due, bill overdue, projected overspend) on a loop.

One replica at a time works, holding a lease row in the database (renewed each
round; a replica that dies loses it after lease_seconds). Every round looks at
today and back over the lookback window, and every alert has a dedupe key, so a
round after downtime catches up and a repeated round sends nothing twice."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections import defaultdict
from collections.abc import Sequence
from datetime import date, timedelta
from typing import Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from services.billing import storage
from services.billing.domain import AlertDraft, Bill, Budget
from services.billing.rules import RuleChecks, budget_view
from services.billing.settings import BillingSettings
from services.billing.usecases import Calendars
from services.kit.db.erasure import ErasedUsers
from services.kit.db.unit_of_work import UnitOfWork, UnitsOfWork
from services.kit.domain.timestamps import utcnow

log = logging.getLogger(__name__)

LEASE = "billing.scheduler"
# Bills or budgets per transaction of a round.
PAGE = 200


class _OwnedByUser(Protocol):
    @property
    def user_id(self) -> str: ...


Owned = TypeVar("Owned", bound=_OwnedByUser)


class Scheduler:
    def __init__(
        self,
        units: UnitsOfWork,
        settings: BillingSettings,
        calendars: Calendars,
        checks: RuleChecks,
        erased: ErasedUsers,
    ) -> None:
        self.units = units
        # A user erased while a round reads their bills or budgets gets no alert: the
        # erasure waits for the round's transaction, or the round sees the record.
        self.erased = erased
        self.settings = settings.scheduler
        self.calendars = calendars
        self.checks = checks
        self.holder = f"{socket.gethostname()}:{os.getpid()}"

    async def run(self) -> None:
        while True:
            try:
                if await self.take_lease():
                    await self.round()
            except Exception:  # the loop outlives a failed round (the database was away)
                log.exception("scheduler round failed")
            await asyncio.sleep(self.settings.interval_seconds)

    async def take_lease(self) -> bool:
        now = utcnow()
        until = now + timedelta(seconds=self.settings.lease_seconds)
        async with self.units.begin() as unit:
            return await storage.take_lease(unit.session, LEASE, self.holder, now, until)

    async def round(self) -> int:
        """One pass over every bill and budget; returns how many alerts it raised."""
        return await self._bills() + await self._budgets()

    async def _bills(self) -> int:
        raised = 0
        after = ""
        while True:
            async with self.units.begin() as unit:
                page = await storage.bills_after(unit.session, after, PAGE)
                raised += await self._bill_alerts(unit, page)
            if len(page) < PAGE:
                return raised
            after = page[-1].bill_id

    async def _bill_alerts(self, unit: UnitOfWork, page: Sequence[Bill]) -> int:
        """Reminders and overdue occurrences of a page's bills: one query each for the
        erased users, the calendars and the settlements, whatever the page holds."""
        session = unit.session
        live = await self._live(session, page)
        if not live:
            return 0
        todays = await self.calendars.todays(session, {bill.user_id for bill in live})
        # One window around every bill's own (time zones put todays a day apart): the
        # other dates it reads are outside each bill's window, where its drafts never look.
        windows = [self.checks.bill_window(bill, todays[bill.user_id][1]) for bill in live]
        start, end = min(first for first, _ in windows), max(last for _, last in windows)
        settled = await storage.load_settlements(session, [bill.bill_id for bill in live], start, end)
        settled_on: dict[str, set[date]] = defaultdict(set)
        for bill_id, due_on in settled:
            settled_on[bill_id].add(due_on)
        drafts: dict[str, list[AlertDraft]] = defaultdict(list)
        for bill in live:
            _, today = todays[bill.user_id]
            drafts[bill.user_id] += self.checks.bill_drafts(bill, settled_on[bill.bill_id], today)
        return len(await self.checks.sink.raise_for_users(unit, drafts))

    async def _budgets(self) -> int:
        raised = 0
        after = ""
        while True:
            async with self.units.begin() as unit:
                page = await storage.budgets_after(unit.session, after, PAGE)
                raised += await self._budget_alerts(unit, page)
            if len(page) < PAGE:
                return raised
            after = page[-1].budget_id

    async def _budget_alerts(self, unit: UnitOfWork, page: Sequence[Budget]) -> int:
        """Projected overspends of a page's budgets: one query each for the erased users,
        the calendars, the category trees and the budgets' rollups."""
        session = unit.session
        live = await self._live(session, page)
        if not live:
            return 0
        users = {budget.user_id for budget in live}
        todays = await self.calendars.todays(session, users)
        trees = await storage.category_trees(session, users)
        spending = await storage.budget_spending(session, [budget.budget_id for budget in live])
        drafts: dict[str, list[AlertDraft]] = defaultdict(list)
        for budget in live:
            calendar, today = todays[budget.user_id]
            view = budget_view(budget, trees[budget.user_id], calendar, today, spending[budget.budget_id])
            drafts[budget.user_id] += self.checks.projection_drafts(view, today)
        return len(await self.checks.sink.raise_for_users(unit, drafts))

    async def _live(self, session: AsyncSession, page: Sequence[Owned]) -> list[Owned]:
        """The page's items but those of erased users; the others' users stay locked
        against erasure until the page's transaction ends."""
        erased = await self.erased.refused(session, {item.user_id for item in page})
        return [item for item in page if item.user_id not in erased]
