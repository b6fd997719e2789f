"""Alembic migrations, one script directory per service
(services/<name>/migrations), run by `python -m services.<name> migrate`."""

from __future__ import annotations

import asyncio
from pathlib import Path

import sqlalchemy as sa
from alembic import command, context, op
from alembic.config import Config
from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection

from services.kit.config.settings import MeshSettings
from services.kit.db.engine import Database

SERVICES_DIR = Path(__file__).resolve().parents[2]


def alembic_config(service: str, settings: MeshSettings) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(SERVICES_DIR / service / "migrations"))
    cfg.attributes["settings"] = settings
    cfg.attributes["service"] = service
    return cfg


def upgrade(service: str, settings: MeshSettings, revision: str = "head") -> bool:
    """False for a service without storage (no migrations directory)."""
    if not (SERVICES_DIR / service / "migrations").is_dir():
        return False
    command.upgrade(alembic_config(service, settings), revision)
    return True


def run_env(metadata: MetaData) -> None:
    """Body of every service's migrations/env.py."""
    cfg = context.config
    settings: MeshSettings = cfg.attributes["settings"]
    service: str = cfg.attributes["service"]
    asyncio.run(_run_online(Database.for_service(settings, service, pool_size=1), metadata))


async def _run_online(database: Database, metadata: MetaData) -> None:
    async with database.engine.connect() as connection:
        if database.schema:
            await connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{database.schema}"'))
            await connection.commit()
        await connection.run_sync(_migrate, metadata, database.schema)
        await connection.commit()
    await database.dispose()


def _migrate(connection: Connection, metadata: MetaData, schema: str | None) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table_schema=schema,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


# The kit's tables as every service's first migration creates them. Plain types, not the
# models' (UtcDateTime, BigIntId), so what these create never changes with the code.
UTC_DATETIME = sa.DateTime(timezone=True)
BIGINT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def create_outbox_table() -> None:
    """The outbox of services/kit/events/outbox.py."""
    op.create_table(
        "outbox",
        sa.Column("id", BIGINT_ID, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(36), nullable=False, unique=True),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("published_at", UTC_DATETIME, nullable=True),
    )
    op.create_index("ix_outbox_unpublished", "outbox", ["published_at", "id"])


def drop_outbox_table() -> None:
    op.drop_index("ix_outbox_unpublished", table_name="outbox")
    op.drop_table("outbox")


def create_inbox_table() -> None:
    """The inbox of services/kit/events/consumer.py (its purge index: create_retention_indexes)."""
    op.create_table(
        "inbox",
        sa.Column("consumer", sa.String(100), nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("processed_at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("consumer", "event_id"),
    )


def drop_inbox_table() -> None:
    op.drop_table("inbox")


def create_idempotency_table() -> None:
    """The stored answers of services/kit/db/idempotency.py (its purge index: create_retention_indexes)."""
    op.create_table(
        "idempotency_keys",
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("method", sa.String(100), nullable=False),
        sa.Column("request_id", sa.String(100), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("response", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("user_id", "method", "request_id"),
    )


def drop_idempotency_table() -> None:
    op.drop_table("idempotency_keys")


# Indexes the retention purge reads by (services/kit/db/retention.py), per kit table.
RETENTION_INDEXES = {
    "inbox": ("ix_inbox_processed_at", "processed_at"),
    "idempotency_keys": ("ix_idempotency_keys_created_at", "created_at"),
}


def create_retention_indexes(*tables: str) -> None:
    for table in tables:
        name, column = RETENTION_INDEXES[table]
        create_index_concurrently(name, table, [column])


def create_index_concurrently(name: str, table: str, columns: list[str], where: str | None = None) -> None:
    """For a service's migration: CONCURRENTLY on PostgreSQL (outside the migration's
    transaction), so writers of a large table (creates, consumers) are not blocked meanwhile.
    `where` makes it a partial index."""
    predicate = {} if where is None else {"postgresql_where": text(where), "sqlite_where": text(where)}
    with op.get_context().autocommit_block():
        op.create_index(name, table, columns, postgresql_concurrently=True, if_not_exists=True, **predicate)


def drop_retention_indexes(*tables: str) -> None:
    for table in tables:
        op.drop_index(RETENTION_INDEXES[table][0], table_name=table)
