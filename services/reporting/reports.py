"""Reports from rollups: which rollup table answers which question, read in one
consistent snapshot, then shaped by the domain rules. Never reads line items,
except for the CSV export, whose whole point is line items."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date

from sqlalchemy.ext.asyncio import AsyncSession

from services.kit.config import ReportingSettings
from services.kit.db import Database
from services.kit.errors import FailedPrecondition, NotFound
from services.reporting import storage
from services.reporting.domain import (
    ChildTotal,
    CurrencyReport,
    Period,
    PeriodRows,
    Rollup,
    Total,
    TrendPoint,
    child_totals,
    currency_reports,
    expenses_csv,
    last_periods,
    series_buckets,
    trend_points,
)


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


def _totals_rollup(kind: str) -> Rollup:
    # Months and years are whole months: the monthly table has them in ≤ 12 rows per key.
    return Rollup.DAILY_CATEGORY if kind == "week" else Rollup.MONTHLY_CATEGORY


def _merchant_rollup(kind: str) -> Rollup:
    return Rollup.DAILY_MERCHANT if kind == "week" else Rollup.MONTHLY_MERCHANT


def _series_rollup(kind: str) -> Rollup:
    return Rollup.MONTHLY_CATEGORY if kind == "year" else Rollup.DAILY_CATEGORY


class Reports:
    def __init__(self, db: Database, settings: ReportingSettings) -> None:
        self.db = db
        self.settings = settings

    async def summary(self, viewer: Viewer, period: Period) -> list[CurrencyReport]:
        async with storage.read_snapshot(self.db) as session:
            tree = await storage.category_tree(session, viewer.user_id)
            rows = await self._period_rows(session, viewer.user_id, period, None)
        return currency_reports(period, viewer.today, rows, tree, tree.top_level, viewer.default_currency)

    async def category(self, viewer: Viewer, category_id: str, period: Period) -> CategoryDetail:
        async with storage.read_snapshot(self.db) as session:
            tree = await storage.category_tree(session, viewer.user_id)
            # Another user's category is simply not in this user's tree: same answer as a random id.
            if category_id not in tree:
                raise NotFound("category", category_id)
            rows = await self._period_rows(session, viewer.user_id, period, tree.members(category_id))
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
        async with storage.read_snapshot(self.db) as session:
            tree = await storage.category_tree(session, viewer.user_id)
            rows = await storage.bucket_totals(
                session, _totals_rollup(kind), viewer.user_id, [(p.start, p.end) for p in periods]
            )
        return trend_points(periods, rows, tree, viewer.default_currency)

    async def export(self, user_id: str, period: Period, max_rows: int | None) -> Export:
        async with storage.read_snapshot(self.db) as session:
            limit = max_rows + 1 if max_rows is not None else None
            lines = await storage.expense_lines(session, user_id, period.start, period.end, limit)
            if max_rows is not None and len(lines) > max_rows:
                raise FailedPrecondition(
                    f"more than {max_rows} expenses in this period; export a shorter period "
                    "or use `python -m services.reporting export`"
                )
            tree = await storage.category_tree(session, user_id)
        text, rows = expenses_csv(lines, tree)
        return Export(text, rows)

    async def _period_rows(
        self, session: AsyncSession, user_id: str, period: Period, category_ids: set[str] | None
    ) -> PeriodRows:
        buckets = await storage.bucket_totals(
            session, _series_rollup(period.kind), user_id, series_buckets(period), category_ids
        )
        by_category: dict[tuple[str, str], Total] = defaultdict(Total)
        by_bucket: dict[tuple[str, int], Total] = defaultdict(Total)
        for (index, currency, category_id), total in buckets.items():
            by_category[(currency, category_id)] += total
            by_bucket[(currency, index)] += total
        previous = period.previous()
        return PeriodRows(
            categories=by_category,
            buckets=by_bucket,
            previous=await storage.currency_totals(
                session, _totals_rollup(period.kind), user_id, previous.start, previous.end, category_ids
            ),
            merchants=await storage.top_merchants(
                session,
                _merchant_rollup(period.kind),
                user_id,
                period.start,
                period.end,
                self.settings.top_merchants,
                category_ids,
            ),
        )
