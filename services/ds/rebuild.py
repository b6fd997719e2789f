"""Rebuilding ds's copies from the ledger (recovery, or a first start on a ledger with
history): each user's expense copies, daily rollup and categories are replaced by the
ledger's, in one transaction. Insights and refund links read these copies."""

from __future__ import annotations

import logging

from sqlalchemy.exc import DBAPIError

from services.billing.domain import spend_deltas
from services.ds import storage
from services.ds.domain import merchant_deltas
from services.ds.normalise import merchant_key
from services.kit.db.engine import Database
from services.kit.domain.timestamps import utcnow
from services.ledger import replica_storage
from services.ledger.client import LedgerClient
from services.ledger.replica import StoredExpense

log = logging.getLogger(__name__)
ATTEMPTS = 3


async def rebuild_user(db: Database, ledger: LedgerClient, user_id: str) -> int:
    """Replaces one user's copies with the ledger's; returns the number of expenses."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            async with db.transaction() as session:
                await storage.clear_copies(session, user_id)
                await storage.save_categories(session, user_id, await ledger.categories(user_id))
                lines = await ledger.expenses(user_id)
                copies = {(user_id, line.expense_id): StoredExpense(line) for line in lines}
                keys = {key: merchant_key(copy.line.merchant) for key, copy in copies.items()}
                await replica_storage.save_copies(session, storage.expenses, copies, keys, utcnow())
                moves = {user_id: [(None, line) for line in lines]}
                await storage.apply_spend_deltas(session, spend_deltas(moves))
                await storage.apply_merchant_deltas(session, merchant_deltas(moves))
            return len(lines)
        except DBAPIError as error:
            # A concurrent event for a brand-new expense got there first (or a deadlock): again.
            if attempt == ATTEMPTS:
                raise
            log.warning("rebuild conflicted; retrying", extra={"user_id": user_id, "error": repr(error)})
    raise AssertionError("unreachable")


async def rebuild(db: Database, ledger: LedgerClient, user_id: str | None = None) -> dict[str, int]:
    """Rebuilds one user, or everyone the ledger knows; user -> expenses."""
    users = {user_id} if user_id is not None else await ledger.users()
    counts = {}
    for user in sorted(users):
        counts[user] = await rebuild_user(db, ledger, user)
        log.info("rebuilt", extra={"user_id": user, "expenses": counts[user]})
    return counts
