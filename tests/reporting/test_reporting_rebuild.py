"""Rebuild equals incremental: after random histories, recomputing a user from
the ledger's state gives the rollups the events built (compared with deleted
categories followed to where their expenses went, as reports do), and events
arriving after a rebuild still apply exactly."""

from __future__ import annotations

import copy
from collections import defaultdict

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from services.kit.db.engine import Database
from services.kit.domain.ids import new_id
from services.ledger.replica import CategoryInfo, ExpenseLine
from services.reporting import storage
from services.reporting.rebuild import rebuild_user
from tests.reporting.harness import Reporting
from tests.reporting.histories import TREE, history, history_settings
from tests.reporting.reference import LedgerModel, rollup_starts

RollupKey = tuple[str, object, str, str, str]


class ModelLedger:
    """The LedgerData a rebuild reads, answered from the test's ledger model."""

    def __init__(self, model: LedgerModel) -> None:
        self.model = model

    async def users(self) -> set[str]:
        return {self.model.user_id}

    async def categories(self, user_id: str) -> list[CategoryInfo]:
        return [
            CategoryInfo(c.category_id, c.name, c.parent_id)
            for c in self.model.categories.values()
            if not c.deleted
        ]

    async def expenses(self, user_id: str) -> list[ExpenseLine]:
        return [
            ExpenseLine(e.expense_id, e.amount_minor, e.currency, e.spent_on, e.category_id, e.merchant)
            for e in self.model.expenses.values()
        ]


async def stored_rollups(db: Database, user_id: str) -> dict[RollupKey, tuple[int, int]]:
    """Every rollup row of the user, categories followed through reassignments."""
    found: dict[RollupKey, list[int]] = defaultdict(lambda: [0, 0])
    async with db.transaction() as session:
        tree = await storage.category_tree(session, user_id)
        for table in (storage.category_totals, storage.merchant_totals):
            rows = (await session.execute(select(table).where(table.c.user_id == user_id))).all()
            for row in rows:
                merchant = getattr(row, "merchant", "")
                key = (row.grain, row.period_start, tree.resolve(row.category_id), row.currency, merchant)
                found[key][0] += int(row.sum_minor)
                found[key][1] += int(row.count)
    return {key: (total, count) for key, (total, count) in found.items() if count}


def expected_rollups(model: LedgerModel) -> dict[RollupKey, tuple[int, int]]:
    found: dict[RollupKey, list[int]] = defaultdict(lambda: [0, 0])
    for e in model.expenses.values():
        merchant = e.merchant.strip()[:200]
        for grain, start in rollup_starts(e.spent_on):
            keys = [(grain, start, e.category_id, e.currency, "")]
            if merchant:
                keys.append((grain, start, e.category_id, e.currency, merchant))
            for key in keys:
                found[key][0] += e.amount_minor
                found[key][1] += 1
    return {key: (total, count) for key, (total, count) in found.items()}


@history_settings(25)
@given(data=st.data())
async def test_rebuild_equals_incremental(reporting: Reporting, data: st.DataObject) -> None:
    model = LedgerModel(new_id())
    events = [model.add_category(copy.copy(category)) for category in TREE]
    await reporting.apply(*events, *history(data, model, data.draw(st.integers(1, 15), "steps")))
    incremental = await stored_rollups(reporting.db, model.user_id)
    assert incremental == expected_rollups(model)

    rebuilt_count = await rebuild_user(reporting.db, ModelLedger(model), model.user_id)
    assert rebuilt_count == len(model.expenses)
    assert await stored_rollups(reporting.db, model.user_id) == incremental

    # Rebuilt copies carry no ledger version: later events must still apply exactly.
    await reporting.apply(*history(data, model, data.draw(st.integers(1, 6), "later_steps")))
    assert await stored_rollups(reporting.db, model.user_id) == expected_rollups(model)
