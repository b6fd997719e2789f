"""Reports from rollups: which rollup table answers which question, read outside
any transaction, then shaped by the domain rules. Never reads line items, except
for the CSV export, whose whole point is line items.

A report's rollup figures come from one statement, so they agree with each other.
The category tree is read by the statement before: categories and expenses come
through consumers of their own, so a tree a moment older than the rollups is a
state reporting can be in anyway (and no BEGIN/COMMIT round trips per report)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from services.kit.db.engine import Database
from services.kit.domain.errors import FailedPrecondition, NotFound
from services.reporting import storage
from services.reporting.domain import (
    ChildTotal,
    CurrencyReport,
    Period,
    Rollup,
    TrendPoint,
    child_totals,
    currency_reports,
    expenses_csv,
    last_periods,
    trend_points,
)
from services.reporting.settings import ReportingSettings


@dataclass(frozen=True)
class Viewer:
    """Whose reports, and in which calendar."""

    user_id: str
    today: date
    first_day_of_week: str
    default_currency: str


@dataclass(frozen=True)
class CategoryDetail:
    name: str
    currencies: list[CurrencyReport]
    children: list[ChildTotal]


@dataclass(frozen=True)
class Export:
    csv: str
    row_count: int


# Per period kind, the rollups read. Totals and merchants: the period's own grain, one
# row per key (a week reads its days). Series: the days of a week or month, the
# months of a year.
TOTALS_ROLLUP = {
    "week": Rollup.DAILY_CATEGORY,
    "month": Rollup.MONTHLY_CATEGORY,
    "year": Rollup.YEARLY_CATEGORY,
}
MERCHANTS_ROLLUP = {
    "week": Rollup.DAILY_MERCHANT,
    "month": Rollup.MONTHLY_MERCHANT,
    "year": Rollup.YEARLY_MERCHANT,
}
SERIES_ROLLUP = {
    "week": Rollup.DAILY_CATEGORY,
    "month": Rollup.DAILY_CATEGORY,
    "year": Rollup.MONTHLY_CATEGORY,
}


class Reports:
    def __init__(self, db: Database, settings: ReportingSettings) -> None:
        self.db = db
        self.settings = settings

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
        return CategoryDetail(tree.name(category_id), reports, child_totals(tree, category_id, reports))

    async def trend(self, viewer: Viewer, kind: str, count: int) -> list[TrendPoint]:
        periods = last_periods(kind, viewer.today, count, viewer.first_day_of_week)
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
        return Export(text, rows)

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
