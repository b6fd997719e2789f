"""The reporting service's use cases. Its RPCs are reads: ReportRequests answers
them for the caller (their calendar resolved, the finished report served from the
cache or computed, the limits applied), and Reports computes the figures from the
rollups. Reporting's writes come from events (events.py, each applied in its
consumer's inbox transaction) and from the rebuild command (rebuild.py).

Reports read which rollup table answers which question outside any transaction,
then shape the rows by the domain rules. They never read line items, except for
the CSV export, whose whole point is line items.

A report's rollup figures come from one statement, so they agree with each other.
The category tree is read by the statement before: categories and expenses come
through consumers of their own, so a tree a moment older than the rollups is a
state reporting can be in anyway (and no BEGIN/COMMIT round trips per report)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Generic, TypeVar

from google.protobuf.message import Message

from services.kit.consistency import Consistency, WrittenVersion
from services.kit.db.engine import Database
from services.kit.domain.errors import FailedPrecondition, InvalidArgument, NotFound
from services.kit.domain.periods import CUSTOM, Period, last_periods, period_containing, today_in
from services.kit.domain.timestamps import utcnow
from services.kit.identity.tokens import Identity
from services.kit.responses import ResponseCache
from services.reporting import storage
from services.reporting.domain import (
    ChildTotal,
    CurrencyReport,
    Rollup,
    TrendPoint,
    child_totals,
    currency_reports,
    expenses_csv,
    export_filename,
    quarters_of_months,
    trend_points,
)
from services.reporting.preferences import PreferenceSource
from services.reporting.settings import ReportingSettings

ResultT = TypeVar("ResultT")
MessageT = TypeVar("MessageT", bound=Message)
Clock = Callable[[], datetime]


@dataclass(frozen=True)
class Viewer:
    """Whose reports, and in which calendar."""

    user_id: str
    today: date
    first_day_of_week: str
    default_currency: str

    def period(self, kind: str, day: date | None, custom: tuple[date, date] | None = None) -> Period:
        """The period of this kind holding `day`, by default the viewer's today; for
        kind "custom", the `custom` range itself."""
        if kind == CUSTOM:
            if custom is None:
                raise InvalidArgument.of("from", 'required with period "custom"')
            return Period(CUSTOM, *custom)
        return period_containing(kind, day or self.today, self.first_day_of_week)


@dataclass(frozen=True)
class PeriodSummary:
    period: Period
    currencies: list[CurrencyReport]


@dataclass(frozen=True)
class PeriodTrend:
    kind: str
    points: list[TrendPoint]


@dataclass(frozen=True)
class CategoryDetail:
    category_id: str
    name: str
    period: Period
    currencies: list[CurrencyReport]
    children: list[ChildTotal]


@dataclass(frozen=True)
class Export:
    filename: str
    csv: str
    row_count: int


@dataclass(frozen=True)
class Response(Generic[ResultT, MessageT]):
    """How the API layer turns a report into its response message. The cache keeps
    finished responses, so a use case that may answer from it needs both."""

    message_type: type[MessageT]
    render: Callable[[ResultT], MessageT]


class ReportRequests:
    """The report RPCs' use cases, for the caller `identity`."""

    def __init__(
        self,
        reports: Reports,
        preferences: PreferenceSource,
        cache: ResponseCache,
        settings: ReportingSettings,
        clock: Clock = utcnow,
    ) -> None:
        self.reports = reports
        self.preferences = preferences
        self.cache = cache
        self.settings = settings
        self.clock = clock

    async def summary(
        self,
        identity: Identity,
        kind: str,
        day: date | None,
        response: Response[PeriodSummary, MessageT],
        written: WrittenVersion | None = None,
        custom: tuple[date, date] | None = None,
    ) -> MessageT:
        viewer = await self._viewer(identity)
        period = viewer.period(kind, day, custom)

        async def report() -> PeriodSummary:
            return PeriodSummary(period, await self.reports.summary(viewer, period))

        parts = ("summary", period.kind, period.start.isoformat(), period.end.isoformat())
        return await self._cached(viewer, parts, response, report, written)

    async def trend(
        self,
        identity: Identity,
        kind: str,
        count: int,
        response: Response[PeriodTrend, MessageT],
        written: WrittenVersion | None = None,
        end: date | None = None,
    ) -> MessageT:
        """The `count` periods (0: the configured default) ending with the one holding
        `end` (default today)."""
        count = count or self.settings.trend_default_count
        if not 1 <= count <= self.settings.trend_max_count:
            raise InvalidArgument.of("count", f"must be between 1 and {self.settings.trend_max_count}")
        viewer = await self._viewer(identity)
        last_day = end or viewer.today

        async def report() -> PeriodTrend:
            return PeriodTrend(kind, await self.reports.trend(viewer, kind, count, last_day))

        parts = ("trend", kind, str(count), viewer.first_day_of_week, last_day.isoformat())
        return await self._cached(viewer, parts, response, report, written)

    async def category(
        self,
        identity: Identity,
        category_id: str,
        kind: str,
        day: date | None,
        response: Response[CategoryDetail, MessageT],
        written: WrittenVersion | None = None,
        custom: tuple[date, date] | None = None,
    ) -> MessageT:
        viewer = await self._viewer(identity)
        period = viewer.period(kind, day, custom)
        parts = ("category", category_id, period.kind, period.start.isoformat(), period.end.isoformat())
        return await self._cached(
            viewer, parts, response, lambda: self.reports.category(viewer, category_id, period), written
        )

    async def export(
        self, identity: Identity, kind: str, day: date | None, custom: tuple[date, date] | None = None
    ) -> Export:
        """At most what one response may carry; the export command has no limit."""
        viewer = await self._viewer(identity)
        export = await self.reports.export(
            viewer.user_id, viewer.period(kind, day, custom), self.settings.export_max_rows
        )
        # What the gateway must buffer is the JSON string (CSV quotes and line ends get escaped).
        encoded_bytes = len(json.dumps(export.csv))
        if encoded_bytes > self.settings.export_max_bytes:
            raise FailedPrecondition(
                f"this export is {encoded_bytes // 1024} KiB, more than the "
                f"{self.settings.export_max_bytes // 1024} KiB one response may carry; export a shorter "
                "period, or use `python -m services.reporting export`"
            )
        return export

    async def _viewer(self, identity: Identity) -> Viewer:
        preferences = await self.preferences.get(identity)
        return Viewer(
            user_id=identity.user_id,
            today=today_in(preferences.time_zone, self.clock()),
            first_day_of_week=preferences.first_day_of_week,
            default_currency=preferences.default_currency,
        )

    async def _cached(
        self,
        viewer: Viewer,
        parts: tuple[str, ...],
        response: Response[ResultT, MessageT],
        report: Callable[[], Awaitable[ResultT]],
        written: WrittenVersion | None = None,
    ) -> MessageT:
        async def compute() -> MessageT:
            return response.render(await report())

        if written is not None:
            # Read-your-writes: computed once the write is applied, never from the cache
            # (an entry computed just before the event may not be invalidated yet).
            await self.reports.wait_for(viewer.user_id, written)
            return await compute()
        # "today" and the currency order are inputs of every report, so they are part of the key.
        key = (*parts, viewer.today.isoformat(), viewer.default_currency)
        return await self.cache.get_or_compute(viewer.user_id, key, response.message_type, compute)


# Per period kind, the rollups read. Totals and merchants: the period's own grain, one
# row per key (a week reads its days). Series: the days of a week or month, the
# months of a year.
TOTALS_ROLLUP = {
    "week": Rollup.DAILY_CATEGORY,
    "month": Rollup.MONTHLY_CATEGORY,
    "quarter": Rollup.MONTHLY_CATEGORY,
    "year": Rollup.YEARLY_CATEGORY,
    CUSTOM: Rollup.DAILY_CATEGORY,
}
MERCHANTS_ROLLUP = {
    "week": Rollup.DAILY_MERCHANT,
    "month": Rollup.MONTHLY_MERCHANT,
    "quarter": Rollup.MONTHLY_MERCHANT,
    "year": Rollup.YEARLY_MERCHANT,
    CUSTOM: Rollup.DAILY_MERCHANT,
}
SERIES_ROLLUP = {
    "week": Rollup.DAILY_CATEGORY,
    "month": Rollup.DAILY_CATEGORY,
    "quarter": Rollup.MONTHLY_CATEGORY,
    "year": Rollup.MONTHLY_CATEGORY,
    CUSTOM: Rollup.DAILY_CATEGORY,
}


class Reports:
    """Report figures from the rollups, for a viewer and a period."""

    def __init__(self, db: Database, settings: ReportingSettings) -> None:
        self.db = db
        self.settings = settings

    async def wait_for(self, user_id: str, written: WrittenVersion) -> None:
        """Returns once reporting's copy of the expense holds the write's version (or a
        later one); past consistency_wait_seconds, UNAVAILABLE: never figures without it."""
        await Consistency(
            self.db,
            storage.expense_version,
            self.settings.consistency_wait_seconds,
            self.settings.consistency_poll_seconds,
            "reports",
        ).wait_for(user_id, written)

    async def summary(self, viewer: Viewer, period: Period) -> list[CurrencyReport]:
        async with self.db.read() as connection:
            tree = await storage.category_tree(connection, viewer.user_id)
            rows = await storage.period_rows(connection, viewer.user_id, self._reads(period))
        return currency_reports(period, viewer.today, rows, tree, tree.top_level, viewer.default_currency)

    async def category(self, viewer: Viewer, category_id: str, period: Period) -> CategoryDetail:
        async with self.db.read() as connection:
            tree = await storage.category_tree(connection, viewer.user_id)
            # Another user's category is simply not in this user's tree: same answer as a random id.
            if category_id not in tree:
                raise NotFound("category", category_id)
            members = tree.members(category_id)
            rows = await storage.period_rows(connection, viewer.user_id, self._reads(period), members)
        reports = currency_reports(
            period,
            viewer.today,
            rows,
            tree,
            lambda member: tree.branch_under(category_id, member),
            viewer.default_currency,
        )
        children = child_totals(tree, category_id, reports)
        return CategoryDetail(category_id, tree.name(category_id), period, reports, children)

    async def trend(self, viewer: Viewer, kind: str, count: int, end: date) -> list[TrendPoint]:
        periods = last_periods(kind, end, count, viewer.first_day_of_week)
        async with self.db.read() as connection:
            tree = await storage.category_tree(connection, viewer.user_id)
            rows = await storage.bucket_totals(
                connection,
                TOTALS_ROLLUP[kind],
                viewer.user_id,
                periods[0].start,
                periods[-1].end,
                weeks=kind == "week",
            )
        if kind == "quarter":
            rows = quarters_of_months(rows)
        return trend_points(periods, rows, tree, viewer.default_currency)

    async def export(self, user_id: str, period: Period, max_rows: int | None) -> Export:
        async with self.db.read() as connection:
            limit = max_rows + 1 if max_rows is not None else None
            lines = await storage.expense_lines(connection, user_id, period.start, period.end, limit)
            if max_rows is not None and len(lines) > max_rows:
                raise FailedPrecondition(
                    f"more than {max_rows} expenses in this period; export a shorter period "
                    "or use `python -m services.reporting export`"
                )
            tree = await storage.category_tree(connection, user_id)
        text, rows = expenses_csv(lines, tree)
        return Export(export_filename(period), text, rows)

    def _reads(self, period: Period) -> storage.PeriodReads:
        previous = period.previous()
        return storage.PeriodReads(
            series=SERIES_ROLLUP[period.kind],
            totals=TOTALS_ROLLUP[period.kind],
            merchants=MERCHANTS_ROLLUP[period.kind],
            start=period.start,
            end=period.end,
            previous_start=previous.start,
            previous_end=previous.end,
            top_merchants=self.settings.top_merchants,
        )
