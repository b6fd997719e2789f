"""The ledger's client for other services, through LedgerInternalService: expenses
recorded on a user's behalf (billing paying a bill) and a user's categories."""

from __future__ import annotations

from expense.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from services.kit.grpc.clients import LazyChannel


class LedgerClient:
    def __init__(self, target: str, timeout_seconds: float) -> None:
        self.channel = LazyChannel(target, ["expense.ledger.v1.LedgerInternalService"], timeout_seconds)

    async def create_expense_for(
        self, user_id: str, source: str, expense: ledger_pb2.CreateExpenseRequest
    ) -> ledger_pb2.Expense:
        """Idempotent by expense.request_id: a retry returns the first expense."""
        stub = ledger_pb2_grpc.LedgerInternalServiceStub(self.channel.get())
        request = ledger_pb2.CreateExpenseForRequest(user_id=user_id, source=source, expense=expense)
        return await stub.CreateExpenseFor(request)

    async def categories(self, user_id: str) -> list[ledger_pb2.InternalCategory]:
        """Every category of one user (a consumer's copy catching up with the ledger)."""
        stub = ledger_pb2_grpc.LedgerInternalServiceStub(self.channel.get())
        found: list[ledger_pb2.InternalCategory] = []
        async for batch in stub.StreamCategories(ledger_pb2.StreamCategoriesRequest(user_id=user_id)):
            found.extend(batch.categories)
        return found

    async def close(self) -> None:
        await self.channel.close()
