"""Profiles (consent, calendar), SMS messages, merchant rules, copies of the ledger's
categories and expenses, the daily spend rollup; the kit's outbox and inbox.

Revision ID: 0001
Revises:
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.kit.db.migrations import (
    create_inbox_table,
    create_outbox_table,
    create_retention_indexes,
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
ID = sa.String(64)


def upgrade() -> None:
    op.create_table(
        "profiles",
        sa.Column("user_id", ID, primary_key=True),
        sa.Column("sms_auto_import", sa.Boolean(), nullable=False),
        sa.Column("sms_allowed_senders", sa.JSON(), nullable=False),
        sa.Column("time_zone", sa.String(64), nullable=False),
        sa.Column("first_day_of_week", sa.String(9), nullable=False),
        sa.Column("locale", sa.String(35), nullable=False),
    )
    op.create_table(
        "sms_messages",
        sa.Column("message_id", ID, primary_key=True),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("dedupe_key", sa.String(300), nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("sender", sa.String(32), nullable=True),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("received_at", UTC_DATETIME, nullable=False),
        sa.Column("parsed", sa.Text(), nullable=False),
        sa.Column("expense_id", ID, nullable=False),
        sa.Column("linked_expense_id", ID, nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
        sa.UniqueConstraint("user_id", "dedupe_key", name="uq_sms_messages_user_key"),
    )
    op.create_index("ix_sms_messages_user_state", "sms_messages", ["user_id", "state", "message_id"])
    op.create_table(
        "merchant_rules",
        sa.Column("user_id", ID, nullable=False),
        sa.Column("merchant_key", sa.String(100), nullable=False),
        sa.Column("merchant", sa.String(200), nullable=False),
        sa.Column("category_id", ID, nullable=False),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("user_id", "merchant_key"),
    )
    op.create_table(
        "categories",
        sa.Column("user_id", ID, nullable=False),
        sa.Column("category_id", ID, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("parent_id", ID, nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("reassigned_to", ID, nullable=False),
        sa.PrimaryKeyConstraint("user_id", "category_id"),
    )
    op.create_table(
        "expenses",
        sa.Column("user_id", ID, nullable=False),
        sa.Column("expense_id", ID, nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("spent_on", sa.Date(), nullable=False),
        sa.Column("category_id", ID, nullable=False),
        sa.Column("merchant", sa.String(2000), nullable=False),
        sa.Column("merchant_key", sa.String(100), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("user_id", "expense_id"),
    )
    op.create_index("ix_expenses_user_merchant_day", "expenses", ["user_id", "merchant_key", "spent_on"])
    op.create_table(
        "merchant_months",
        sa.Column("user_id", ID, nullable=False),
        sa.Column("merchant_key", sa.String(100), nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "merchant_key", "month"),
    )
    op.create_table(
        "digests",
        sa.Column("user_id", ID, nullable=False),
        sa.Column("week_start", sa.Date(), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("user_id", "week_start"),
    )
    op.create_table(
        "daily_spend",
        "merchant_months",
        sa.Column("user_id", ID, nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("category_id", ID, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("sum_minor", sa.BigInteger(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "day", "category_id", "currency"),
    )
    # The users erased lately (services/kit/db/erasure.py): their late events are skipped.
    op.create_table(
        "erased_users",
        sa.Column("erased_user_id", ID, primary_key=True),
        sa.Column("erased_at", UTC_DATETIME, nullable=False),
    )
    op.create_index("ix_erased_users_erased_at", "erased_users", ["erased_at"])
    create_outbox_table()
    create_inbox_table()
    create_retention_indexes("inbox")


def downgrade() -> None:
    drop_retention_indexes("inbox")
    drop_inbox_table()
    drop_outbox_table()
    op.drop_index("ix_erased_users_erased_at", "erased_users")
    for table in (
        "erased_users",
        "daily_spend",
        "merchant_months",
        "digests",
        "expenses",
        "categories",
        "merchant_rules",
        "sms_messages",
        "profiles",
    ):
        op.drop_table(table)
