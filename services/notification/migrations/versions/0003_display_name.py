"""The user's display name (from their signup) beside their preferences: templates of
events that name nobody greet by it (the monthly report).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("preferences", sa.Column("display_name", sa.String(200), nullable=False, server_default=""))


def downgrade() -> None:
    op.drop_column("preferences", "display_name")
