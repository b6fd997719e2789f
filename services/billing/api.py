"""BillingService (public, REST through the gateways): requests -> validated inputs,
one use case per RPC (usecases.py). The kit's interceptor maps errors to statuses.
The owner is always the verified caller (current_identity()), never a request field."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf.message import Message
from typing_extensions import override

from expense.billing.v1 import billing_pb2, billing_pb2_grpc
from services.billing.inputs import (
    BillInput,
    BudgetInput,
    DateRangeInput,
    MutedRulesInput,
    PaymentInput,
    RequestIdInput,
)
from services.billing.settings import BillingSettings
from services.billing.usecases import Alerts, Bills, Budgets
from services.kit.consistency import written_version
from services.kit.db.idempotency import fingerprint
from services.kit.domain.errors import InvalidArgument
from services.kit.domain.validation import parse_update_mask, validated
from services.kit.grpc.etags import requested_etag, send_etag
from services.kit.identity.tokens import current_identity

SERVICE_NAME = "expense.billing.v1.BillingService"
BUDGET_UPDATABLE = ("category_id", "amount", "currency", "rollover", "thresholds")
BILL_UPDATABLE = (
    "payee",
    "amount",
    "currency",
    "category_id",
    "recurrence",
    "first_due",
    "remind_days_before",
    "autopay",
)
MAX_ID_LENGTH = 64


class BillingServicer(billing_pb2_grpc.BillingServiceServicer):
    def __init__(self, budgets: Budgets, bills: Bills, alerts: Alerts, settings: BillingSettings) -> None:
        self.budgets = budgets
        self.bills = bills
        self.alerts = alerts
        self.settings = settings

    # ------------------------------------------------------------ budgets

    @override
    async def CreateBudget(
        self, request: billing_pb2.CreateBudgetRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.Budget:
        user_id = current_identity().user_id
        validated(RequestIdInput, {"request_id": request.request_id})
        fields = validated(BudgetInput, budget_fields(request), context=self.settings)
        created = await self.budgets.create(user_id, fields, request.request_id, request_fingerprint(request))
        await send_etag(context, created.etag)
        return created

    @override
    async def GetBudget(
        self, request: billing_pb2.GetBudgetRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.Budget:
        budget = await self.budgets.get(
            current_identity().user_id, required_id(request.budget_id, "budget_id"), written_version(context)
        )
        await send_etag(context, budget.etag)
        return budget

    @override
    async def ListBudgets(
        self, request: billing_pb2.ListBudgetsRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.ListBudgetsResponse:
        return await self.budgets.list(
            current_identity().user_id, request.page_size, request.page_token, written_version(context)
        )

    @override
    async def UpdateBudget(
        self, request: billing_pb2.UpdateBudgetRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.Budget:
        budget_id = required_id(request.budget_id, "budget_id")
        paths = mask_paths(request.update_mask, BUDGET_UPDATABLE, request.budget)
        requested = {path: field_value(request.budget, path) for path in paths}
        etag = requested_etag(context, request.etag or request.budget.etag)
        updated = await self.budgets.update(current_identity().user_id, budget_id, etag, requested)
        await send_etag(context, updated.etag)
        return updated

    @override
    async def DeleteBudget(
        self, request: billing_pb2.DeleteBudgetRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.DeleteBudgetResponse:
        budget_id = required_id(request.budget_id, "budget_id")
        etag = requested_etag(context, request.etag)
        await self.budgets.delete(current_identity().user_id, budget_id, etag)
        return billing_pb2.DeleteBudgetResponse()

    @override
    async def ListBudgetHistory(
        self, request: billing_pb2.ListBudgetHistoryRequest, context: object
    ) -> billing_pb2.ListBudgetHistoryResponse:
        budget_id = required_id(request.budget_id, "budget_id")
        if request.page_size < 0:
            raise InvalidArgument.of("page_size", "must not be negative")
        return await self.budgets.history(current_identity().user_id, budget_id, request.page_size)

    # ------------------------------------------------------------ bills

    @override
    async def CreateBill(
        self, request: billing_pb2.CreateBillRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.Bill:
        user_id = current_identity().user_id
        validated(RequestIdInput, {"request_id": request.request_id})
        fields = validated(BillInput, bill_fields(request), context=self.settings)
        created = await self.bills.create(user_id, fields, request.request_id, request_fingerprint(request))
        await send_etag(context, created.etag)
        return created

    @override
    async def GetBill(
        self, request: billing_pb2.GetBillRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.Bill:
        bill = await self.bills.get(current_identity().user_id, required_id(request.bill_id, "bill_id"))
        await send_etag(context, bill.etag)
        return bill

    @override
    async def ListBills(
        self, request: billing_pb2.ListBillsRequest, context: object
    ) -> billing_pb2.ListBillsResponse:
        return await self.bills.list(current_identity().user_id, request.page_size, request.page_token)

    @override
    async def UpdateBill(
        self, request: billing_pb2.UpdateBillRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.Bill:
        bill_id = required_id(request.bill_id, "bill_id")
        paths = mask_paths(request.update_mask, BILL_UPDATABLE, request.bill)
        requested = {path: field_value(request.bill, path) for path in paths}
        etag = requested_etag(context, request.etag or request.bill.etag)
        updated = await self.bills.update(current_identity().user_id, bill_id, etag, requested)
        await send_etag(context, updated.etag)
        return updated

    @override
    async def DeleteBill(
        self, request: billing_pb2.DeleteBillRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.DeleteBillResponse:
        bill_id = required_id(request.bill_id, "bill_id")
        await self.bills.delete(current_identity().user_id, bill_id, requested_etag(context, request.etag))
        return billing_pb2.DeleteBillResponse()

    @override
    async def ListBillOccurrences(
        self, request: billing_pb2.ListBillOccurrencesRequest, context: object
    ) -> billing_pb2.ListBillOccurrencesResponse:
        bill_id = required_id(request.bill_id, "bill_id")
        window = validated(DateRangeInput, {"from": getattr(request, "from"), "to": request.to})
        return await self.bills.occurrences(current_identity().user_id, bill_id, window.start, window.end)

    @override
    async def PayBillOccurrence(
        self, request: billing_pb2.PayBillOccurrenceRequest, context: object
    ) -> billing_pb2.BillOccurrence:
        user_id = current_identity().user_id
        bill_id = required_id(request.bill_id, "bill_id")
        payment = validated(
            PaymentInput, {"due_date": request.due_date, "amount": request.amount, "paid_on": request.paid_on}
        )
        return await self.bills.pay(user_id, bill_id, payment.due_date, request.amount, payment.paid_on)

    @override
    async def SkipBillOccurrence(
        self, request: billing_pb2.SkipBillOccurrenceRequest, context: object
    ) -> billing_pb2.BillOccurrence:
        bill_id = required_id(request.bill_id, "bill_id")
        payment = validated(PaymentInput, {"due_date": request.due_date, "amount": "", "paid_on": ""})
        return await self.bills.skip(current_identity().user_id, bill_id, payment.due_date)

    @override
    async def ListBillSuggestions(
        self, request: billing_pb2.ListBillSuggestionsRequest, context: object
    ) -> billing_pb2.ListBillSuggestionsResponse:
        return await self.bills.list_suggestions(current_identity().user_id)

    @override
    async def AcceptBillSuggestion(
        self, request: billing_pb2.AcceptBillSuggestionRequest, context: object
    ) -> billing_pb2.Bill:
        user_id = current_identity().user_id
        validated(RequestIdInput, {"request_id": request.request_id})
        suggestion_id = required_id(request.suggestion_id, "suggestion_id")
        return await self.bills.accept(
            user_id,
            suggestion_id,
            request.category_id,
            request.remind_days_before,
            request.request_id,
            request_fingerprint(request),
        )

    # ------------------------------------------------------------ alerts

    @override
    async def ListAlerts(
        self, request: billing_pb2.ListAlertsRequest, context: object
    ) -> billing_pb2.ListAlertsResponse:
        return await self.alerts.list(
            current_identity().user_id, request.page_size, request.page_token, request.unacknowledged_only
        )

    @override
    async def AcknowledgeAlert(
        self, request: billing_pb2.AcknowledgeAlertRequest, context: object
    ) -> billing_pb2.Alert:
        return await self.alerts.acknowledge(
            current_identity().user_id, required_id(request.alert_id, "alert_id")
        )

    @override
    async def GetAlertSettings(
        self, request: billing_pb2.GetAlertSettingsRequest, context: object
    ) -> billing_pb2.AlertSettings:
        return await self.alerts.settings_of(current_identity().user_id)

    @override
    async def UpdateAlertSettings(
        self, request: billing_pb2.UpdateAlertSettingsRequest, context: object
    ) -> billing_pb2.AlertSettings:
        muted = validated(MutedRulesInput, {"muted": list(request.muted)})
        return await self.alerts.mute(current_identity().user_id, muted.muted)


def budget_fields(request: billing_pb2.CreateBudgetRequest) -> dict[str, Any]:
    return {
        "category_id": request.category_id,
        "period": request.period,
        "amount": request.amount,
        "currency": request.currency,
        "rollover": request.rollover,
        "thresholds": list(request.thresholds),
        "start_date": request.start_date,
    }


def bill_fields(request: billing_pb2.CreateBillRequest) -> dict[str, Any]:
    return {name: getattr(request, name) for name in BILL_UPDATABLE}


def request_fingerprint(request: Message) -> str:
    """What an AIP-155 retry must repeat exactly (nothing without a request_id)."""
    return fingerprint(request) if getattr(request, "request_id", "") else ""


def required_id(value: str, field: str) -> str:
    text = value.strip()
    if not text:
        raise InvalidArgument.of(field, "required")
    if len(text) > MAX_ID_LENGTH:
        raise InvalidArgument.of(field, "not a valid id")
    return text


def mask_paths(mask: str, updatable: tuple[str, ...], message: Message) -> list[str]:
    """AIP-134: the named paths ("*" for all); without a mask, the fields set in the body."""
    if mask.strip() == "*":
        return list(updatable)
    if mask.strip():
        return parse_update_mask(mask, set(updatable))
    paths = [path for path in updatable if field_value(message, path) not in ("", 0, False, [])]
    if not paths:
        raise InvalidArgument.of("update_mask", "names no field to change")
    return paths


def field_value(message: Message, path: str) -> Any:
    value = getattr(message, path)
    return list(value) if path == "thresholds" else value
