"""Bulk load for benchmarks and load tests: categories and expenses written by COPY
straight into the ledger schema (after its migrations), in the service's own row
mapping, so a seeded row is exactly what the ledger would have written for it."""

from __future__ import annotations

from collections.abc import Iterable

from services.kit.db.bulk import analyze_and_count, copy_streams
from services.ledger.domain import Category, Expense, entry
from services.ledger.storage import (
    _category_columns,
    _expense_columns,
    _tag_rows,
    categories,
    category_owners,
    expense_tags,
    expenses,
    ledger_entries,
)

SCHEMA = "ledger"


def seed_categories(dsn: str, new_categories: Iterable[Category]) -> dict[str, int]:
    """Loads whole category trees into an empty schema: each user's categories and the
    user's category_owners row, so the ledger does not seed the defaults again.
    Returns the rows per table."""
    owners: set[str] = set()
    with copy_streams(dsn, SCHEMA, category_owners, categories) as (owner_rows, category_rows):
        for category in new_categories:
            if category.user_id not in owners:
                owners.add(category.user_id)
                owner_rows.write({"user_id": category.user_id, "seed_time": category.create_time})
            category_rows.write(_category_columns(category))
    return analyze_and_count(dsn, SCHEMA, [categories])


def seed_expenses(dsn: str, new_expenses: Iterable[Expense]) -> dict[str, int]:
    """Loads expenses into an empty schema, with their tag rows and the append-only
    "create" entry of each (by its owner, at its create time). Returns the rows per table."""
    with copy_streams(dsn, SCHEMA, expenses, ledger_entries, expense_tags) as (rows, entries, tags):
        for expense in new_expenses:
            rows.write(_expense_columns(expense))
            for tag_row in _tag_rows(expense):
                tags.write(tag_row)
            # A ledger entry's fields are its table's columns.
            entries.write(vars(entry("create", expense.user_id, expense.create_time, None, expense)))
    return analyze_and_count(dsn, SCHEMA, [expenses, expense_tags, ledger_entries])
