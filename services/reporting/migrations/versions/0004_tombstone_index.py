"""An index on the tombstones' updated_at, which the retention purge reads by
(services/kit/retention.py): deleted expenses are kept only as long as inbox records.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TOMBSTONE = sa.text("deleted")


def upgrade() -> None:
    # CONCURRENTLY on PostgreSQL: event application keeps writing the table meanwhile.
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_expenses_tombstones",
            "expenses",
            ["updated_at"],
            postgresql_where=TOMBSTONE,
            sqlite_where=TOMBSTONE,
            postgresql_concurrently=True,
            if_not_exists=True,
        )


def downgrade() -> None:
    op.drop_index("ix_expenses_tombstones", table_name="expenses")
