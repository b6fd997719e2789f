"""ReportingService: requests validated and handed to the use cases (usecases.py),
reports shaped into protos (money as exact decimal strings of each currency,
percentages with two decimals)."""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any, Literal

import grpc
from pydantic import BaseModel, BeforeValidator, Field, model_validator
from typing_extensions import override

from expense.reporting.v1 import reporting_pb2, reporting_pb2_grpc
from services.kit.consistency import written_version
from services.kit.domain.errors import InvalidArgument
from services.kit.domain.money import format_amount
from services.kit.domain.validation import validated
from services.kit.identity.tokens import current_identity
from services.reporting.domain import (
    CategoryShare,
    ChildTotal,
    CurrencyReport,
    TrendPoint,
    currency_series,
    format_hundredths,
)
from services.reporting.usecases import (
    CategoryDetail,
    PeriodSummary,
    PeriodTrend,
    ReportRequests,
    Response,
)

ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$", re.ASCII)
EARLIEST_DATE = date(1900, 1, 1)
LATEST_DATE = date(2999, 12, 31)
CSV_CONTENT_TYPE = "text/csv"
# A custom report period spans at most a (leap) year.
MAX_CUSTOM_DAYS = 366


def _or_default(default: str) -> BeforeValidator:
    return BeforeValidator(
        lambda value: value.strip().lower() or default if isinstance(value, str) else value
    )


TrendKind = Annotated[Literal["week", "month", "quarter", "year"], _or_default("month")]
PeriodKind = Annotated[Literal["week", "month", "quarter", "year", "custom"], _or_default("month")]


def _iso_date(value: Any) -> date | None:
    if value in ("", None):
        return None
    if not isinstance(value, str) or not ISO_DATE.match(value):
        raise ValueError("must be an ISO 8601 date such as 2026-11-21")
    try:
        parsed = date.fromisoformat(value)
    except ValueError:
        raise ValueError("is not a calendar date") from None
    if not EARLIEST_DATE <= parsed <= LATEST_DATE:
        raise ValueError(f"must lie between {EARLIEST_DATE} and {LATEST_DATE}")
    return parsed


IsoDate = Annotated[date | None, BeforeValidator(_iso_date)]


class PeriodQuery(BaseModel):
    """A calendar period holding `date` (default today), or period "custom" from `from` to `to`."""

    period: PeriodKind = "month"
    # Named `day` here so it does not shadow the type; the request field is `date`.
    day: IsoDate = Field(None, alias="date")
    first: IsoDate = Field(None, alias="from")
    last: IsoDate = Field(None, alias="to")

    @model_validator(mode="after")
    def _custom_range(self) -> PeriodQuery:
        if self.period != "custom":
            if self.first or self.last:
                raise InvalidArgument.of("from", 'from and to are for period "custom" only')
            return self
        if self.first is None or self.last is None:
            raise InvalidArgument.of("from" if self.first is None else "to", 'required with period "custom"')
        if self.last < self.first:
            raise InvalidArgument.of("to", "must not be before from")
        if (self.last - self.first).days + 1 > MAX_CUSTOM_DAYS:
            raise InvalidArgument.of("to", f"a custom period spans at most {MAX_CUSTOM_DAYS} days")
        return self

    @property
    def custom(self) -> tuple[date, date] | None:
        return (self.first, self.last) if self.first and self.last else None


class CategoryQuery(PeriodQuery):
    category_id: str = Field(min_length=1, max_length=64)


class TrendQuery(BaseModel):
    period: TrendKind = "month"
    count: int
    end: IsoDate = None


def _money(minor: int, currency: str) -> str:
    return format_amount(minor, currency)


def _category_total(share: CategoryShare, currency: str) -> reporting_pb2.CategoryTotal:
    return reporting_pb2.CategoryTotal(
        category_id=share.category_id,
        name=share.name,
        total=_money(share.total.sum_minor, currency),
        count=share.total.count,
        share_percent=format_hundredths(share.share_hundredths),
    )


def currency_summary(report: CurrencyReport) -> reporting_pb2.CurrencySummary:
    currency = report.currency
    change = report.change_hundredths
    return reporting_pb2.CurrencySummary(
        currency=currency,
        total=_money(report.total.sum_minor, currency),
        count=report.total.count,
        daily_average=_money(report.daily_average_minor, currency),
        previous_total=_money(report.previous.sum_minor, currency),
        change_percent=format_hundredths(change) if change is not None else "",
        by_category=[_category_total(share, currency) for share in report.by_category],
        series=[
            reporting_pb2.SeriesPoint(
                start=point.start.isoformat(),
                end=point.end.isoformat(),
                total=_money(point.total.sum_minor, currency),
                count=point.total.count,
            )
            for point in report.series
        ],
        top_merchants=[
            reporting_pb2.MerchantTotal(
                merchant=merchant.merchant,
                total=_money(merchant.total.sum_minor, currency),
                count=merchant.total.count,
            )
            for merchant in report.top_merchants
        ],
    )


def _child_total(child: ChildTotal) -> reporting_pb2.CategoryTotal:
    message = reporting_pb2.CategoryTotal(category_id=child.category_id, name=child.name, count=child.count)
    if child.currency is not None and child.total is not None and child.share_hundredths is not None:
        message.total = _money(child.total.sum_minor, child.currency)
        message.share_percent = format_hundredths(child.share_hundredths)
    return message


def _trend_point(point: TrendPoint) -> reporting_pb2.TrendPoint:
    return reporting_pb2.TrendPoint(
        period_start=point.period.start.isoformat(),
        period_end=point.period.end.isoformat(),
        currency=point.currency,
        total=_money(point.total.sum_minor, point.currency),
        count=point.total.count,
        by_category=[_category_total(share, point.currency) for share in point.by_category],
    )


def summary_message(summary: PeriodSummary) -> reporting_pb2.Summary:
    period = summary.period
    return reporting_pb2.Summary(
        period=period.kind,
        period_start=period.start.isoformat(),
        period_end=period.end.isoformat(),
        currencies=[currency_summary(report) for report in summary.currencies],
    )


def trend_message(trend: PeriodTrend) -> reporting_pb2.Trend:
    series = [
        reporting_pb2.CurrencyTrend(currency=currency, points=[_trend_point(point) for point in points])
        for currency, points in currency_series(trend.points).items()
    ]
    return reporting_pb2.Trend(
        period=trend.kind, points=[_trend_point(point) for point in trend.points], series=series
    )


def category_report_message(detail: CategoryDetail) -> reporting_pb2.CategoryReport:
    period = detail.period
    return reporting_pb2.CategoryReport(
        category_id=detail.category_id,
        name=detail.name,
        period=period.kind,
        period_start=period.start.isoformat(),
        period_end=period.end.isoformat(),
        currencies=[currency_summary(report) for report in detail.currencies],
        children=[_child_total(child) for child in detail.children],
    )


def period_fields(request: Any) -> dict[str, Any]:
    """A report request's period fields (`from` is a Python keyword)."""
    fields = {"period": request.period, "date": request.date}
    if hasattr(request, "to"):
        fields |= {"from": getattr(request, "from"), "to": request.to}
    return fields


SUMMARY = Response(reporting_pb2.Summary, summary_message)
TREND = Response(reporting_pb2.Trend, trend_message)
CATEGORY_REPORT = Response(reporting_pb2.CategoryReport, category_report_message)


class ReportingServicer(reporting_pb2_grpc.ReportingServiceServicer):
    def __init__(self, reports: ReportRequests) -> None:
        self.reports = reports

    @override
    async def GetSummary(
        self, request: reporting_pb2.GetSummaryRequest, context: grpc.aio.ServicerContext
    ) -> reporting_pb2.Summary:
        query = validated(PeriodQuery, period_fields(request))
        return await self.reports.summary(
            current_identity(), query.period, query.day, SUMMARY, written_version(context), query.custom
        )

    @override
    async def GetTrend(
        self, request: reporting_pb2.GetTrendRequest, context: grpc.aio.ServicerContext
    ) -> reporting_pb2.Trend:
        query = validated(TrendQuery, {"period": request.period, "count": request.count, "end": request.end})
        return await self.reports.trend(
            current_identity(), query.period, query.count, TREND, written_version(context), query.end
        )

    @override
    async def GetCategoryReport(
        self, request: reporting_pb2.GetCategoryReportRequest, context: grpc.aio.ServicerContext
    ) -> reporting_pb2.CategoryReport:
        query = validated(CategoryQuery, {"category_id": request.category_id, **period_fields(request)})
        return await self.reports.category(
            current_identity(),
            query.category_id,
            query.period,
            query.day,
            CATEGORY_REPORT,
            written_version(context),
            query.custom,
        )

    @override
    async def ExportExpenses(
        self, request: reporting_pb2.ExportExpensesRequest, context: object
    ) -> reporting_pb2.ExportExpensesResponse:
        query = validated(PeriodQuery, {"period": request.period, "date": request.date})
        export = await self.reports.export(current_identity(), query.period, query.day)
        return reporting_pb2.ExportExpensesResponse(
            filename=export.filename,
            content_type=CSV_CONTENT_TYPE,
            csv=export.csv,
            row_count=export.row_count,
        )
