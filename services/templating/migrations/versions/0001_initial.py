"""Templates, their versions and publications.

Revision ID: 0001
Revises:
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Plain types here (not the models' decorators) so the script never changes with the code.
UTC_DATETIME = sa.DateTime(timezone=True)
ID = ("key", "channel", "locale")


def _id_columns() -> list[sa.Column]:
    return [
        sa.Column("key", sa.String(100), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("locale", sa.String(16), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "templates",
        *_id_columns(),
        sa.Column("published_version", sa.Integer(), nullable=True),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint(*ID),
    )
    op.create_table(
        "template_versions",
        *_id_columns(),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("variables", sa.Text(), nullable=False),
        sa.Column("sample", sa.Text(), nullable=False),
        sa.Column("whatsapp", sa.Text(), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("published_at", UTC_DATETIME, nullable=True),
        sa.PrimaryKeyConstraint(*ID, "version"),
    )
    op.create_table(
        "template_publications",
        *_id_columns(),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("rolled_back", sa.Boolean(), nullable=False),
        sa.Column("published_at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint(*ID, "seq"),
    )


def downgrade() -> None:
    op.drop_table("template_publications")
    op.drop_table("template_versions")
    op.drop_table("templates")
