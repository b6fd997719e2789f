"""Rollups, expense copies, categories, profiles, and the kit's outbox and inbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.kit.db.migrations import (
    create_inbox_table,
    create_outbox_table,
    drop_inbox_table,
    drop_outbox_table,
)

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Plain types here (not the models' decorators) so the script never changes with the code.
UTC_DATETIME = sa.DateTime(timezone=True)
# (table, with a merchant column)
ROLLUPS = [("category_totals", False), ("merchant_totals", True)]


def _id(name: str) -> sa.Column:
    return sa.Column(name, sa.String(64), nullable=False)


def upgrade() -> None:
    for table, with_merchant in ROLLUPS:
        merchant = [sa.Column("merchant", sa.String(200), nullable=False)] if with_merchant else []
        op.create_table(
            table,
            _id("user_id"),
            sa.Column("grain", sa.String(5), nullable=False),
            sa.Column("period_start", sa.Date(), nullable=False),
            _id("category_id"),
            sa.Column("currency", sa.String(3), nullable=False),
            *merchant,
            sa.Column("sum_minor", sa.BigInteger(), nullable=False),
            sa.Column("count", sa.BigInteger(), nullable=False),
            sa.PrimaryKeyConstraint(
                "user_id",
                "grain",
                "period_start",
                "category_id",
                "currency",
                *(["merchant"] if with_merchant else []),
            ),
        )
    op.create_table(
        "expenses",
        _id("user_id"),
        _id("expense_id"),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("spent_on", sa.Date(), nullable=False),
        _id("category_id"),
        sa.Column("merchant", sa.Text(), nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("user_id", "expense_id"),
    )
    op.create_index("ix_expenses_user_spent_on", "expenses", ["user_id", "spent_on"])
    op.create_index("ix_expenses_user_category", "expenses", ["user_id", "category_id"])
    op.create_table(
        "categories",
        _id("user_id"),
        _id("category_id"),
        sa.Column("name", sa.String(200), nullable=False),
        _id("parent_id"),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        _id("reassigned_to"),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("user_id", "category_id"),
    )
    op.create_table(
        "profiles",
        sa.Column("user_id", sa.String(64), primary_key=True),
        sa.Column("default_currency", sa.String(3), nullable=False),
        sa.Column("time_zone", sa.String(64), nullable=False),
        sa.Column("first_day_of_week", sa.String(16), nullable=False),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
    )
    create_outbox_table()
    create_inbox_table()


def downgrade() -> None:
    drop_inbox_table()
    drop_outbox_table()
    for table in ("profiles", "categories", "expenses"):
        op.drop_table(table)
    for table, _ in reversed(ROLLUPS):
        op.drop_table(table)
