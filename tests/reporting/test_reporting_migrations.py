"""Migration 0002 (year rollups) on both databases: its backfill from the month
rows gives exactly the year rows the events build, i.e. a recomputation from the
final expenses; its downgrade removes them and nothing else."""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path

import pytest
from alembic import command

from expense.events.v1 import events_pb2
from services.kit.db import migrations
from services.kit.domain.ids import new_id
from tests.reporting.harness import Reporting, build_reporting, migrated_settings
from tests.reporting.reference import Category, Expense, LedgerModel
from tests.reporting.test_reporting_batches import Rollups, recomputed, stored_rollups


def _spending(model: LedgerModel) -> list[events_pb2.EventEnvelope]:
    """Expenses in several months of three years, moved across New Year, deleted and
    re-categorised, so most year rows sum several month rows."""
    food, fun = Category(new_id(), "Food"), Category(new_id(), "Fun")
    events = [model.add_category(food), model.add_category(fun)]
    days = [date(2023, 1, 1), date(2023, 5, 9), date(2023, 12, 31), date(2024, 1, 1)]
    days += [date(2024, 6, 30), date(2024, 11, 2), date(2025, 12, 31)]
    ids: dict[tuple[date, str], str] = {}
    for n, day in enumerate(days):
        for currency, merchant in (("INR", "Acme"), ("JPY", "Zed"), ("INR", "")):
            expense = Expense(new_id(), 100 * (n + 1), currency, day, food.category_id, merchant)
            ids[(day, merchant)] = expense.expense_id
            events.append(model.create(expense))
    events.append(model.create(Expense(new_id(), 7, "INR", date(2024, 3, 3), fun.category_id, "Acme")))
    events.append(model.update(ids[(date(2023, 12, 31), "Acme")], spent_on=date(2024, 2, 29), merchant="Zed"))
    events.append(model.delete(ids[(date(2024, 1, 1), "Zed")]))
    events.extend(model.delete_category(fun.category_id, food.category_id, per_expense_events=False))
    return events


def _without_years(rollups: Rollups) -> Rollups:
    return {key: total for key, total in rollups.items() if key[1] != "year"}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_the_year_backfill_equals_a_recomputation(backend: str, tmp_path: Path) -> None:
    async with migrated_settings(backend, tmp_path) as settings:
        reporting = build_reporting(settings)
        try:
            await _check_backfill(reporting)
        finally:
            await reporting.close()


async def _check_backfill(reporting: Reporting) -> None:
    models = [LedgerModel(new_id()), LedgerModel(new_id())]
    for model in models:
        await reporting.apply(*_spending(model))
    expected = {model.user_id: recomputed(model) for model in models}
    assert any(key[1] == "year" for key in expected[models[0].user_id])

    config = migrations.alembic_config("reporting", reporting.settings)
    await asyncio.to_thread(command.downgrade, config, "0001")
    for model in models:
        rollups = await stored_rollups(reporting.db, model.user_id)
        assert rollups == _without_years(expected[model.user_id])

    await asyncio.to_thread(migrations.upgrade, "reporting", reporting.settings)
    for model in models:
        assert await stored_rollups(reporting.db, model.user_id) == expected[model.user_id]
