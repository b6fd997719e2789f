"""ListExpenses: each filter, orderings, keyset pages stable under inserts."""

from __future__ import annotations

import asyncio

from expense.ledger.v1 import ledger_pb2
from tests.ledger.harness import LedgerClient, User


async def _seed(client: LedgerClient, user: User) -> dict[str, ledger_pb2.Expense]:
    categories = await client.categories(user)
    food = categories["Food & dining"]
    cafes = await client.create_category(user, "Cafes", food.category_id)
    travel = categories["Travel"]
    specs = {
        "lunch": {
            "amount": "250.00",
            "spent_on": "2026-01-10",
            "category_id": food.category_id,
            "merchant": "Curry House",
            "tags": ["Work"],
        },
        "coffee": {
            "amount": "4.50",
            "spent_on": "2026-01-11",
            "category_id": cafes.category_id,
            "merchant": "Bean There",
            "note": "flat white",
            "tags": ["work", "daily"],
        },
        "flight": {
            "amount": "12000.00",
            "spent_on": "2026-01-31",
            "category_id": travel.category_id,
            "merchant": "Air Lines",
            "note": "100% refundable",
        },
        "yen": {"amount": "300", "currency": "JPY", "spent_on": "2026-02-01", "merchant": "Konbini"},
        "dinar": {"amount": "4.125", "currency": "KWD", "spent_on": "2025-12-31", "note": "under_score"},
    }
    return {name: await client.create(user, **fields) for name, fields in specs.items()}


def _names(found: list[ledger_pb2.Expense], seeded: dict[str, ledger_pb2.Expense]) -> list[str]:
    by_id = {expense.expense_id: name for name, expense in seeded.items()}
    return [by_id[expense.expense_id] for expense in found]


async def test_each_filter(client: LedgerClient) -> None:
    user = await client.sign_up()
    seeded = await _seed(client, user)
    food = (await client.categories(user))["Food & dining"]

    async def names(**filters: object) -> list[str]:
        return _names(await client.list_all(user, **filters), seeded)

    assert await names() == ["yen", "flight", "coffee", "lunch", "dinar"]
    assert await names(**{"from": "2026-01-11", "to": "2026-01-31"}) == ["flight", "coffee"]
    assert await names(to="2026-01-10") == ["lunch", "dinar"]
    assert await names(category_id=food.category_id) == ["coffee", "lunch"]  # includes the child
    assert await names(category_id=seeded["coffee"].category_id) == ["coffee"]
    assert await names(q="BEAN") == ["coffee"]
    assert await names(q="white") == ["coffee"]
    assert await names(q="100%") == ["flight"]
    assert await names(q="y_h") == []  # "_" is a literal, not a wildcard
    assert await names(q="under_") == ["dinar"]
    assert await names(tag="WORK") == ["coffee", "lunch"]
    assert await names(tag="daily") == ["coffee"]
    # q also matches the category's name and the tags (issue 18).
    assert await names(q="cafes") == ["coffee"]
    assert await names(q="TRAVEL") == ["flight"]
    assert await names(q="dail") == ["coffee"]
    assert await names(currency="JPY") == ["yen"]
    assert await names(currency="inr") == ["flight", "coffee", "lunch"]
    # Amount bounds compare the exact decimal amount within the one currency asked for.
    assert await names(currency="INR", min_amount="250", max_amount="300") == ["lunch"]
    assert await names(currency="JPY", min_amount="250", max_amount="300") == ["yen"]
    assert await names(currency="INR", max_amount="4.5") == ["coffee"]
    assert await names(currency="KWD", min_amount="4.125", max_amount="4.125") == ["dinar"]
    assert await names(currency="INR", min_amount="4.51") == ["flight", "lunch"]
    assert await names(q="house", tag="work", to="2026-01-10") == ["lunch"]


async def test_orderings_and_total_size(client: LedgerClient) -> None:
    user = await client.sign_up()
    seeded = await _seed(client, user)
    ordered = {
        order: _names(await client.list_all(user, order_by=order), seeded)
        for order in ("spent_on", "spent_on asc", "amount", "amount desc")
    }
    assert ordered["spent_on"] == ordered["spent_on asc"] == ["dinar", "lunch", "coffee", "flight", "yen"]
    assert ordered["amount"] == ["dinar", "coffee", "lunch", "yen", "flight"]
    assert ordered["amount desc"] == list(reversed(ordered["amount"]))
    page = await client.list(user, page_size=2, currency="INR")
    assert page.total_size == 3 and len(page.expenses) == 2 and not page.total_size_capped
    # Without the count: the same page, total_size 0; the next page follows either way.
    bare = await client.list(user, page_size=2, currency="INR", skip_total_size=True)
    assert [e.expense_id for e in bare.expenses] == [e.expense_id for e in page.expenses]
    assert (bare.total_size, bare.total_size_capped) == (0, False)
    # The last row deleted: the next page is empty, past the last row, and counted apart.
    (last,) = [e for e in seeded.values() if e.currency == "INR" and e not in page.expenses]
    await client.delete(user, last.expense_id)
    past = await client.list(user, page_size=2, currency="INR", page_token=bare.next_page_token)
    assert (len(past.expenses), past.total_size, past.next_page_token) == (0, 2, "")


async def test_total_size_says_when_the_count_stopped_at_the_cap(client: LedgerClient) -> None:
    """max_counted_rows is 1,000: 1,000 matches are an exact count, 1,001 a capped one."""
    user = await client.sign_up()
    rows = [
        ledger_pb2.ImportRow(request_id=f"c{i}", amount="1.00", currency="INR", spent_on="2026-01-01")
        for i in range(1001)
    ]
    for start in range(0, 1000, 500):
        assert (await client.import_rows(user, rows[start : start + 500])).created_count == 500
    exact = await client.list(user, page_size=1)
    assert (exact.total_size, exact.total_size_capped) == (1000, False)
    assert (await client.import_rows(user, rows[1000:])).created_count == 1
    capped = await client.list(user, page_size=1)
    assert (capped.total_size, capped.total_size_capped) == (1000, True)
    bare = await client.list(user, page_size=1, skip_total_size=True)
    assert (bare.total_size, bare.total_size_capped, len(bare.expenses)) == (0, False, 1)


async def test_pages_have_no_duplicates_or_gaps_while_inserts_happen(client: LedgerClient) -> None:
    user = await client.sign_up()
    rows = [
        ledger_pb2.ImportRow(
            request_id=f"row-{i}",
            amount=f"{(i * 37) % 500 + 1}.00",
            currency="INR",
            spent_on=f"2026-0{i % 9 + 1}-1{i % 10}",
        )
        for i in range(1000)
    ]
    for start in range(0, 1000, 500):
        assert (await client.import_rows(user, rows[start : start + 500])).created_count == 500
    before = {expense.expense_id for expense in await client.list_all(user)}

    for order in ("spent_on desc", "amount asc"):
        stop = asyncio.Event()
        inserted: list[str] = []
        writer = asyncio.create_task(_insert_until(client, user, stop, inserted))
        seen: list[str] = []
        token = ""
        try:
            while True:
                page = await client.list(user, page_size=37, page_token=token, order_by=order)
                seen.extend(expense.expense_id for expense in page.expenses)
                token = page.next_page_token
                if not token:
                    break
                await asyncio.sleep(0)
        finally:
            stop.set()
            await writer
        assert len(seen) == len(set(seen)), "a row appeared on two pages"
        assert before <= set(seen), "a row that existed before the first page was skipped"
        assert set(seen) - before <= set(inserted)
        before |= set(inserted)
        assert inserted


async def _insert_until(client: LedgerClient, user: User, stop: asyncio.Event, inserted: list[str]) -> None:
    day = 1
    while not stop.is_set():
        expense = await client.create(user, amount=f"{day}.25", spent_on=f"2026-0{day % 9 + 1}-15")
        inserted.append(expense.expense_id)
        day += 1
