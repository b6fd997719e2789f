"""Random ledger histories for reporting's property tests: creates, updates,
deletes and category deletions with reassignment, on dates around month and
year boundaries, in currencies with 0, 2 and 3 decimals."""

from __future__ import annotations

from datetime import date, timedelta

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from expense.events.v1 import events_pb2
from services.kit.domain.ids import new_id
from tests.reporting.reference import Category, Expense, LedgerModel


def history_settings(max_examples: int) -> settings:
    """Hypothesis settings of the tests that replay drawn histories against a real
    database: no deadline (each example does I/O), few examples, and a fixture
    shared by the examples (each uses a fresh user, so they do not interfere)."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
        ],
    )


# Around New Year (weeks straddle two years), around a leap day, and a later year.
DAYS = sorted(
    {date(2023, 12, 25) + timedelta(days=n) for n in range(14)}
    | {date(2024, 2, 26) + timedelta(days=n) for n in range(6)}
    | {date(2024, 6, 30), date(2024, 7, 1), date(2025, 3, 31)}
)
CURRENCIES = ["JPY", "INR", "USD", "BHD"]
MERCHANTS = ["", "  ", "Acme", "acme", "Zed Mart", " Zed Mart ", "=HYPERLINK(1)", "Bazaar"]
TREE = [
    Category("c-food", "Food"),
    Category("c-groceries", "Groceries", "c-food"),
    Category("c-organic", "Organic", "c-groceries"),
    Category("c-transport", "Transport"),
    Category("c-fuel", "Fuel", "c-transport"),
    Category("c-fun", "fun"),
]
# Expenses may also carry no category, or one reporting never heard of.
EXPENSE_CATEGORIES = [c.category_id for c in TREE] + ["", "c-ghost"]


def _expense_fields(data: st.DataObject, model: LedgerModel) -> dict[str, object]:
    return {
        "amount_minor": data.draw(st.one_of(st.integers(1, 5000), st.integers(1, 10**13)), "amount"),
        "currency": data.draw(st.sampled_from(CURRENCIES), "currency"),
        "spent_on": data.draw(st.sampled_from(DAYS), "spent_on"),
        "category_id": data.draw(
            st.sampled_from(
                [c for c in EXPENSE_CATEGORIES if c not in model.categories or c in model.live_categories()]
            ),
            "category",
        ),
        "merchant": data.draw(st.sampled_from(MERCHANTS), "merchant"),
    }


def history(data: st.DataObject, model: LedgerModel, steps: int) -> list[events_pb2.EventEnvelope]:
    events: list[events_pb2.EventEnvelope] = []
    for _ in range(steps):
        action = data.draw(
            st.sampled_from(["create", "create", "update", "delete", "drop-category"]), "action"
        )
        existing = list(model.expenses)
        if action == "create" or (not existing and action in ("update", "delete")):
            events.append(model.create(Expense(new_id(), source="manual", **_expense_fields(data, model))))  # type: ignore[arg-type]
        elif action == "update":
            expense_id = data.draw(st.sampled_from(existing), "expense")
            fields = _expense_fields(data, model)
            names = data.draw(st.sets(st.sampled_from(sorted(fields)), min_size=1), "changed")
            events.append(model.update(expense_id, **{name: fields[name] for name in names}))
        elif action == "delete":
            events.append(model.delete(data.draw(st.sampled_from(existing), "expense")))
        else:
            live = model.live_categories()
            victim = data.draw(st.sampled_from(live), "victim")
            targets = [c for c in live if c not in model.subtree(victim)]
            if not targets:
                continue
            target = data.draw(st.sampled_from(targets), "target")
            per_expense = data.draw(st.booleans(), "per_expense_events")
            events.extend(model.delete_category(victim, target, per_expense))
    return events
