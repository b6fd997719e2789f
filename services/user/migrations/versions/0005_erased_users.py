"""The users erased lately (services/kit/db/erasure.py), by id alone: the user service skips
a user.registered redelivered after the user's user.deleted, which would create the profile
again, until the retention purge.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-08
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "erased_users",
        sa.Column("erased_user_id", sa.String(64), primary_key=True),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_erased_users_erased_at", "erased_users", ["erased_at"])


def downgrade() -> None:
    op.drop_index("ix_erased_users_erased_at", "erased_users")
    op.drop_table("erased_users")
