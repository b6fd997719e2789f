"""Rebuilding reporting's data from the ledger: for recovery, and for new report
kinds. Each user's copy, categories and rollups are deleted and recomputed in
one transaction; the ledger is read after the delete, so an event applied
meanwhile either is in the ledger's answer already or waits for the commit
and then applies to the rebuilt copy (see events.py)."""

from __future__ import annotations

import logging
from typing import Protocol

from sqlalchemy.exc import DBAPIError

from services.kit.db.engine import Database
from services.kit.responses import ResponseCache
from services.ledger.replica import CategoryInfo, ExpenseLine
from services.reporting import storage
from services.reporting.domain import rollup_deltas

log = logging.getLogger(__name__)

ATTEMPTS = 3


class LedgerData(Protocol):
    async def users(self) -> set[str]: ...

    async def categories(self, user_id: str) -> list[CategoryInfo]: ...

    async def expenses(self, user_id: str) -> list[ExpenseLine]: ...


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
    db: Database, ledger: LedgerData, cache: ResponseCache, user_id: str | None = None
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
