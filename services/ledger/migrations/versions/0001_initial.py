"""expenses, tags, categories, ledger entries, idempotency keys, outbox and inbox

Revision ID: 0001
Revises:
Create Date: 2026-11-21 05:48:37
"""

import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.exc import DBAPIError

from services.kit.db.engine import UtcDateTime
from services.kit.db.migrations import (
    create_idempotency_table,
    create_inbox_table,
    create_outbox_table,
    drop_idempotency_table,
    drop_inbox_table,
    drop_outbox_table,
)
from services.kit.db.sql import BigIntId

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger(__name__)
LIVE = sa.text("delete_time IS NULL")
APPEND_ONLY = "ledger_entries is append-only"


def upgrade() -> None:
    op.create_table(
        "expenses",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.CHAR(3), nullable=False),
        sa.Column("amount_value", sa.BigInteger(), nullable=False),
        sa.Column("spent_on", sa.Date(), nullable=False),
        sa.Column("category_id", sa.String(36), nullable=True),
        sa.Column("merchant", sa.Text(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("search_text", sa.Text(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("create_time", UtcDateTime(), nullable=False),
        sa.Column("update_time", UtcDateTime(), nullable=False),
        sa.Column("delete_time", UtcDateTime(), nullable=True),
        sa.CheckConstraint("amount_minor > 0", name="ck_expenses_amount_positive"),
    )
    for name, columns in (
        ("ix_expenses_user_spent_on", ["user_id", "spent_on", "id"]),
        ("ix_expenses_user_category", ["user_id", "category_id", "spent_on", "id"]),
        ("ix_expenses_user_amount", ["user_id", "amount_value", "id"]),
    ):
        op.create_index(name, "expenses", columns, postgresql_where=LIVE, sqlite_where=LIVE)

    op.create_table(
        "expense_tags",
        sa.Column("expense_id", sa.String(36), nullable=False),
        sa.Column("tag_key", sa.String(200), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.PrimaryKeyConstraint("expense_id", "tag_key"),
    )
    op.create_index("ix_expense_tags_user_tag", "expense_tags", ["user_id", "tag_key", "expense_id"])

    op.create_table(
        "categories",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("name_key", sa.String(200), nullable=False),
        sa.Column("parent_id", sa.String(36), nullable=True),
        sa.Column("color", sa.String(7), nullable=False),
        sa.Column("icon", sa.String(40), nullable=False),
        sa.Column("create_time", UtcDateTime(), nullable=False),
        sa.Column("update_time", UtcDateTime(), nullable=False),
        sa.UniqueConstraint("user_id", "name_key", name="uq_categories_user_name"),
    )
    op.create_index("ix_categories_user_parent", "categories", ["user_id", "parent_id"])

    op.create_table(
        "category_owners",
        sa.Column("user_id", sa.String(36), primary_key=True),
        sa.Column("seed_time", UtcDateTime(), nullable=False),
    )

    op.create_table(
        "ledger_entries",
        sa.Column("id", BigIntId, primary_key=True, autoincrement=True),
        sa.Column("expense_id", sa.String(36), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(10), nullable=False),
        sa.Column("actor", sa.String(36), nullable=False),
        sa.Column("time", UtcDateTime(), nullable=False),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.UniqueConstraint("expense_id", "version", name="uq_ledger_entries_expense_version"),
    )
    op.create_index("ix_ledger_entries_user_expense", "ledger_entries", ["user_id", "expense_id", "version"])

    create_idempotency_table()
    create_outbox_table()
    create_inbox_table()

    if op.get_bind().dialect.name == "postgresql":
        _create_search_index()
        _make_entries_append_only_postgres()
    else:
        _make_entries_append_only_sqlite()


def _create_search_index() -> None:
    """A trigram GIN index makes `q` (substring of merchant/note) fast. Without
    pg_trgm (not installable here) `q` filters the user's own rows instead."""
    bind = op.get_bind()
    try:
        with bind.begin_nested():
            bind.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except DBAPIError as error:
        log.warning("pg_trgm unavailable; text search will not be indexed: %s", error.orig)
    # The extension may live in another schema (installed earlier by someone else).
    schema = bind.exec_driver_sql(
        "SELECT n.nspname FROM pg_opclass c JOIN pg_namespace n ON n.oid = c.opcnamespace "
        "JOIN pg_am a ON a.oid = c.opcmethod WHERE c.opcname = 'gin_trgm_ops' AND a.amname = 'gin'"
    ).scalar()
    if schema is not None:
        op.execute(
            f'CREATE INDEX ix_expenses_search ON expenses USING gin (search_text "{schema}".gin_trgm_ops) '
            "WHERE delete_time IS NULL"
        )


def _make_entries_append_only_postgres() -> None:
    op.execute(
        "CREATE FUNCTION ledger_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS "
        f"$$ BEGIN RAISE EXCEPTION '{APPEND_ONLY}'; END $$"
    )
    op.execute(
        "CREATE TRIGGER ledger_entries_no_change BEFORE UPDATE OR DELETE ON ledger_entries "
        "FOR EACH ROW EXECUTE FUNCTION ledger_entries_append_only()"
    )
    op.execute(
        "CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON ledger_entries "
        "FOR EACH STATEMENT EXECUTE FUNCTION ledger_entries_append_only()"
    )


def _make_entries_append_only_sqlite() -> None:
    for action in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER ledger_entries_no_{action.lower()} BEFORE {action} ON ledger_entries "
            f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS ledger_entries_no_change ON ledger_entries")
        op.execute("DROP TRIGGER IF EXISTS ledger_entries_no_truncate ON ledger_entries")
        op.execute("DROP FUNCTION IF EXISTS ledger_entries_append_only()")
    drop_inbox_table()
    drop_outbox_table()
    drop_idempotency_table()
    for table in (
        "ledger_entries",
        "category_owners",
        "categories",
        "expense_tags",
        "expenses",
    ):
        op.drop_table(table)
