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
from datetime import timedelta

from services.billing import storage
from services.billing.rules import RuleChecks, budget_views
from services.billing.settings import BillingSettings
from services.billing.usecases import Calendars
from services.kit.db.erasure import ErasedUsers
from services.kit.db.unit_of_work import UnitsOfWork
from services.kit.domain.periods import today_in
from services.kit.domain.timestamps import utcnow

log = logging.getLogger(__name__)

LEASE = "billing.scheduler"
# Bills or budgets per transaction of a round.
PAGE = 200


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
        self.lookback = timedelta(days=settings.alerts.overdue_lookback_days)
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
                for bill in page:
                    if await self.erased.refuses(unit.session, bill.user_id):
                        continue
                    calendar = await self.calendars.of(unit.session, bill.user_id)
                    today = today_in(calendar.time_zone, utcnow())
                    settled = await storage.load_settlements(
                        unit.session, [bill.bill_id], today - self.lookback, today + timedelta(days=400)
                    )
                    drafts = self.checks.bill_drafts(bill, {due for _, due in settled}, today)
                    raised += len(await self.checks.sink.raise_all(unit, bill.user_id, drafts))
            if len(page) < PAGE:
                return raised
            after = page[-1].bill_id

    async def _budgets(self) -> int:
        raised = 0
        after = ""
        while True:
            async with self.units.begin() as unit:
                page = await storage.budgets_after(unit.session, after, PAGE)
                for budget in page:
                    if await self.erased.refuses(unit.session, budget.user_id):
                        continue
                    calendar = await self.calendars.of(unit.session, budget.user_id)
                    today = today_in(calendar.time_zone, utcnow())
                    tree = await storage.category_tree(unit.session, budget.user_id)
                    [view] = await budget_views(unit.session, [budget], tree, calendar, today)
                    drafts = self.checks.projection_drafts(view, today)
                    raised += len(await self.checks.sink.raise_all(unit, budget.user_id, drafts))
            if len(page) < PAGE:
                return raised
            after = page[-1].budget_id
