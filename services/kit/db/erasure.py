"""Erasing a user (the `user.deleted` event): every row of the user in a service's own
tables, in one transaction (the consumer's inbox transaction, so a redelivery finds
nothing left to delete and changes nothing).

A table holding the user's rows has a `user_id` column; a table keyed only through a
parent (billing's budget amounts under budgets) is named with that parent. The kit's
own tables (outbox, inbox, leases) carry no user column: the service's published events
go with the outbox's replay window."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, MetaData, String, Table, delete, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from expense.events.v1 import events_pb2
from services.kit.db.engine import UtcDateTime
from services.kit.db.sql import insert_ignore
from services.kit.domain.timestamps import utcnow
from services.kit.events.consumer import BatchHandler, Handler
from services.kit.events.subscription import Event

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OwnedThrough:
    """Rows of `table` whose `column` is a `parent_column` of the user's `parent` rows."""

    table: Table
    column: str
    parent: Table
    parent_column: str


def user_tables(metadata: MetaData) -> list[Table]:
    """Tables with a user_id column, dependents before the tables they reference."""
    return [table for table in reversed(metadata.sorted_tables) if "user_id" in table.c]


# Runs around the deletes in the same transaction (the ledger opens its append-only
# history to the erasure and closes it again).
ErasureHook = Callable[[AsyncSession, str], Awaitable[None]]


async def erase_user(
    session: AsyncSession,
    metadata: MetaData,
    user_id: str,
    owned_through: Sequence[OwnedThrough] = (),
    around: tuple[ErasureHook, ErasureHook] | None = None,
) -> dict[str, int]:
    """Deletes the user's rows; answers the rows deleted per table (tables left alone
    absent). Rows owned through a parent go first, while the parent still names them."""
    if around is not None:
        await around[0](session, user_id)
    deleted: dict[str, int] = {}
    for owned in owned_through:
        parents = select(owned.parent.c[owned.parent_column]).where(owned.parent.c.user_id == user_id)
        result = await session.execute(delete(owned.table).where(owned.table.c[owned.column].in_(parents)))
        deleted[owned.table.name] = int(result.rowcount)
    for table in user_tables(metadata):
        result = await session.execute(delete(table).where(table.c.user_id == user_id))
        deleted[table.name] = int(result.rowcount)
    if around is not None:
        await around[1](session, user_id)
    return {name: rows for name, rows in deleted.items() if rows}


def erasing(
    metadata: MetaData,
    owned_through: Sequence[OwnedThrough] = (),
    forget: Callable[[list[str]], Awaitable[None]] | None = None,
    around: tuple[ErasureHook, ErasureHook] | None = None,
    erased: ErasedUsers | None = None,
) -> Callable[[AsyncSession, Event[events_pb2.UserDeleted]], Awaitable[None]]:
    """The handler of a service's `user.deleted` consumer; `forget` drops what the service
    caches of these users (after the deletes, before the commit: a read racing it may
    cache the old answer again until its TTL; the data itself is gone); `erased` records
    the erasure for services that must skip the user's late events."""

    async def on_user_deleted(session: AsyncSession, event: Event[events_pb2.UserDeleted]) -> None:
        user_id = event.payload.user_id or event.user_id
        if erased is not None:
            # Waits for the user's writes under way, and holds back the next ones until
            # the commit: they then find the record and write nothing.
            await erased.lock_out(session, user_id)
        deleted = await erase_user(session, metadata, user_id, owned_through, around)
        if erased is not None:
            await erased.remember(session, user_id)
        if forget is not None:
            await forget([user_id])
        log.info("user erased", extra={"user_id": user_id, "rows": deleted})

    return on_user_deleted


# --- late events ------------------------------------------------------------------------


def erased_users_table(metadata: MetaData) -> Table:
    """Users erased lately, by id alone: kept as long as an event published before the erasure
    could still arrive (retention.inbox_hours, which outlasts the stream), then purged."""
    return Table(
        "erased_users",
        metadata,
        Column("erased_user_id", String(64), primary_key=True),
        Column("erased_at", UtcDateTime, nullable=False),
    )


# The advisory lock class of the per-user erasure locks (PostgreSQL's two-key form: the
# second key is the user id's hash); "ERAS" in ASCII, apart from any other lock's keys.
ERASURE_LOCK_CLASS = 0x45524153


class ErasedUsers:
    """A service whose copies are fed by other producers' events (an expense published by
    the ledger before the erasure may reach reporting after it) records each erasure and
    skips the events of erased users, so a late event cannot bring their data back.

    A check alone would race the erasure: a writer that read "not erased" just before the
    erasure's commit would insert its rows just after the deletes, and they would stay. So
    on PostgreSQL each writer holds a shared advisory lock on the user until its commit and
    the erasure an exclusive one: an erasure waits for the writes under way (and deletes
    what they wrote), a later writer waits for the erasure (and then finds its record).
    SQLite runs one write transaction at a time: a writer whose check the erasure's commit
    made stale fails on its write (a busy snapshot) and is retried."""

    def __init__(self, table: Table) -> None:
        self.table = table

    async def remember(self, session: AsyncSession, user_id: str) -> None:
        await insert_ignore(session, self.table, {"erased_user_id": user_id, "erased_at": utcnow()})

    async def lock_out(self, session: AsyncSession, user_id: str) -> None:
        """The erasure's exclusive lock on the user, held until its transaction ends."""
        await _advisory_locks(session, {user_id}, exclusive=True)

    async def refuses(self, session: AsyncSession, user_id: str) -> bool:
        """True for an erased user: a writer must then write nothing for them. Otherwise
        the user stays locked against erasure until the writer's transaction ends."""
        return bool(await self.refused(session, {user_id}))

    async def refused(self, session: AsyncSession, user_ids: Collection[str]) -> set[str]:
        """`refuses` for a batch, in one round trip for the locks and one query: the erased
        among these users; the others stay locked against erasure until the transaction ends."""
        return await self._erased(session, set(user_ids)) if user_ids else set()

    async def _erased(self, session: AsyncSession, user_ids: set[str]) -> set[str]:
        await _advisory_locks(session, user_ids, exclusive=False)
        column = self.table.c.erased_user_id
        found = await session.execute(select(column).where(column.in_(sorted(user_ids))))
        return set(found.scalars())

    def skipping(self, handler: Handler) -> Handler:
        async def handle(session: AsyncSession, event: Event[Any]) -> None:
            if not await self._erased(session, {event.user_id}):
                await handler(session, event)

        return handle

    def skipping_batches(self, handler: BatchHandler) -> BatchHandler:
        async def handle(session: AsyncSession, events: Sequence[Event[Any]]) -> None:
            erased = await self._erased(session, {event.user_id for event in events})
            kept = [event for event in events if event.user_id not in erased] if erased else events
            if kept:
                await handler(session, kept)

        return handle


async def _advisory_locks(session: AsyncSession, user_ids: set[str], exclusive: bool) -> None:
    """Transaction-scoped advisory locks on the users, in one order (no deadlock between
    two writers of several users); none on SQLite (see ErasedUsers)."""
    if session.get_bind().dialect.name != "postgresql":
        return
    function = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
    # One round trip for a batch's users; unnest keeps the array's (sorted) order.
    statement = text(
        f"SELECT {function}(:lock_class, hashtext(user_id)) FROM unnest(CAST(:user_ids AS text[])) AS user_id"
    )
    await session.execute(statement, {"lock_class": ERASURE_LOCK_CLASS, "user_ids": sorted(user_ids)})
