"""Year rollups: rows of grain "year" (period_start = January 1st) in category_totals
and merchant_totals, backfilled from the month rows, so year reports read one row
per key instead of twelve.

Run it with reporting stopped: events applied by the old code while it runs would
reach the month rows but not the year rows (`python -m services.reporting rebuild`
recomputes everything).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Each rollup table and its key columns besides user_id, grain and period_start.
TABLES = {
    "category_totals": "category_id, currency",
    "merchant_totals": "category_id, currency, merchant",
}


def _year_start() -> str:
    """The first day of period_start's year: a DATE on PostgreSQL, 'YYYY-MM-DD'
    text on SQLite (as SQLAlchemy's Date stores it there)."""
    if op.get_bind().dialect.name == "postgresql":
        return "CAST(date_trunc('year', period_start) AS DATE)"
    return "substr(period_start, 1, 4) || '-01-01'"


def upgrade() -> None:
    year_start = _year_start()
    for table, keys in TABLES.items():
        op.execute(
            f"INSERT INTO {table} (user_id, grain, period_start, {keys}, sum_minor, count) "
            f"SELECT user_id, 'year', {year_start}, {keys}, SUM(sum_minor), SUM(count) "
            f"FROM {table} WHERE grain = 'month' "
            f"GROUP BY user_id, {year_start}, {keys}"
        )


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"DELETE FROM {table} WHERE grain = 'year'")
