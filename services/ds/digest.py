"""The weekly insight digest: once per user and week (of the user's calendar), the
month's insights as an `insight.digest` event for the notification service.

Every `interval_seconds` a round walks the users with spending in the last `active_days`
(ds's rollup). A user's digest row (unique per user and week) is inserted in the same
transaction as the event's outbox row, so a week's digest is published once whatever the
rounds, replicas or restarts: no lease needed, a racing replica's insert finds the row."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from expense.events.v1 import events_pb2
from services.ds import storage
from services.ds.insights import Insight
from services.ds.settings import DigestSettings
from services.ds.storage import Calendar
from services.ds.usecases import InsightComputer
from services.kit.db.engine import Database
from services.kit.db.unit_of_work import UnitsOfWork
from services.kit.domain.periods import period_containing, today_in
from services.kit.domain.timestamps import utcnow

log = logging.getLogger(__name__)
# Users per read of a round.
PAGE = 200


class WeeklyDigest:
    def __init__(
        self,
        db: Database,
        units: UnitsOfWork,
        insights: InsightComputer,
        settings: DigestSettings,
        default_calendar: Calendar,
    ) -> None:
        self.db = db
        self.units = units
        self.insights = insights
        self.settings = settings
        self.default_calendar = default_calendar

    async def run(self) -> None:
        while True:
            try:
                await self.round()
            except Exception:  # the loop outlives a failed round (the database was away)
                log.exception("digest round failed")
            await asyncio.sleep(self.settings.interval_seconds)

    async def round(self, now: datetime | None = None) -> int:
        """One pass over the active users; returns how many digests it published."""
        moment = now or utcnow()
        since = moment.date() - timedelta(days=self.settings.active_days)
        published, after = 0, ""
        while True:
            async with self.db.read() as connection:
                users = await storage.active_users(connection, since, after, PAGE)
            for user_id in users:
                published += await self.digest(user_id, moment)
            if len(users) < PAGE:
                return published
            after = users[-1]

    async def digest(self, user_id: str, now: datetime) -> int:
        async with self.db.read() as connection:
            calendar = await storage.load_calendar(connection, user_id, self.default_calendar)
            week = period_containing("week", today_in(calendar.time_zone, now), calendar.first_day_of_week)
            if await storage.digest_sent(connection, user_id, week.start):
                return 0
        report = await self.insights.compute(user_id, "month", now)
        event = events_pb2.InsightDigest(
            week_start=week.start.isoformat(),
            period_start=report.start.isoformat(),
            period_end=report.end.isoformat(),
            insights=[digest_insight(insight) for insight in report.insights],
        )
        async with self.units.begin() as unit:
            if not await storage.claim_digest(unit.session, user_id, week.start, now):
                return 0  # another round or replica sent it meanwhile
            await unit.publish(user_id, event)
        return 1


def digest_insight(insight: Insight) -> events_pb2.DigestInsight:
    return events_pb2.DigestInsight(
        type=insight.type,
        currency=insight.currency,
        category_id=insight.category_id,
        merchant=insight.merchant,
        facts=insight.facts,
    )
