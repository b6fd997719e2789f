"""The kit's tables as each service's migrations create them (services/kit/db/migrations.py)
match the kit's models exactly, on SQLite and PostgreSQL: columns, types, keys and indexes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData, inspect

from services.kit.db.idempotency import idempotency_table
from services.kit.events.tables import add_event_tables
from tests.kit.conftest import migrated_connection

# The kit tables each service keeps: all of them the outbox and inbox, the ledger its answers too.
KIT_TABLES = {
    "auth": ("outbox", "inbox"),
    "user": ("outbox", "inbox"),
    "ledger": ("outbox", "inbox", "idempotency_keys"),
    "reporting": ("outbox", "inbox"),
}


def _kit_metadata(tables: tuple[str, ...]) -> MetaData:
    metadata = MetaData()
    add_event_tables(metadata)
    if "idempotency_keys" in tables:
        idempotency_table(metadata)
    return metadata


def _drift(connection: Any, tables: tuple[str, ...]) -> list[Any]:
    def include(obj: Any, name: str | None, kind: str, reflected: bool, compare_to: Any) -> bool:
        table = obj.name if kind == "table" else obj.table.name
        return table in tables

    context = MigrationContext.configure(connection, opts={"include_object": include, "compare_type": True})
    return compare_metadata(context, _kit_metadata(tables))


@pytest.mark.parametrize("service", sorted(KIT_TABLES))
async def test_migrations_build_the_kit_tables_as_modelled(
    service: str, database_url: str, tmp_path: Path
) -> None:
    async with migrated_connection(service, database_url, tmp_path) as connection:
        tables = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
        assert set(KIT_TABLES[service]) <= set(tables)
        assert await connection.run_sync(_drift, KIT_TABLES[service]) == []
