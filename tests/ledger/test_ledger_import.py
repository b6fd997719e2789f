"""ImportExpenses: per-row results, idempotent per row, rows or CSV."""

from __future__ import annotations

import asyncio
import uuid

from expense.ledger.v1 import ledger_pb2
from tests.ledger.harness import LedgerClient, import_row


async def test_each_row_gets_its_own_result(client: LedgerClient) -> None:
    user = await client.sign_up()
    groceries = (await client.categories(user))["Groceries"]
    rows = [
        import_row("a", amount="10.50", category_id=groceries.category_id, tags=["weekly"]),
        import_row("b", amount="-1"),
        import_row("a", amount="10.50", category_id=groceries.category_id, tags=["weekly"]),
        import_row("c", amount="99"),
        import_row("a", amount="11.00"),
        import_row("d", category_id=str(uuid.uuid4())),
        import_row("", amount="1.00", spent_on="not a date"),
    ]
    rows[-1].request_id = ""
    answer = await client.import_rows(user, rows)
    statuses = [(result.index, result.status) for result in answer.results]
    assert statuses == [
        (0, "created"),
        (1, "invalid"),
        (2, "duplicate"),
        (3, "created"),
        (4, "invalid"),
        (5, "invalid"),
        (6, "invalid"),
    ]
    results = answer.results
    assert results[2].expense_id == results[0].expense_id
    assert [e.field for e in results[1].errors] == ["amount"]
    assert [e.field for e in results[4].errors] == ["request_id"]
    assert [e.field for e in results[5].errors] == ["category_id"]
    assert {e.field for e in results[6].errors} == {"request_id", "spent_on"}
    assert (answer.created_count, answer.duplicate_count, answer.invalid_count) == (2, 1, 4)

    imported = await client.get(user, results[0].expense_id)
    assert (imported.amount, imported.source, list(imported.tags)) == ("10.50", "import", ["weekly"])

    # The same import again creates nothing.
    again = await client.import_rows(user, rows)
    assert [r.status for r in again.results] == ["duplicate", "invalid", "duplicate", "duplicate"] + [
        "invalid"
    ] * 3
    assert again.results[3].expense_id == results[3].expense_id
    assert len(await client.list_all(user)) == 2


async def test_csv_rows_use_the_same_rules(client: LedgerClient) -> None:
    user = await client.sign_up()
    await client.set_preferences(user, "USD", "UTC")
    csv = (
        "request_id,amount,currency,spent_on,merchant,note,tags\n"
        'r1,12.5,INR,2026-04-01,"Cafe, Main St",with comma,coffee|work\n'
        "r2,3,,,Kiosk,,\n"
        "r3,1.999,INR,2026-04-01,,,\n"
    )
    request = ledger_pb2.ImportExpensesRequest(csv=csv)
    answer = await client.ledger.ImportExpenses(request, metadata=user.metadata, timeout=10)
    assert [r.status for r in answer.results] == ["created", "created", "invalid"]
    first = await client.get(user, answer.results[0].expense_id)
    assert (first.amount, first.merchant, list(first.tags)) == ("12.50", "Cafe, Main St", ["coffee", "work"])
    defaulted = await client.get(user, answer.results[1].expense_id)
    assert (defaulted.amount, defaulted.currency) == ("3.00", "USD")
    assert [e.field for e in answer.results[2].errors] == ["amount"]


async def test_rows_with_digits_other_than_0_to_9_are_invalid(client: LedgerClient) -> None:
    user = await client.sign_up()
    rows = [import_row("arabic", amount="١٢"), import_row("wide", amount="１２.５０")]
    answer = await client.import_rows(user, rows)
    assert [r.status for r in answer.results] == ["invalid", "invalid"]
    assert [[e.field for e in r.errors] for r in answer.results] == [["amount"], ["amount"]]
    request = ledger_pb2.ImportExpensesRequest(csv="request_id,amount,currency\nr1,١٢,INR\nr2,１２,INR\n")
    from_csv = await client.ledger.ImportExpenses(request, metadata=user.metadata, timeout=10)
    assert [r.status for r in from_csv.results] == ["invalid", "invalid"]
    assert await client.list_all(user) == []


async def test_concurrent_imports_of_the_same_rows_create_each_once(client: LedgerClient) -> None:
    user = await client.sign_up()
    rows = [import_row(f"same-{i}", amount=f"{i + 1}.00") for i in range(200)]
    answers = await asyncio.gather(*(client.import_rows(user, rows) for _ in range(5)))
    assert sum(answer.created_count for answer in answers) == 200
    assert all(answer.created_count + answer.duplicate_count == 200 for answer in answers)
    ids = {tuple(result.expense_id for result in answer.results) for answer in answers}
    assert len(ids) == 1
    assert len(await client.list_all(user)) == 200


async def test_reporting_exports_read_back_the_id_winning_over_the_path(client: LedgerClient) -> None:
    """GET /v1/reports/export (the dashboard's export) has category_id and category both:
    its rows read back, the one already here a duplicate, under any file name."""
    user = await client.sign_up()
    categories = await client.categories(user)
    groceries, transport = categories["Groceries"], categories["Transport"]
    first = await client.import_rows(user, [import_row("kept", category_id=transport.category_id)])
    kept = first.results[0].expense_id
    new_id = str(uuid.uuid4())
    csv = (
        "expense_id,spent_on,amount,currency,category_id,category,merchant,source\n"
        f"{kept},2026-02-01,10.00,INR,{transport.category_id},Transport,,import\n"
        f"{new_id},2026-02-02,5.00,INR,,Groceries,Shop,manual\n"
        f"{uuid.uuid4()},2026-02-03,6.00,INR,{transport.category_id},Groceries,Bus,manual\n"
    )
    request = ledger_pb2.ImportExpensesRequest(csv=csv)
    answer = await client.ledger.ImportExpenses(request, metadata=user.metadata, timeout=10)
    assert [r.status for r in answer.results] == ["duplicate", "created", "created"]
    by_path = await client.get(user, answer.results[1].expense_id)
    by_id = await client.get(user, answer.results[2].expense_id)
    assert (by_path.category_id, by_id.category_id) == (groceries.category_id, transport.category_id)
    again = await client.ledger.ImportExpenses(request, metadata=user.metadata, timeout=10)
    assert [r.status for r in again.results] == ["duplicate"] * 3
    assert len(await client.list_all(user)) == 3
