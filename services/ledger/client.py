"""The ledger's client for other services, through LedgerInternalService: a user's
(or everyone's) categories and expenses, as a consumer's copy holds them, for
rebuilds; and expenses recorded on a user's behalf (billing paying a bill)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

import grpc

from expense.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from services.kit.config.settings import ResilienceSettings
from services.kit.domain.errors import FieldViolation, InvalidArgument
from services.kit.grpc.clients import LazyChannel
from services.kit.grpc.status import field_violations
from services.kit.identity.service_tokens import ServiceTokens
from services.ledger.replica import CategoryInfo, ExpenseLine

LEDGER_INTERNAL_SERVICE = "expense.ledger.v1.LedgerInternalService"


class LedgerClient:
    """Every call carries the caller's service token (the ledger's internal API is
    mesh-internal: [mesh.internal_callers] says which services may call it)."""

    def __init__(
        self,
        target: str,
        timeout_seconds: float,
        tokens: ServiceTokens,
        wait_for_ready: bool = True,
        resilience: ResilienceSettings | None = None,
    ) -> None:
        """wait_for_ready=False for one-shot commands: no ledger is an error to report.
        A service passes `resilience`: the "ledger" breaker and retry budget."""
        self.timeout_seconds = timeout_seconds
        self.tokens = tokens
        self.channel = LazyChannel(
            target, [LEDGER_INTERNAL_SERVICE], timeout_seconds, wait_for_ready, resilience, peer="ledger"
        )

    def _stub(self) -> ledger_pb2_grpc.LedgerInternalServiceStub:
        return ledger_pb2_grpc.LedgerInternalServiceStub(self.channel.get())

    async def users(self) -> set[str]:
        """Everyone with categories (every ledger user has the default set)."""
        request = ledger_pb2.StreamCategoriesRequest()
        metadata = await self.tokens.metadata()
        stream = self._stub().StreamCategories(request, timeout=self.timeout_seconds, metadata=metadata)
        return {category.user_id async for batch in stream for category in batch.categories}

    async def categories(self, user_id: str) -> list[CategoryInfo]:
        request = ledger_pb2.StreamCategoriesRequest(user_id=user_id)
        metadata = await self.tokens.metadata()
        stream = self._stub().StreamCategories(request, timeout=self.timeout_seconds, metadata=metadata)
        return [
            CategoryInfo(category.category_id, category.name, category.parent_id)
            async for batch in stream
            for category in batch.categories
        ]

    async def expenses(self, user_id: str) -> list[ExpenseLine]:
        request = ledger_pb2.StreamExpensesRequest(user_id=user_id)
        metadata = await self.tokens.metadata()
        stream = self._stub().StreamExpenses(request, timeout=self.timeout_seconds, metadata=metadata)
        return [
            ExpenseLine(
                expense_id=expense.expense_id,
                amount_minor=expense.amount_minor,
                currency=expense.currency,
                spent_on=date.fromisoformat(expense.spent_on),
                category_id=expense.category_id,
                merchant=expense.merchant,
            )
            async for batch in stream
            for expense in batch.expenses
        ]

    async def create_expense_for(
        self,
        user_id: str,
        source: str,
        expense: ledger_pb2.CreateExpenseRequest,
        fields: Mapping[str, str] | None = None,
    ) -> ledger_pb2.Expense:
        """Idempotent by expense.request_id: a retry returns the first expense. What the
        ledger refuses (a date past its range, an amount over its limit, a category gone)
        came from the caller's own client: InvalidArgument naming the field of the caller's
        request that `fields` maps the ledger's to ("expense.spent_on" -> "paid_on")."""
        request = ledger_pb2.CreateExpenseForRequest(user_id=user_id, source=source, expense=expense)
        try:
            return await self._stub().CreateExpenseFor(request, metadata=await self.tokens.metadata())
        except grpc.aio.AioRpcError as error:
            refused = refusal(error, fields or {})
            if refused is None:
                raise
            raise refused from None

    async def close(self) -> None:
        await self.channel.close()


def refusal(error: grpc.aio.AioRpcError, fields: Mapping[str, str]) -> InvalidArgument | None:
    """The ledger's refusal of an expense as the caller's InvalidArgument; None for a
    failure that is not the input's (unavailable, internal...)."""
    if error.code() == grpc.StatusCode.INVALID_ARGUMENT:
        found = field_violations(error) or {"expense": error.details() or "refused by the ledger"}
        return InvalidArgument([FieldViolation(fields.get(name, name), text) for name, text in found.items()])
    if error.code() == grpc.StatusCode.NOT_FOUND:
        # The one thing CreateExpenseFor looks up: the expense's category.
        return InvalidArgument.of(fields.get("expense.category_id", "category_id"), "no such category")
    return None
