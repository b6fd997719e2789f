"""The account export's document (services/user/portability.py) against in-process gRPC
peers that answer as the real services' public calls do, or fail midway: every part in
order, the parts read per budget, bill and month, and a failure that leaves a valid
document saying it is incomplete, then an error status. (The whole mesh's export:
tests/test_account_lifecycle_e2e.py.)"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import date, timedelta
from typing import Any, cast

import grpc
import pytest

from expense.billing.v1 import billing_pb2, billing_pb2_grpc
from expense.ds.v1 import ds_pb2, ds_pb2_grpc
from expense.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from expense.notification.v1 import notification_pb2, notification_pb2_grpc
from expense.reporting.v1 import reporting_pb2, reporting_pb2_grpc
from expense.user.v1 import user_pb2
from services.kit.domain.errors import Internal, Unavailable
from services.kit.grpc.clients import LazyChannel
from services.kit.identity.tokens import Identity
from services.user.accounts import AccountDirectory
from services.user.portability import FORMAT, DataExport, Peers

TOKEN = "caller-token"
TODAY = date.today()
OLDEST = TODAY - timedelta(days=40)
# A monthly bill's due dates, two answered a call: three windows and an empty one.
DUE_DATES = [(OLDEST + timedelta(days=30 * n)).isoformat() for n in range(5)]


def _caller(context: grpc.aio.ServicerContext) -> None:
    """Every call is made with the caller's token, as a client would."""
    assert dict(context.invocation_metadata())["authorization"] == f"Bearer {TOKEN}"


class Ledger(ledger_pb2_grpc.LedgerServiceServicer):
    def __init__(self) -> None:
        # (page, code, message): that page of expenses fails.
        self.failure: tuple[int, grpc.StatusCode, str] | None = None
        self.requests: list[ledger_pb2.ListExpensesRequest] = []

    async def ListCategories(self, request: Any, context: Any) -> ledger_pb2.ListCategoriesResponse:
        _caller(context)
        return ledger_pb2.ListCategoriesResponse(
            categories=[ledger_pb2.Category(category_id="c1", name="Food")]
        )

    async def ListExpenses(self, request: Any, context: Any) -> ledger_pb2.ListExpensesResponse:
        _caller(context)
        self.requests.append(request)
        page = 2 if request.page_token else 1
        if self.failure is not None and self.failure[0] == page:
            await context.abort(self.failure[1], self.failure[2])
        if page == 1:
            first = [ledger_pb2.Expense(expense_id=f"e{n}", spent_on=TODAY.isoformat()) for n in (1, 2)]
            return ledger_pb2.ListExpensesResponse(expenses=first, next_page_token="page-2")
        oldest = ledger_pb2.Expense(expense_id="e3", spent_on=OLDEST.isoformat())
        return ledger_pb2.ListExpensesResponse(expenses=[oldest])


class Billing(billing_pb2_grpc.BillingServiceServicer):
    async def ListBudgets(self, request: Any, context: Any) -> billing_pb2.ListBudgetsResponse:
        _caller(context)
        return billing_pb2.ListBudgetsResponse(budgets=[billing_pb2.Budget(budget_id="b1", currency="INR")])

    async def ListBudgetHistory(self, request: Any, context: Any) -> billing_pb2.ListBudgetHistoryResponse:
        assert (request.budget_id, request.page_size) == ("b1", 120)
        period = billing_pb2.BudgetPeriod(period_start="2026-11-01", spent="10.00")
        return billing_pb2.ListBudgetHistoryResponse(periods=[period], currency="INR")

    async def ListBills(self, request: Any, context: Any) -> billing_pb2.ListBillsResponse:
        bill = billing_pb2.Bill(bill_id="r1", first_due=DUE_DATES[0])
        return billing_pb2.ListBillsResponse(bills=[bill])

    async def ListBillOccurrences(
        self, request: Any, context: Any
    ) -> billing_pb2.ListBillOccurrencesResponse:
        _caller(context)
        due = [day for day in DUE_DATES if day >= getattr(request, "from")][:2]
        return billing_pb2.ListBillOccurrencesResponse(
            occurrences=[billing_pb2.BillOccurrence(due_date=day, status="paid") for day in due]
        )

    async def ListAlerts(self, request: Any, context: Any) -> billing_pb2.ListAlertsResponse:
        return billing_pb2.ListAlertsResponse()


class Notification(notification_pb2_grpc.NotificationServiceServicer):
    async def ListNotifications(
        self, request: Any, context: Any
    ) -> notification_pb2.ListNotificationsResponse:
        return notification_pb2.ListNotificationsResponse()

    async def ListContactPoints(
        self, request: Any, context: Any
    ) -> notification_pb2.ListContactPointsResponse:
        return notification_pb2.ListContactPointsResponse()

    async def GetPreferences(self, request: Any, context: Any) -> notification_pb2.Preferences:
        return notification_pb2.Preferences(time_zone="Asia/Kolkata")


class Ds(ds_pb2_grpc.DsServiceServicer):
    async def ListSmsReviews(self, request: Any, context: Any) -> ds_pb2.ListSmsReviewsResponse:
        return ds_pb2.ListSmsReviewsResponse()


class Reporting(reporting_pb2_grpc.ReportingServiceServicer):
    def __init__(self) -> None:
        self.months: list[str] = []

    async def GetSummary(self, request: Any, context: Any) -> reporting_pb2.Summary:
        _caller(context)
        assert request.period == "month"
        self.months.append(request.date)
        summary = reporting_pb2.Summary(period="month", period_start=request.date)
        if request.date == OLDEST.replace(day=1).isoformat():  # the only month with spending
            summary.currencies.add(currency="INR", total="42.00", count=1)
        return summary


class NoAccounts:
    async def account(self, user_id: str) -> None:
        return None


@pytest.fixture
async def peers() -> AsyncIterator[tuple[Ledger, Reporting, DataExport]]:
    ledger, reporting = Ledger(), Reporting()
    server = grpc.aio.server()
    ledger_pb2_grpc.add_LedgerServiceServicer_to_server(ledger, server)
    billing_pb2_grpc.add_BillingServiceServicer_to_server(Billing(), server)
    notification_pb2_grpc.add_NotificationServiceServicer_to_server(Notification(), server)
    ds_pb2_grpc.add_DsServiceServicer_to_server(Ds(), server)
    reporting_pb2_grpc.add_ReportingServiceServicer_to_server(reporting, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channels = [LazyChannel(f"127.0.0.1:{port}", [], 5.0) for _ in range(5)]
    export = DataExport(Peers(*channels), cast(AccountDirectory, NoAccounts()), 5.0)
    try:
        yield ledger, reporting, export
    finally:
        await export.peers.close()
        await server.stop(None)


async def _document(export: DataExport) -> tuple[str, BaseException | None]:
    identity = Identity("u1", "s1", "t1", 0, token=TOKEN)
    text: list[str] = []
    try:
        async for chunk in export.chunks(identity, user_pb2.Profile(user_id="u1")):
            text.append(chunk)
    except Exception as error:
        return "".join(text), error
    return "".join(text), None


async def test_every_part_in_order_and_a_complete_status_last(
    peers: tuple[Ledger, Reporting, DataExport],
) -> None:
    ledger, reporting, export = peers
    text, error = await _document(export)
    assert error is None
    document = json.loads(text)
    assert list(document) == [
        "format",
        "exported_at",
        "user_id",
        "account",
        "profile",
        "categories",
        "expenses",
        "budgets",
        "budget_history",
        "bills",
        "bill_occurrences",
        "alerts",
        "notifications",
        "contact_points",
        "sms_reviews",
        "monthly_reports",
        "notification_preferences",
        "export_status",
    ]
    assert document["format"] == FORMAT and document["export_status"] == {"complete": True}
    assert [e["expense_id"] for e in document["expenses"]] == ["e1", "e2", "e3"]
    # The export shows no total, so the ledger is not asked to count.
    assert all(request.skip_total_size for request in ledger.requests)
    (history,) = document["budget_history"]
    assert history["budget_id"] == "b1" and history["periods"][0]["spent"] == "10.00"
    (bill,) = document["bill_occurrences"]
    assert bill["bill_id"] == "r1" and [o["due_date"] for o in bill["occurrences"]] == DUE_DATES
    # One summary a month from the oldest expense's month on; months without spending left out.
    asked = sorted(reporting.months)
    assert asked[0] == OLDEST.replace(day=1).isoformat() and len(asked) == len(set(asked)) >= 2
    assert asked[-1] >= TODAY.replace(day=1).isoformat()
    assert [r["period_start"] for r in document["monthly_reports"]] == [asked[0]]
    assert document["notification_preferences"]["time_zone"] == "Asia/Kolkata"


async def test_a_peer_failing_midway_leaves_a_document_that_says_it_is_incomplete(
    peers: tuple[Ledger, Reporting, DataExport],
) -> None:
    ledger, _, export = peers
    ledger.failure = (2, grpc.StatusCode.UNAVAILABLE, "ledger went away")
    text, error = await _document(export)
    # The stream still ends with an error status (UNAVAILABLE: the peer's failure, retryable) ...
    assert isinstance(error, Unavailable) and error.reason == "EXPORT_INCOMPLETE"
    # ... after a document that parses, holds what was read, and says where it stopped.
    document = json.loads(text)
    assert [e["expense_id"] for e in document["expenses"]] == ["e1", "e2"]
    assert "budgets" not in document
    assert document["export_status"] == {
        "complete": False,
        "failed_part": "expenses",
        "error": {"code": "UNAVAILABLE", "message": "ledger went away"},
    }


async def test_a_refused_first_page_is_internal_and_its_list_closed(
    peers: tuple[Ledger, Reporting, DataExport],
) -> None:
    """A peer refusing a call (not a peer failure: a bug of ours) ends as INTERNAL."""
    ledger, _, export = peers
    ledger.failure = (1, grpc.StatusCode.INVALID_ARGUMENT, "bad page token")
    text, error = await _document(export)
    assert isinstance(error, Internal)
    document = json.loads(text)
    assert document["expenses"] == [] and len(document["categories"]) == 1
    assert document["export_status"]["error"]["code"] == "INVALID_ARGUMENT"
