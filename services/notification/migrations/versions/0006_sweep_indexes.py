"""The sweep's index becomes two partial ones no other statement can use: the claim's UPDATE
had joined ix_deliveries_unqueued (status, enqueued_at) to the primary key and read every
queued entry of a backlog at each batch.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNQUEUED = "status = 'queued' AND enqueued_at IS NULL"
QUEUED = "status = 'queued' AND enqueued_at IS NOT NULL"


def upgrade() -> None:
    op.drop_index("ix_deliveries_unqueued", table_name="deliveries")
    op.create_index(
        "ix_deliveries_unqueued",
        "deliveries",
        ["deferred_until", "created_at"],
        postgresql_where=sa.text(UNQUEUED),
        sqlite_where=sa.text(UNQUEUED),
    )
    op.create_index(
        "ix_deliveries_queued",
        "deliveries",
        ["enqueued_at"],
        postgresql_where=sa.text(QUEUED),
        sqlite_where=sa.text(QUEUED),
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_queued", table_name="deliveries")
    op.drop_index("ix_deliveries_unqueued", table_name="deliveries")
    op.create_index("ix_deliveries_unqueued", "deliveries", ["status", "enqueued_at"])
