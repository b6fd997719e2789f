"""The monthly report source: report.monthly_ready with last month's summary, published
on the first day of each month in the user's time zone (the notification service mails
it, rendered from config/templates/report.monthly.toml).

One replica at a time runs the rounds, holding a lease row (renewed each round; a replica
that dies loses it after lease_seconds). Each report is claimed by its (user, month) key
in the same transaction as its outbox row, so it goes out once whatever the replicas,
rounds or restarts do. A round after downtime catches up within `catch_up_days` of the
month's start; a month without spending sends nothing."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from datetime import date, datetime, timedelta

from expense.events.v1 import events_pb2
from services.kit.db.unit_of_work import UnitsOfWork
from services.kit.domain.money import format_amount
from services.kit.domain.periods import Period, period_containing, today_in
from services.reporting import storage
from services.reporting.domain import CurrencyReport, format_hundredths
from services.reporting.preferences import StoredPreferences
from services.reporting.settings import MonthlySettings
from services.reporting.usecases import Clock, Reports, Viewer

log = logging.getLogger(__name__)

LEASE = "reporting.monthly"
# Users per page of a round.
PAGE = 200
# Time zones run from UTC-12 to UTC+14: a user's date is the UTC date or a day off.
ZONE_SPREAD = timedelta(days=1)


def month_key(month: Period) -> str:
    return month.start.strftime("%Y-%m")


def month_to_report(today: date, catch_up_days: int) -> Period | None:
    """Last month, while `today` (the user's) is within the first catch_up_days of this one."""
    if today.day > catch_up_days:
        return None
    return period_containing("month", today).previous()


def may_be_due_somewhere(utc_today: date, catch_up_days: int) -> bool:
    """Whether some time zone's date is within the first catch_up_days of a month: the
    rounds skip every user the rest of the month."""
    return any(
        month_to_report(utc_today + offset, catch_up_days) is not None
        for offset in (-ZONE_SPREAD, timedelta(0), ZONE_SPREAD)
    )


def monthly_report_ready(
    user_id: str, month: Period, time_zone: str, locale: str, reports: list[CurrencyReport], top: int
) -> events_pb2.MonthlyReportReady:
    currencies = [
        events_pb2.MonthlyCurrencySummary(
            currency=report.currency,
            total=format_amount(report.total.sum_minor, report.currency),
            previous_total=format_amount(report.previous.sum_minor, report.currency),
            change_percent=""
            if report.change_hundredths is None
            else format_hundredths(report.change_hundredths),
            top_categories=[
                events_pb2.MonthlyCategoryAmount(
                    category_id=share.category_id,
                    name=share.name,
                    amount=format_amount(share.total.sum_minor, report.currency),
                )
                for share in report.by_category[:top]
            ],
        )
        for report in sorted(reports, key=lambda r: (-r.total.sum_minor, r.currency))
        if report.total.count
    ]
    return events_pb2.MonthlyReportReady(
        user_id=user_id, month=month_key(month), time_zone=time_zone, locale=locale, currencies=currencies
    )


class MonthlyReports:
    def __init__(
        self,
        units: UnitsOfWork,
        reports: Reports,
        preferences: StoredPreferences,
        settings: MonthlySettings,
        clock: Clock,
    ) -> None:
        self.units = units
        self.reports = reports
        self.preferences = preferences
        self.settings = settings
        self.clock = clock
        self.holder = f"{socket.gethostname()}:{os.getpid()}"

    async def run(self) -> None:
        while True:
            try:
                if await self.take_lease():
                    published = await self.round()
                    if published:
                        log.info("monthly reports published", extra={"count": published})
            except Exception:  # the loop outlives a failed round (the database was away)
                log.exception("monthly report round failed")
            await asyncio.sleep(self.settings.interval_seconds)

    async def take_lease(self) -> bool:
        now = self.clock()
        until = now + timedelta(seconds=self.settings.lease_seconds)
        async with self.units.begin() as unit:
            return await storage.take_lease(unit.session, LEASE, self.holder, now, until)

    async def round(self) -> int:
        """One pass over the users who spent lately; returns how many reports it published."""
        now = self.clock()
        if not may_be_due_somewhere(now.date(), self.settings.catch_up_days):
            return 0
        # The month before last, in every zone: the report's month and the one it compares to.
        since = period_containing("month", now.date() - ZONE_SPREAD).previous().start
        published, after = 0, ""
        while True:
            async with self.units.db.read() as connection:
                users = await storage.users_with_monthly_spending(connection, since, after, PAGE)
            for user_id in users:
                published += await self.publish_for(user_id, now)
            if len(users) < PAGE:
                return published
            after = users[-1]

    async def publish_for(self, user_id: str, now: datetime) -> bool:
        """Publishes the user's report for last month if it is due and not out yet."""
        preferences = await self.preferences.for_user(user_id)
        today = today_in(preferences.time_zone, now)
        month = month_to_report(today, self.settings.catch_up_days)
        if month is None:
            return False
        async with self.units.db.read() as connection:
            # The rounds of the catch-up days repeat: a report out already costs no summary.
            if await storage.monthly_report_sent(connection, user_id, month_key(month)):
                return False
        viewer = Viewer(user_id, today, preferences.first_day_of_week, preferences.default_currency)
        reports = await self.reports.summary(viewer, month)
        if not any(report.total.count for report in reports):
            return False
        event = monthly_report_ready(
            user_id, month, preferences.time_zone, preferences.locale, reports, self.settings.top_categories
        )
        async with self.units.begin() as unit:
            if not await storage.claim_monthly_report(unit.session, user_id, month_key(month), now):
                return False
            await unit.publish(user_id, event)
        return True
