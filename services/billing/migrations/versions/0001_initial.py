"""Budgets, spend view, categories, calendars, bills, alerts, leases; the kit's
outbox, inbox and idempotency keys.

Revision ID: 0001
Revises:
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.kit.db.migrations import (
    create_idempotency_table,
    create_inbox_table,
    create_outbox_table,
    create_retention_indexes,
    drop_idempotency_table,
    drop_inbox_table,
    drop_outbox_table,
    drop_retention_indexes,
)

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Plain types here (not the models' decorators) so the script never changes with the code.
UTC_DATETIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "alert_mutes",
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("rule_type", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "rule_type"),
    )
    op.create_table(
        "alerts",
        sa.Column("alert_id", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("severity", sa.String(8), nullable=False),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("dedupe_key", sa.String(300), nullable=False, unique=True),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("acknowledged_at", UTC_DATETIME, nullable=True),
    )
    op.create_index("ix_alerts_user", "alerts", ["user_id", "alert_id"])
    op.create_table(
        "bill_settlements",
        sa.Column("bill_id", sa.String(64), nullable=False),
        sa.Column("due_on", sa.Date(), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("expense_id", sa.String(64), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("settled_at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("bill_id", "due_on"),
    )
    op.create_table(
        "bills",
        sa.Column("bill_id", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("payee", sa.String(2000), nullable=False),
        sa.Column("payee_key", sa.String(200), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("category_id", sa.String(64), nullable=False),
        sa.Column("recurrence", sa.String(600), nullable=False),
        sa.Column("first_due", sa.Date(), nullable=False),
        sa.Column("remind_days_before", sa.Integer(), nullable=False),
        sa.Column("autopay", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
    )
    op.create_index("ix_bills_user", "bills", ["user_id", "bill_id"])
    op.create_table(
        "budget_amounts",
        sa.Column("budget_id", sa.String(64), nullable=False),
        sa.Column("effective_from", sa.Date(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("budget_id", "effective_from"),
    )
    op.create_table(
        "budgets",
        sa.Column("budget_id", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("category_id", sa.String(64), nullable=False),
        sa.Column("period", sa.String(8), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("rollover", sa.Boolean(), nullable=False),
        sa.Column("thresholds", sa.String(100), nullable=False),
        sa.Column("start_date", sa.Date(), nullable=False),
        sa.Column("arming", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
    )
    op.create_index("ix_budgets_user", "budgets", ["user_id", "budget_id"])
    op.create_table(
        "budget_spend",
        sa.Column("budget_id", sa.String(64), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("sum_minor", sa.BigInteger(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("budget_id", "period_start", "currency"),
    )
    op.create_table(
        "categories",
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("category_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("parent_id", sa.String(64), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("reassigned_to", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "category_id"),
    )
    op.create_table(
        "daily_spend",
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("category_id", sa.String(64), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("sum_minor", sa.BigInteger(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "day", "category_id", "currency"),
    )
    op.create_table(
        "expenses",
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("expense_id", sa.String(64), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("spent_on", sa.Date(), nullable=False),
        sa.Column("category_id", sa.String(64), nullable=False),
        sa.Column("merchant", sa.String(2000), nullable=False),
        sa.Column("merchant_key", sa.String(200), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("user_id", "expense_id"),
    )
    op.create_index("ix_expenses_user_merchant_day", "expenses", ["user_id", "merchant_key", "spent_on"])
    op.create_index("ix_expenses_user_category_day", "expenses", ["user_id", "category_id", "spent_on"])
    op.create_table(
        "leases",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(128), nullable=False),
        sa.Column("expires_at", UTC_DATETIME, nullable=False),
    )
    op.create_table(
        "profiles",
        sa.Column("user_id", sa.String(64), primary_key=True),
        sa.Column("time_zone", sa.String(64), nullable=False),
        sa.Column("first_day_of_week", sa.String(16), nullable=False),
    )
    create_outbox_table()
    create_inbox_table()
    create_idempotency_table()
    create_retention_indexes("inbox", "idempotency_keys")


def downgrade() -> None:
    drop_retention_indexes("inbox", "idempotency_keys")
    drop_idempotency_table()
    drop_inbox_table()
    drop_outbox_table()
    op.drop_table("profiles")
    op.drop_table("leases")
    op.drop_table("expenses")
    op.drop_table("daily_spend")
    op.drop_table("categories")
    op.drop_table("budget_spend")
    op.drop_table("budgets")
    op.drop_table("budget_amounts")
    op.drop_table("bills")
    op.drop_table("bill_settlements")
    op.drop_table("alerts")
    op.drop_table("alert_mutes")
