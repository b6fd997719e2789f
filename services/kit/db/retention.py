"""Retention: rows a service keeps only for a window (published outbox events,
inbox records, idempotency keys) are deleted once older, so these tables stop
growing with the service's lifetime. Each window is settings (config/mesh.toml
[retention], [outbox]); each table has an index on its timestamp, so a purge
reads only what it deletes. Rows go a bounded chunk per transaction: a purge
never holds many locks nor makes a long transaction for vacuum to wait on."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import ColumnElement, Delete, Table, any_, delete, func, literal_column, select

from services.kit.db.engine import Database
from services.kit.domain.timestamps import utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Kept:
    """Rows of `table` whose `column` (a timestamp; NULL keeps the row) is older than
    `window`, among those matching `only` if given."""

    table: Table
    column: str
    window: timedelta
    only: ColumnElement[bool] | None = None


def _same_rule(one: Kept, other: Kept) -> bool:
    # `is` for the conditions: == on SQL expressions builds a comparison.
    return (one.column, one.window) == (other.column, other.window) and one.only is other.only


class Purger:
    def __init__(self, db: Database, every: timedelta, chunk_rows: int) -> None:
        self.db = db
        self.every = every.total_seconds()
        self.chunk_rows = chunk_rows
        self.kept: list[Kept] = []

    def keep(
        self, table: Table, column: str, window: timedelta, only: ColumnElement[bool] | None = None
    ) -> None:
        """Rows of table whose timestamp `column` is older than window (among those
        matching `only`) get deleted. A table kept again by the same rule is kept once
        (a service's consumers share one inbox); by another rule it is refused, since
        one of the two would not hold."""
        rule = Kept(table, column, window, only)
        same_table = [kept for kept in self.kept if kept.table is table]
        if not same_table:
            self.kept.append(rule)
        elif not any(_same_rule(kept, rule) for kept in same_table):
            raise ValueError(f"{table.name} is already kept by another rule: {same_table[0]}")

    async def run(self) -> None:
        while True:
            try:
                purged = await self.purge()
            except Exception as error:  # the database is down: the next round tries again
                log.warning("retention purge failed", extra={"error": repr(error)})
            else:
                if any(purged.values()):
                    log.info("purged rows past their retention", extra={"rows": purged})
            await asyncio.sleep(self.every)

    async def purge(self) -> dict[str, int]:
        """Rows deleted per table."""
        return {kept.table.name: await self._purge(kept) for kept in self.kept}

    async def _purge(self, kept: Kept) -> int:
        statement = self._chunk_delete(kept)
        total = 0
        while True:
            async with self.db.transaction() as session:
                deleted = (await session.execute(statement)).rowcount
            total += deleted
            if deleted < self.chunk_rows:
                return total

    def _chunk_delete(self, kept: Kept) -> Delete:
        """A DELETE of at most chunk_rows expired rows, found on the timestamp's index and
        deleted by their physical row id (PostgreSQL's ctid: a TID scan; SQLite's rowid):
        by primary key IN (subquery), PostgreSQL hash-joined the whole table every chunk."""
        table = kept.table
        row_id = literal_column("ctid" if self.db.is_postgres else "rowid")
        expired = select(row_id).select_from(table).where(table.c[kept.column] < utcnow() - kept.window)
        if kept.only is not None:
            expired = expired.where(kept.only)
        expired = expired.limit(self.chunk_rows)
        if self.db.is_postgres:
            return delete(table).where(row_id == any_(func.array(expired.scalar_subquery())))
        return delete(table).where(row_id.in_(expired))
