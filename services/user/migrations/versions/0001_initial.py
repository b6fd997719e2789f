"""Profiles, and the kit's outbox and inbox.

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


def upgrade() -> None:
    op.create_table(
        "profiles",
        sa.Column("user_id", sa.String(36), primary_key=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("display_name", sa.String(100), nullable=False),
        sa.Column("default_currency", sa.String(3), nullable=False),
        sa.Column("time_zone", sa.String(64), nullable=False),
        sa.Column("locale", sa.String(35), nullable=False),
        sa.Column("first_day_of_week", sa.String(9), nullable=False),
        sa.Column("notification_channels", sa.JSON(), nullable=False),
        sa.Column("quiet_hours_start", sa.String(5), nullable=True),
        sa.Column("quiet_hours_end", sa.String(5), nullable=True),
        sa.Column("sms_auto_import", sa.Boolean(), nullable=False),
        sa.Column("create_time", UTC_DATETIME, nullable=False),
        sa.Column("update_time", UTC_DATETIME, nullable=False),
    )
    create_outbox_table()
    create_inbox_table()


def downgrade() -> None:
    drop_inbox_table()
    drop_outbox_table()
    op.drop_table("profiles")
