"""ix_deliveries_user_sent gains claimed_until: a daily cap counts the deliveries being sent
now (sent_at NULL, claimed_until ahead) without reading every unsent one of a backlog.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_deliveries_user_sent", table_name="deliveries")
    op.create_index(
        "ix_deliveries_user_sent", "deliveries", ["user_id", "channel", "sent_at", "claimed_until"]
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_user_sent", table_name="deliveries")
    op.create_index("ix_deliveries_user_sent", "deliveries", ["user_id", "channel", "sent_at"])
