"""An index on the tombstones' updated_at, which the retention purge reads by
(services/kit/db/retention.py): deleted expenses are kept only as long as inbox records.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

from collections.abc import Sequence

from alembic import op

from services.kit.db.migrations import create_index_concurrently

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_index_concurrently("ix_expenses_tombstones", "expenses", ["updated_at"], where="deleted")


def downgrade() -> None:
    op.drop_index("ix_expenses_tombstones", table_name="expenses")
