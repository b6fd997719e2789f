"""Periods in a user's calendar: weeks starting on their first day of week,
calendar months and years, and "today" in their time zone. Reports and budgets
both count spending by these."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

PERIOD_KINDS = ("week", "month", "quarter", "year")
# A range of the caller's choosing (reports): not a calendar period, so no "containing".
CUSTOM = "custom"
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
DEFAULT_FIRST_DAY_OF_WEEK = "monday"


@dataclass(frozen=True)
class Period:
    kind: str
    start: date
    end: date  # inclusive

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def contains(self, day: date) -> bool:
        return self.start <= day <= self.end

    def previous(self) -> Period:
        if self.kind in ("week", CUSTOM):
            length = timedelta(days=self.days)
            return Period(self.kind, self.start - length, self.end - length)
        return period_containing(self.kind, self.start - timedelta(days=1))

    def following(self) -> Period:
        if self.kind in ("week", CUSTOM):
            length = timedelta(days=self.days)
            return Period(self.kind, self.start + length, self.end + length)
        return period_containing(self.kind, self.end + timedelta(days=1))


def period_containing(kind: str, day: date, first_day_of_week: str = DEFAULT_FIRST_DAY_OF_WEEK) -> Period:
    if kind == "week":
        offset = (day.weekday() - weekday_index(first_day_of_week)) % 7
        start = day - timedelta(days=offset)
        return Period(kind, start, start + timedelta(days=6))
    if kind == "month":
        last = calendar.monthrange(day.year, day.month)[1]
        return Period(kind, day.replace(day=1), day.replace(day=last))
    if kind == "quarter":
        first_month = 3 * ((day.month - 1) // 3) + 1
        last = calendar.monthrange(day.year, first_month + 2)[1]
        return Period(kind, date(day.year, first_month, 1), date(day.year, first_month + 2, last))
    if kind == "year":
        return Period(kind, date(day.year, 1, 1), date(day.year, 12, 31))
    raise ValueError(f"unknown period {kind!r}")


def weekday_index(first_day_of_week: str) -> int:
    name = first_day_of_week.strip().lower()
    return WEEKDAYS.index(name) if name in WEEKDAYS else 0


def last_periods(kind: str, today: date, count: int, first_day_of_week: str) -> list[Period]:
    """The `count` periods ending with the one containing today, oldest first."""
    periods = [period_containing(kind, today, first_day_of_week)]
    while len(periods) < count:
        periods.append(periods[-1].previous())
    return periods[::-1]


def today_in(time_zone: str, now: datetime) -> date:
    """The calendar date at `now` where the user lives (UTC when the zone is unknown)."""
    try:
        zone = ZoneInfo(time_zone) if time_zone else ZoneInfo("UTC")
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    return now.astimezone(zone).date()
