"""The ledger's client for other services, through LedgerInternalService: a user's
(or everyone's) categories and expenses, as a consumer's copy holds them, for
rebuilds; and expenses recorded on a user's behalf (billing paying a bill)."""

from __future__ import annotations

from datetime import date

from expense.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from services.kit.config.settings import ResilienceSettings
from services.kit.grpc.clients import LazyChannel
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
        self, user_id: str, source: str, expense: ledger_pb2.CreateExpenseRequest
    ) -> ledger_pb2.Expense:
        """Idempotent by expense.request_id: a retry returns the first expense."""
        request = ledger_pb2.CreateExpenseForRequest(user_id=user_id, source=source, expense=expense)
        return await self._stub().CreateExpenseFor(request, metadata=await self.tokens.metadata())

    async def close(self) -> None:
        await self.channel.close()
