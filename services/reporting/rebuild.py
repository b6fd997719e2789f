"""Rebuilding reporting's data from the ledger: for recovery, and for new report
kinds. Each user's copy, categories and rollups are deleted and recomputed in
one transaction; the ledger is read after the delete, so an event applied
meanwhile either is in the ledger's answer already or waits for the commit
and then applies to the rebuilt copy (see events.py)."""

from __future__ import annotations

import logging
from datetime import date
from typing import Protocol

from sqlalchemy.exc import DBAPIError

from expense.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from services.kit.db.engine import Database
from services.kit.grpc.clients import LazyChannel
from services.kit.identity.service_tokens import ServiceTokens
from services.reporting import storage
from services.reporting.domain import CategoryInfo, ExpenseLine, rollup_deltas
from services.reporting.reportcache import ReportCache

log = logging.getLogger(__name__)

LEDGER_INTERNAL_SERVICE = "expense.ledger.v1.LedgerInternalService"
ATTEMPTS = 3


class LedgerData(Protocol):
    async def users(self) -> set[str]: ...

    async def categories(self, user_id: str) -> list[CategoryInfo]: ...

    async def expenses(self, user_id: str) -> list[ExpenseLine]: ...


class LedgerClient:
    """The ledger's mesh-internal streams, asked with reporting's service token."""

    def __init__(self, target: str, timeout_seconds: float, tokens: ServiceTokens) -> None:
        self.timeout_seconds = timeout_seconds
        self.tokens = tokens
        # A rebuild is a one-shot command: no ledger is an error to report, not to wait for.
        self.channel = LazyChannel(target, [LEDGER_INTERNAL_SERVICE], timeout_seconds, wait_for_ready=False)

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

    async def close(self) -> None:
        await self.channel.close()


async def rebuild_user(db: Database, ledger: LedgerData, user_id: str) -> int:
    """Replaces one user's data with the ledger's; returns the number of expenses."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            async with db.transaction() as session:
                await storage.clear_user(session, user_id)
                categories = await ledger.categories(user_id)
                lines = await ledger.expenses(user_id)
                await storage.replace_categories(session, user_id, categories)
                await storage.insert_expenses(session, user_id, lines)
                await storage.insert_rollups(session, user_id, rollup_deltas((None, line) for line in lines))
            return len(lines)
        except DBAPIError as error:
            # A concurrent event for a brand-new expense got there first (or a deadlock): again.
            if attempt == ATTEMPTS:
                raise
            log.warning("rebuild conflicted; retrying", extra={"user_id": user_id, "error": repr(error)})
    raise AssertionError("unreachable")


async def rebuild(
    db: Database, ledger: LedgerData, cache: ReportCache, user_id: str | None = None
) -> dict[str, int]:
    """Rebuilds one user, or everyone the ledger or reporting knows; user -> expenses."""
    if user_id is not None:
        users = {user_id}
    else:
        users = await ledger.users()
        async with db.transaction() as session:
            users |= await storage.known_users(session)
    counts = {}
    for user in sorted(users):
        counts[user] = await rebuild_user(db, ledger, user)
        await cache.invalidate([user])
        log.info("rebuilt", extra={"user_id": user, "expenses": counts[user]})
    return counts
