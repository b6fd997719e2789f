"""`q` searches the tags through search_text (services/ledger/domain.py:search_text): the
tags' keys appended to the merchant and note, a line each, so one trigram index answers
merchant, note and tag alike. Rows written before carry merchant and note alone.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Each tag key on a line of its own after the merchant and note (the order of a row's tags
# does not matter to a substring search).
TAG_LINES = {
    "postgresql": "string_agg(E'\\n' || t.tag_key, '')",
    "sqlite": "group_concat(char(10) || t.tag_key, '')",
}


def upgrade() -> None:
    lines = TAG_LINES[op.get_bind().dialect.name]
    op.execute(
        f"UPDATE expenses SET search_text = search_text || "
        f"(SELECT {lines} FROM expense_tags t WHERE t.expense_id = expenses.id) "
        "WHERE EXISTS (SELECT 1 FROM expense_tags t WHERE t.expense_id = expenses.id)"
    )


def downgrade() -> None:
    # Nothing to undo: the earlier code matched tags itself (through expense_tags), so tag
    # lines left in search_text find nothing it would not have found.
    pass
