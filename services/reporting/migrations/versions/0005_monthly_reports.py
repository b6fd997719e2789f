"""Monthly reports: the (user, month) key of each report.monthly_ready published, the
scheduler's lease, and the locale in reporting's copy of profiles. Erasure: the users
erased lately (services/kit/db/erasure.py), whose late events are skipped.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_DATETIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("profiles") as batch:
        batch.add_column(sa.Column("locale", sa.String(35), nullable=False, server_default=""))
    op.create_table(
        "monthly_reports",
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("month", sa.String(7), nullable=False),
        sa.Column("published_at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("user_id", "month"),
    )
    op.create_table(
        "erased_users",
        sa.Column("erased_user_id", sa.String(64), primary_key=True),
        sa.Column("erased_at", UTC_DATETIME, nullable=False),
    )
    op.create_index("ix_erased_users_erased_at", "erased_users", ["erased_at"])
    op.create_table(
        "leases",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(128), nullable=False),
        sa.Column("expires_at", UTC_DATETIME, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("leases")
    op.drop_index("ix_erased_users_erased_at", "erased_users")
    op.drop_table("erased_users")
    op.drop_table("monthly_reports")
    with op.batch_alter_table("profiles") as batch:
        batch.drop_column("locale")
