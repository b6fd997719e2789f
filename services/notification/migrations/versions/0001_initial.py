"""Notifications, deliveries, preferences, contact points; the kit's inbox.

Revision ID: 0001
Revises:
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.kit.db.migrations import create_inbox_table, create_retention_indexes, drop_inbox_table

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Plain types here (not the models' decorators) so the script never changes with the code.
UTC_DATETIME = sa.DateTime(timezone=True)
ID = sa.String(36)


def upgrade() -> None:
    op.create_table(
        "notifications",
        sa.Column("notification_id", ID, primary_key=True),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("event_id", sa.String(100), nullable=False, unique=True),
        sa.Column("source", sa.String(100), nullable=False),
        sa.Column("template_key", sa.String(100), nullable=False),
        sa.Column("variables", sa.Text(), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("shown", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("read_at", UTC_DATETIME, nullable=True),
    )
    op.create_index("ix_notifications_user", "notifications", ["user_id", "notification_id"])
    op.create_table(
        "deliveries",
        sa.Column("delivery_id", ID, primary_key=True),
        sa.Column("notification_id", ID, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("event_id", sa.String(100), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("provider_message_id", sa.String(200), nullable=True),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("template", sa.String(120), nullable=False),
        sa.Column("deferred_until", UTC_DATETIME, nullable=True),
        sa.Column("in_digest", sa.Boolean(), nullable=False),
        sa.Column("digest_delivery_id", ID, nullable=True),
        sa.Column("claimed_until", UTC_DATETIME, nullable=True),
        sa.Column("enqueued_at", UTC_DATETIME, nullable=True),
        sa.Column("dead_lettered_at", UTC_DATETIME, nullable=True),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
        sa.Column("sent_at", UTC_DATETIME, nullable=True),
        # One message per source event and channel, whatever redelivers it.
        sa.UniqueConstraint("event_id", "channel", name="uq_deliveries_event_channel"),
    )
    op.create_index("ix_deliveries_notification", "deliveries", ["notification_id"])
    op.create_index("ix_deliveries_provider_message", "deliveries", ["provider_message_id"])
    op.create_index("ix_deliveries_user_sent", "deliveries", ["user_id", "channel", "sent_at"])
    op.create_index("ix_deliveries_unqueued", "deliveries", ["status", "enqueued_at"])
    op.create_table(
        "preferences",
        sa.Column("user_id", ID, primary_key=True),
        sa.Column("rules", sa.Text(), nullable=False),
        sa.Column("quiet_start", sa.String(5), nullable=False),
        sa.Column("quiet_end", sa.String(5), nullable=False),
        sa.Column("time_zone", sa.String(64), nullable=False),
        sa.Column("digest", sa.Boolean(), nullable=False),
        sa.Column("digest_time", sa.String(5), nullable=False),
        sa.Column("daily_caps", sa.Text(), nullable=False),
        sa.Column("locale", sa.String(35), nullable=False),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
    )
    op.create_table(
        "contact_points",
        sa.Column("contact_point_id", ID, primary_key=True),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("verified_at", UTC_DATETIME, nullable=True),
        sa.Column("code_digest", sa.String(64), nullable=False),
        sa.Column("code_expires_at", UTC_DATETIME, nullable=True),
        sa.Column("code_attempts", sa.Integer(), nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.UniqueConstraint("user_id", "channel", "address", name="uq_contact_points_address"),
    )
    create_inbox_table()
    create_retention_indexes("inbox")


def downgrade() -> None:
    drop_inbox_table()
    op.drop_table("contact_points")
    op.drop_table("preferences")
    op.drop_table("deliveries")
    op.drop_table("notifications")
