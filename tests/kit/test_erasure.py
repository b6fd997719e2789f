"""The user.deleted consumers' erasure, per service, on SQLite and real PostgreSQL
after the service's own migrations: one row of two users in every table holding user data
(every table of the service's metadata, the kit's excepted); erasing one user leaves
none of its rows in any table and every row of the other; a second delivery changes
nothing."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import JSON, MetaData, Table, TypeDecorator, delete, func, or_, select, text
from sqlalchemy.exc import DBAPIError

from expense.events.v1 import events_pb2
from services.billing import storage as billing_storage
from services.billing.server import OWNED_THROUGH
from services.ds import storage as ds_storage
from services.kit.config.settings import MeshSettings
from services.kit.db import migrations
from services.kit.db.engine import Database
from services.kit.db.erasure import ErasedUsers, ErasureHook, OwnedThrough, erasing
from services.kit.events.subscription import Event
from services.ledger import storage as ledger_storage
from services.notification import storage as notification_storage
from services.reporting import storage as reporting_storage
from services.user import storage as user_storage
from tests.infra import fresh_postgres_database, require

KIT_TABLES = {"outbox", "inbox", "leases", "erasure_permits", "erased_users"}
Around = tuple[ErasureHook, ErasureHook] | None
# Each service's handler, as its server.py wires it.
SERVICES: dict[str, tuple[MetaData, Sequence[OwnedThrough], Around, Table | None]] = {
    "user": (user_storage.metadata, (), None, user_storage.erased_users),
    "ledger": (
        ledger_storage.metadata,
        (),
        (ledger_storage.permit_erasure, ledger_storage.end_erasure),
        None,
    ),
    "reporting": (reporting_storage.metadata, (), None, reporting_storage.erased_users),
    "billing": (billing_storage.metadata, OWNED_THROUGH, None, billing_storage.erased_users),
    "ds": (ds_storage.metadata, (), None, ds_storage.erased_users),
    "notification": (notification_storage.metadata, (), None, notification_storage.erased_users),
}


def _id_of(user_id: str) -> str:
    """Every id column of a user's rows holds one value, so foreign keys always match."""
    return str(uuid.uuid5(uuid.NAMESPACE_OID, user_id))


def _value(table: Table, column: Any, user_id: str) -> Any:
    if column.name == "user_id":
        return user_id
    if column.name == "id" or column.name.endswith("_id"):
        return _id_of(user_id)
    column_type = column.type.impl if isinstance(column.type, TypeDecorator) else column.type
    if isinstance(column_type, JSON):
        return []
    python_type = column_type.python_type
    if python_type is str:
        # Unique per user where the column is long enough (alerts' dedupe keys are unique).
        length = getattr(column_type, "length", None) or 36
        return user_id[:length] if length >= 8 else "x" * min(length, 3)
    if python_type is bytes:
        return b"x"
    if python_type is bool:
        return False
    if python_type is int:
        return 1
    if python_type is Decimal:
        return Decimal(1)
    if python_type is dt.datetime:
        return dt.datetime(2026, 11, 2, tzinfo=dt.UTC)
    if python_type is dt.date:
        return dt.date(2026, 11, 2)
    raise AssertionError(f"{table.name}.{column.name}: no sample for {python_type}")


def _is_id(column: Any) -> bool:
    """A string id column (ledger_entries.id is a sequence number, not the user's)."""
    named = column.name == "id" or column.name.endswith("_id")
    return named and not (column.primary_key and column.autoincrement is True)


def _row(table: Table, user_id: str) -> dict[str, Any]:
    return {
        column.name: _value(table, column, user_id)
        for column in table.columns
        if not (column.autoincrement is True and column.primary_key)
    }


def _user_tables(metadata: MetaData) -> list[Table]:
    return [table for table in metadata.sorted_tables if table.name not in KIT_TABLES]


async def _rows_of(db: Database, metadata: MetaData, user_id: str) -> dict[str, int]:
    """Rows per table naming the user or the user's ids."""
    counts = {}
    async with db.transaction() as session:
        for table in _user_tables(metadata):
            ids = [c == _id_of(user_id) for c in table.columns if _is_id(c) and c.name != "user_id"]
            named = [table.c.user_id == user_id] if "user_id" in table.c else []
            query = select(func.count()).select_from(table).where(or_(*named, *ids))
            counts[table.name] = int((await session.execute(query)).scalar_one())
    return counts


@pytest.mark.parametrize("service", list(SERVICES))
async def test_erasure_leaves_no_row_of_the_user_and_every_row_of_the_others(
    service: str, database_url: str, tmp_path: Path
) -> None:
    metadata, owned_through, around, erased_table = SERVICES[service]
    erased = ErasedUsers(erased_table) if erased_table is not None else None
    settings = MeshSettings(database_url=database_url, data_dir=tmp_path)
    await asyncio.to_thread(migrations.upgrade, service, settings)
    db = Database.for_service(settings, service, pool_size=2)
    try:
        gone, kept = str(uuid.uuid4()), str(uuid.uuid4())
        async with db.transaction() as session:
            for table in _user_tables(metadata):
                for user_id in (gone, kept):
                    await session.execute(table.insert().values(**_row(table, user_id)))
        everything = {table.name: 1 for table in _user_tables(metadata)}
        assert await _rows_of(db, metadata, gone) == everything

        handler = erasing(metadata, owned_through, around=around, erased=erased)
        event = Event("e1", "user.deleted", gone, "auth", events_pb2.UserDeleted(user_id=gone))
        for _ in range(2):  # a redelivery finds nothing more to delete
            async with db.transaction() as session:
                await handler(session, event)
            assert await _rows_of(db, metadata, gone) == dict.fromkeys(everything, 0)
            assert await _rows_of(db, metadata, kept) == everything
        if service == "ledger":
            await _assert_history_still_append_only(db)
        if erased is not None:
            await _assert_late_events_are_skipped(db, erased, gone, kept)
    finally:
        await db.dispose()


async def _assert_history_still_append_only(db: Database) -> None:
    """The permit was the erasure's alone: gone with it, and no other user's entry deletable."""
    async with db.transaction() as session:
        permits = select(func.count()).select_from(ledger_storage.erasure_permits)
        assert (await session.execute(permits)).scalar_one() == 0
    with pytest.raises(DBAPIError, match="append-only"):
        async with db.transaction() as session:
            await session.execute(delete(ledger_storage.ledger_entries))


async def _assert_late_events_are_skipped(db: Database, erased: ErasedUsers, gone: str, kept: str) -> None:
    """The erasure is on record by id alone; the erased user's late events reach no handler,
    the others' do, one at a time and in batches."""
    async with db.transaction() as session:
        column = erased.table.c.erased_user_id
        assert (await session.execute(select(column))).scalars().all() == [gone]
    handled: list[str] = []

    async def handler(session: Any, event: Event[Any]) -> None:
        handled.append(event.user_id)

    async def batch_handler(session: Any, events: Sequence[Event[Any]]) -> None:
        handled.extend(event.user_id for event in events)

    late = [Event(f"e-{user}", "expense.created", user, "ledger", None) for user in (gone, kept, gone)]
    async with db.transaction() as session:
        for event in late:
            await erased.skipping(handler)(session, event)
        await erased.skipping_batches(batch_handler)(session, late)
        await erased.skipping_batches(batch_handler)(session, [late[0]])
    assert handled == [kept, kept]


async def _waiting_on_advisory_lock(db: Database) -> None:
    """Returns once some session of this database waits on an advisory lock."""
    waiting = text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock' AND wait_event = 'advisory'"
    )
    for _ in range(400):
        async with db.read() as connection:
            if (await connection.execute(waiting)).scalar_one():
                return
        await asyncio.sleep(0.025)
    raise AssertionError("no session ever waited on the erasure lock")


async def test_a_write_racing_the_erasure_leaves_no_row_whichever_commits_first(tmp_path: Path) -> None:
    """PostgreSQL (READ COMMITTED): a writer that passed the check before the erasure still
    commits its row, and the erasure waits for it and deletes it; a writer that comes while
    the erasure runs waits for it and then refuses. Either way no row of the user stays."""
    require("PostgreSQL", "127.0.0.1", 5432)
    metadata, erased = notification_storage.metadata, ErasedUsers(notification_storage.erased_users)
    preferences = notification_storage.preferences
    with fresh_postgres_database() as url:
        settings = MeshSettings(database_url=url, data_dir=tmp_path)
        await asyncio.to_thread(migrations.upgrade, "notification", settings)
        db = Database.for_service(settings, "notification", pool_size=4)
        try:
            gone = str(uuid.uuid4())
            handler = erasing(metadata, erased=erased)
            event = Event("e1", "user.deleted", gone, "auth", events_pb2.UserDeleted(user_id=gone))

            async def erase() -> None:
                async with db.transaction() as session:
                    await handler(session, event)

            # The writer first: the erasure waits for its commit, then deletes its row.
            async with db.transaction() as session:
                assert not await erased.refuses(session, gone)
                erasure = asyncio.create_task(erase())
                await _waiting_on_advisory_lock(db)
                await session.execute(preferences.insert().values(**_row(preferences, gone)))
            await erasure
            assert await _rows_of(db, metadata, gone) == dict.fromkeys(_rows_of_names(metadata), 0)

            # The erasure first: the writer waits for its commit, then refuses (without the
            # wait it would read no record yet, the erasure being uncommitted).
            later = str(uuid.uuid4())
            late_event = Event("e2", "user.deleted", later, "auth", events_pb2.UserDeleted(user_id=later))
            async with db.transaction() as session:
                await handler(session, late_event)
                refusal = asyncio.create_task(_refuses(db, erased, later))
                await _waiting_on_advisory_lock(db)
            assert await refusal
        finally:
            await db.dispose()


def _rows_of_names(metadata: MetaData) -> list[str]:
    return [table.name for table in _user_tables(metadata)]


async def _refuses(db: Database, erased: ErasedUsers, user_id: str) -> bool:
    async with db.transaction() as session:
        return await erased.refuses(session, user_id)
