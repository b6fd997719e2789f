"""ReportingService over real gRPC (kit interceptors, real token verification):
isolation, validation errors, the export limit, and the Redis cache path."""

from __future__ import annotations

from datetime import date

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from expense.reporting.v1 import reporting_pb2
from services.kit.domain.ids import new_id
from services.kit.grpc.status import field_violations
from services.ledger.replica import ExpenseLine
from services.reporting import storage
from services.reporting.domain import rollup_deltas
from services.user.client import Preferences
from tests.reporting.harness import Reporting, profile_event
from tests.reporting.reference import Category, Expense, LedgerModel


async def _user_with_spending(reporting: Reporting) -> LedgerModel:
    model = LedgerModel(new_id())
    await reporting.apply(
        profile_event(model.user_id, Preferences("INR", "Asia/Kolkata", "monday", "en")),
        model.add_category(Category(new_id(), "Food")),
    )
    food = next(iter(model.categories))
    await reporting.apply(
        model.create(Expense(new_id(), 12550, "INR", date(2024, 3, 5), food, "Acme")),
        model.create(Expense(new_id(), 450, "INR", date(2024, 3, 6), food, "Bazaar")),
    )
    return model


def _resource_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ResourceInfo:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    info = error_details_pb2.ResourceInfo()
    assert status.details[0].Unpack(info)
    return info


async def test_summary_over_grpc_with_a_verified_token(reporting: Reporting) -> None:
    model = await _user_with_spending(reporting)
    request = reporting_pb2.GetSummaryRequest(period="month", date="2024-03-20")
    summary = await reporting.stub.GetSummary(request, metadata=reporting.tokens.metadata(model.user_id))
    (inr,) = summary.currencies
    assert (summary.period_start, summary.period_end) == ("2024-03-01", "2024-03-31")
    assert (inr.total, inr.count, inr.daily_average) == ("130.00", 2, "4.19")
    assert [m.merchant for m in inr.top_merchants] == ["Acme", "Bazaar"]
    assert [(c.name, c.share_percent) for c in inr.by_category] == [("Food", "100.00")]


async def test_another_users_category_answers_like_a_random_id(reporting: Reporting) -> None:
    owner = await _user_with_spending(reporting)
    stranger = await _user_with_spending(reporting)
    owners_category = next(iter(owner.categories))
    answers = []
    for category_id in (owners_category, new_id()):
        request = reporting_pb2.GetCategoryReportRequest(category_id=category_id, period="month")
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await reporting.stub.GetCategoryReport(
                request, metadata=reporting.tokens.metadata(stranger.user_id)
            )
        info = _resource_info(raised.value)
        assert info.resource_name == category_id
        answers.append((raised.value.code(), raised.value.details(), info.resource_type, info.description))
    assert (
        answers[0] == answers[1] == (grpc.StatusCode.NOT_FOUND, "category not found", "category", "not found")
    )
    # The owner does see it.
    request = reporting_pb2.GetCategoryReportRequest(
        category_id=owners_category, period="month", date="2024-03-01"
    )
    report = await reporting.stub.GetCategoryReport(
        request, metadata=reporting.tokens.metadata(owner.user_id)
    )
    assert report.name == "Food" and report.currencies[0].total == "130.00"


@pytest.mark.parametrize(
    ("method", "request_message", "field"),
    [
        ("GetSummary", reporting_pb2.GetSummaryRequest(period="fortnight"), "period"),
        ("GetSummary", reporting_pb2.GetSummaryRequest(date="2024-13-01"), "date"),
        ("GetSummary", reporting_pb2.GetSummaryRequest(date="20240101"), "date"),
        ("GetSummary", reporting_pb2.GetSummaryRequest(date="1066-10-14"), "date"),
        ("GetTrend", reporting_pb2.GetTrendRequest(count=37), "count"),
        ("GetTrend", reporting_pb2.GetTrendRequest(count=-1), "count"),
        ("GetTrend", reporting_pb2.GetTrendRequest(period="decade"), "period"),
        ("GetCategoryReport", reporting_pb2.GetCategoryReportRequest(), "category_id"),
        ("ExportExpenses", reporting_pb2.ExportExpensesRequest(date="yesterday"), "date"),
    ],
)
async def test_bad_input_is_invalid_argument_naming_the_field(
    reporting: Reporting, method: str, request_message: object, field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await getattr(reporting.stub, method)(request_message, metadata=reporting.tokens.metadata(new_id()))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in field_violations(raised.value)


async def test_no_token_no_report(reporting: Reporting) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await reporting.stub.GetSummary(reporting_pb2.GetSummaryRequest())
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_export_refuses_more_rows_than_the_rpc_may_carry(reporting: Reporting) -> None:
    model = await _user_with_spending(reporting)
    limits = reporting.servicer.reports.settings
    request = reporting_pb2.ExportExpensesRequest(period="month", date="2024-03-01")
    metadata = reporting.tokens.metadata(model.user_id)
    reporting.servicer.reports.settings = limits.model_copy(update={"export_max_rows": 1})
    try:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await reporting.stub.ExportExpenses(request, metadata=metadata)
        assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    finally:
        reporting.servicer.reports.settings = limits
    exported = await reporting.stub.ExportExpenses(request, metadata=metadata)
    assert (exported.filename, exported.row_count) == ("expenses-month-2024-03-01.csv", 2)


async def test_reports_are_cached_until_an_event_for_the_user_arrives(reporting: Reporting) -> None:
    """With Redis a change that bypasses the event handlers stays invisible (the
    cached report is served); one through the handlers is visible at once. Without
    Redis every read goes to the rollups."""
    model = await _user_with_spending(reporting)
    food = next(iter(model.categories))
    request = reporting_pb2.GetSummaryRequest(period="month", date="2024-03-01")
    metadata = reporting.tokens.metadata(model.user_id)
    assert (await reporting.stub.GetSummary(request, metadata=metadata)).currencies[0].total == "130.00"

    # Every rollup of a 1.00 expense, written without an event.
    behind_the_cache = rollup_deltas([(None, ExpenseLine(new_id(), 100, "INR", date(2024, 3, 8), food, ""))])
    async with reporting.db.transaction() as session:
        await storage.apply_deltas(session, {model.user_id: behind_the_cache})
    seen = (await reporting.stub.GetSummary(request, metadata=metadata)).currencies[0]
    expected = ("130.00", 2) if reporting.cache.cache.enabled else ("131.00", 3)
    assert (seen.total, seen.count) == expected

    await reporting.apply(model.create(Expense(new_id(), 1000, "INR", date(2024, 3, 7), food, "Acme")))
    fresh = (await reporting.stub.GetSummary(request, metadata=metadata)).currencies[0]
    assert (fresh.total, fresh.count) == ("141.00", 4)
