"""Rebuilding billing's spend view from the ledger (recovery, or a first start on a
ledger with history): each user's expense copies, daily rollups and categories are
replaced by the ledger's, and their budgets' rollups recomputed, in one transaction.
Rollover, budget status and the expense rules all read this view. Alerts are not
raised by a rebuild: it restores what spending is, not news about it."""

from __future__ import annotations

import logging

from sqlalchemy.exc import DBAPIError

from services.billing import storage
from services.billing.domain import spend_deltas
from services.billing.matching import merchant_key
from services.billing.rules import refresh_budgets
from services.billing.usecases import Calendars
from services.kit.db.engine import Database
from services.kit.domain.timestamps import utcnow
from services.ledger import replica_storage
from services.ledger.client import LedgerClient
from services.ledger.replica import StoredExpense

log = logging.getLogger(__name__)
ATTEMPTS = 3


async def rebuild_user(db: Database, ledger: LedgerClient, calendars: Calendars, user_id: str) -> int:
    """Replaces one user's view with the ledger's; returns the number of expenses."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            async with db.transaction() as session:
                await storage.clear_spending(session, [user_id])
                categories = await ledger.categories(user_id)
                lines = await ledger.expenses(user_id)
                await storage.save_categories(session, user_id, categories)
                copies = {(user_id, line.expense_id): StoredExpense(line) for line in lines}
                keys = {key: merchant_key(copy.line.merchant) for key, copy in copies.items()}
                await replica_storage.save_copies(session, storage.expenses, copies, keys, utcnow())
                await storage.apply_spend_deltas(
                    session, spend_deltas({user_id: [(None, line) for line in lines]})
                )
                budgets = await storage.load_budgets(session, user_id, lock=True)
                tree = await storage.category_tree(session, user_id)
                await refresh_budgets(session, budgets, tree, await calendars.of(session, user_id))
            return len(lines)
        except DBAPIError as error:
            # A concurrent event for a brand-new expense got there first (or a deadlock): again.
            if attempt == ATTEMPTS:
                raise
            log.warning("rebuild conflicted; retrying", extra={"user_id": user_id, "error": repr(error)})
    raise AssertionError("unreachable")


async def rebuild(
    db: Database, ledger: LedgerClient, calendars: Calendars, user_id: str | None = None
) -> dict[str, int]:
    """Rebuilds one user, or everyone the ledger knows; user -> expenses."""
    users = {user_id} if user_id is not None else await ledger.users()
    counts = {}
    for user in sorted(users):
        counts[user] = await rebuild_user(db, ledger, calendars, user)
        log.info("rebuilt", extra={"user_id": user, "expenses": counts[user]})
    return counts
