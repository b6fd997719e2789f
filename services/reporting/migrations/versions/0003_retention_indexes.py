"""Indexes on the timestamps the retention purge reads by (services/kit/db/retention.py):
inbox.processed_at.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05
"""

from collections.abc import Sequence

from services.kit.db.migrations import create_retention_indexes, drop_retention_indexes

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("inbox",)


def upgrade() -> None:
    create_retention_indexes(*TABLES)


def downgrade() -> None:
    drop_retention_indexes(*TABLES)
