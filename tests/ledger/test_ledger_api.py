"""LedgerService over gRPC against the real mesh (auth, user, ledger), on SQLite
and on PostgreSQL: expenses, history, idempotency, concurrency, defaults."""

from __future__ import annotations

import asyncio
import tomllib
import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import grpc
from sqlalchemy import func, select

from expense.ledger.v1 import ledger_pb2
from services.kit.config.settings import REPO_ROOT
from services.ledger import storage
from tests.ledger.conftest import ledger_database
from tests.ledger.harness import LedgerClient, gather_outcomes, invalid_fields, rpc_error
from tests.mesh import Mesh


async def test_create_and_get_keep_the_exact_amount(client: LedgerClient) -> None:
    user = await client.sign_up()
    created = await client.create(
        user,
        amount="1250.5",
        currency="INR",
        spent_on="2026-11-21",
        merchant=" Cafe  ",
        note="team\nlunch",
        tags=["Work", "work", "food"],
    )
    assert created.amount == "1250.50"
    assert (created.currency, created.spent_on, created.merchant, created.note) == (
        "INR",
        "2026-11-21",
        "Cafe",
        "team\nlunch",
    )
    assert list(created.tags) == ["Work", "food"]
    assert created.source == "manual"
    assert created.etag and created.create_time.endswith("Z")
    assert await client.get(user, created.expense_id) == created


async def test_amounts_follow_each_currency_exponent(client: LedgerClient) -> None:
    user = await client.sign_up()
    yen = await client.create(user, amount="1500", currency="JPY")
    dinar = await client.create(user, amount="12.345", currency="KWD")
    rupees = await client.create(user, amount="0.01", currency="inr")
    assert (yen.amount, dinar.amount, rupees.amount, rupees.currency) == ("1500", "12.345", "0.01", "INR")


async def test_currency_and_date_default_to_the_users_preferences(
    client: LedgerClient, ledger_mesh: Mesh
) -> None:
    user = await client.sign_up()
    # UTC+14: "today" there is often not today in UTC, so the zone really matters.
    await client.set_preferences(user, "JPY", "Pacific/Kiritimati")
    expense = await client.ledger.CreateExpense(
        ledger_pb2.CreateExpenseRequest(amount="1500"), metadata=user.metadata, timeout=10
    )
    assert expense.currency == "JPY"
    kiritimati_today = datetime.now(ZoneInfo("Pacific/Kiritimati")).date()
    assert expense.spent_on in {
        kiritimati_today.isoformat(),
        (kiritimati_today - timedelta(days=1)).isoformat(),
    }

    # The profile change reaches the ledger as an event and applies at once,
    # without waiting for the preferences cache to expire.
    db = ledger_database(ledger_mesh)
    try:
        consumed_before = await _preference_events(db)
        await client.set_preferences(user, "USD", "UTC")
        for _ in range(200):
            if await _preference_events(db) > consumed_before:
                break
            await asyncio.sleep(0.02)
        expense = await client.ledger.CreateExpense(
            ledger_pb2.CreateExpenseRequest(amount="2.50"), metadata=user.metadata, timeout=10
        )
    finally:
        await db.dispose()
    assert expense.currency == "USD"


async def _preference_events(db: object) -> int:
    async with db.transaction() as session:  # type: ignore[attr-defined]
        query = (
            select(func.count())
            .select_from(storage.inbox)
            .where(storage.inbox.c.consumer == "ledger_preferences")
        )
        return int((await session.execute(query)).scalar_one())


async def test_fifty_concurrent_creates_with_one_request_id_leave_one_expense(client: LedgerClient) -> None:
    user = await client.sign_up()
    request_id = str(uuid.uuid4())
    outcomes = await gather_outcomes(
        [client.create(user, request_id=request_id, amount="42.00", merchant="Once") for _ in range(50)]
    )
    failures = [outcome for outcome in outcomes if not isinstance(outcome, ledger_pb2.Expense)]
    assert failures == []
    assert len({outcome.expense_id for outcome in outcomes}) == 1  # type: ignore[attr-defined]
    listed = await client.list_all(user)
    assert [expense.expense_id for expense in listed] == [outcomes[0].expense_id]  # type: ignore[attr-defined]

    # A retry later still gets the first answer; the same id with another body is refused.
    assert await client.create(user, request_id=request_id, amount="42.00", merchant="Once") == outcomes[0]
    fields = await invalid_fields(client.create(user, request_id=request_id, amount="43.00", merchant="Once"))
    assert "request_id" in fields
    assert len(await client.list_all(user)) == 1


async def test_without_request_id_each_create_is_new(client: LedgerClient) -> None:
    user = await client.sign_up()
    await client.create(user, amount="5.00")
    await client.create(user, amount="5.00")
    assert len(await client.list_all(user)) == 2


async def test_request_ids_are_per_user(client: LedgerClient) -> None:
    alice, bob = await client.sign_up(), await client.sign_up()
    request_id = str(uuid.uuid4())
    first = await client.create(alice, request_id=request_id, amount="1.00")
    second = await client.create(bob, request_id=request_id, amount="2.00")
    assert first.expense_id != second.expense_id and second.amount == "2.00"


async def test_of_twenty_concurrent_updates_with_one_etag_exactly_one_wins(client: LedgerClient) -> None:
    user = await client.sign_up()
    expense = await client.create(user, amount="100.00")
    outcomes = await gather_outcomes(
        [
            client.update(user, expense.expense_id, "amount", expense.etag, amount=f"{200 + i}.00")
            for i in range(20)
        ]
    )
    winners = [outcome for outcome in outcomes if isinstance(outcome, ledger_pb2.Expense)]
    losers = [outcome for outcome in outcomes if isinstance(outcome, grpc.aio.AioRpcError)]
    assert len(winners) == 1 and len(losers) == 19
    assert {error.code() for error in losers} == {grpc.StatusCode.ABORTED}
    current = await client.get(user, expense.expense_id)
    assert current == winners[0]
    history = await client.history(user, expense.expense_id)
    assert [entry.action for entry in history] == ["create", "update"]


async def test_read_modify_write_with_etags_loses_no_update(client: LedgerClient) -> None:
    """20 writers each add 1.00, retrying on ABORTED: the total shows every one."""
    user = await client.sign_up()
    expense = await client.create(user, amount="100.00")

    async def add_one() -> int:
        attempts = 0
        while True:
            attempts += 1
            current = await client.get(user, expense.expense_id)
            new_amount = f"{int(current.amount.split('.')[0]) + 1}.00"
            try:
                await client.update(user, expense.expense_id, "amount", current.etag, amount=new_amount)
                return attempts
            except grpc.aio.AioRpcError as error:
                assert error.code() == grpc.StatusCode.ABORTED

    attempts = await asyncio.gather(*(add_one() for _ in range(20)))
    final = await client.get(user, expense.expense_id)
    assert final.amount == "120.00"
    assert len(await client.history(user, expense.expense_id)) == 21
    assert sum(attempts) >= 20


async def test_update_changes_only_the_masked_fields(client: LedgerClient) -> None:
    user = await client.sign_up()
    expense = await client.create(user, amount="100.50", merchant="Old", note="keep", tags=["a"])
    updated = await client.update(
        user, expense.expense_id, "merchant,tags", expense.etag, merchant="New", note="x"
    )
    assert (updated.merchant, list(updated.tags), updated.note, updated.amount) == (
        "New",
        [],
        "keep",
        "100.50",
    )
    assert updated.etag != expense.etag and updated.create_time == expense.create_time
    assert expense.update_time == expense.create_time < updated.update_time
    assert (await client.get(user, expense.expense_id)).update_time == updated.update_time

    # Without a mask: the fields set in the body (AIP-134); no etag: last writer wins.
    updated = await client.update(user, expense.expense_id, "", note="changed")
    assert (updated.note, updated.merchant) == ("changed", "New")

    # A currency change keeps the decimal amount, which must fit the new currency.
    fields = await invalid_fields(client.update(user, expense.expense_id, "currency", currency="JPY"))
    assert "expense.amount" in fields
    updated = await client.update(user, expense.expense_id, "currency,amount", amount="15000", currency="JPY")
    assert (updated.amount, updated.currency) == ("15000", "JPY")


async def test_stale_etag_is_aborted_and_changes_nothing(client: LedgerClient) -> None:
    user = await client.sign_up()
    expense = await client.create(user, amount="10.00")
    fresh = await client.update(user, expense.expense_id, "amount", expense.etag, amount="11.00")
    error = await rpc_error(client.update(user, expense.expense_id, "amount", expense.etag, amount="12.00"))
    assert error.code() == grpc.StatusCode.ABORTED
    error = await rpc_error(client.delete(user, expense.expense_id, expense.etag))
    assert error.code() == grpc.StatusCode.ABORTED
    assert await client.get(user, expense.expense_id) == fresh


async def test_delete_hides_the_expense_but_keeps_its_history(client: LedgerClient) -> None:
    user = await client.sign_up()
    expense = await client.create(user, amount="10.00", merchant="Shop")
    updated = await client.update(user, expense.expense_id, "amount", expense.etag, amount="12.00")
    await client.delete(user, expense.expense_id, updated.etag)

    for call in (
        client.get(user, expense.expense_id),
        client.delete(user, expense.expense_id),
        client.update(user, expense.expense_id, "amount", amount="1.00"),
    ):
        assert (await rpc_error(call)).code() == grpc.StatusCode.NOT_FOUND
    assert await client.list_all(user) == []

    history = await client.history(user, expense.expense_id)
    assert [(entry.version, entry.action) for entry in history] == [
        (1, "create"),
        (2, "update"),
        (3, "delete"),
    ]
    assert all(entry.actor == user.user_id and entry.time.endswith("Z") for entry in history)
    create, update, delete = history
    assert not create.HasField("before") and create.after.amount == "10.00"
    assert (update.before.amount, update.after.amount) == ("10.00", "12.00")
    assert delete.before.amount == "12.00" and not delete.HasField("after")


async def test_unknown_ids_are_not_found(client: LedgerClient) -> None:
    user = await client.sign_up()
    missing = str(uuid.uuid4())
    for call in (
        client.get(user, missing),
        client.update(user, missing, "amount", amount="1.00"),
        client.delete(user, missing),
        client.history(user, missing),
        client.create(user, category_id=missing),
        client.list(user, category_id=missing),
    ):
        assert (await rpc_error(call)).code() == grpc.StatusCode.NOT_FOUND


async def test_the_ledger_requires_a_verified_token(client: LedgerClient) -> None:
    request = ledger_pb2.ListExpensesRequest()
    error = await rpc_error(client.ledger.ListExpenses(request, timeout=10))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    forged = (("authorization", "Bearer eyJhbGciOiJub25lIn0.e30."),)
    error = await rpc_error(client.ledger.ListExpenses(request, metadata=forged, timeout=10))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_history_entries_cannot_be_changed(ledger_mesh: Mesh, client: LedgerClient) -> None:
    user = await client.sign_up()
    expense = await client.create(user, amount="10.00")
    db = ledger_database(ledger_mesh)
    try:
        for statement in (
            storage.ledger_entries.update().values(action="forged"),
            storage.ledger_entries.delete(),
        ):
            error = await _failure(
                db, statement.where(storage.ledger_entries.c.expense_id == expense.expense_id)
            )
            assert "append-only" in error
    finally:
        await db.dispose()
    assert [entry.action for entry in await client.history(user, expense.expense_id)] == ["create"]


async def _failure(db: object, statement: object) -> str:
    try:
        async with db.transaction() as session:  # type: ignore[attr-defined]
            await session.execute(statement)
    except Exception as error:
        return str(error)
    raise AssertionError("the statement succeeded")


async def test_internal_streams_cover_every_live_row_in_batches(client: LedgerClient) -> None:
    user = await client.sign_up()
    rows = [
        ledger_pb2.ImportRow(request_id=f"s{i}", amount=f"{i + 1}.00", currency="INR", spent_on="2026-03-01")
        for i in range(1000)
    ]
    for start in (0, 500):
        answer = await client.import_rows(user, rows[start : start + 500])
        assert answer.created_count == 500
    extra = await client.create(user, amount="5.00", spent_on="2025-12-31")
    gone = await client.create(user, amount="6.00")
    await client.delete(user, gone.expense_id)

    batches = [
        message
        async for message in client.internal.StreamExpenses(
            ledger_pb2.StreamExpensesRequest(user_id=user.user_id), timeout=30, metadata=client.service
        )
    ]
    streamed = [expense for batch in batches for expense in batch.expenses]
    assert max(len(batch.expenses) for batch in batches) <= 500 and len(batches) >= 3
    assert len(streamed) == len({e.expense_id for e in streamed}) == 1001
    assert gone.expense_id not in {e.expense_id for e in streamed}
    first = streamed[0]
    assert (first.expense_id, first.amount_minor, first.user_id) == (extra.expense_id, 500, user.user_id)

    everyone = [
        expense
        async for message in client.internal.StreamExpenses(
            ledger_pb2.StreamExpensesRequest(), timeout=60, metadata=client.service
        )
        for expense in message.expenses
    ]
    assert {e.expense_id for e in streamed} <= {e.expense_id for e in everyone}

    categories = [
        category
        async for message in client.internal.StreamCategories(
            ledger_pb2.StreamCategoriesRequest(user_id=user.user_id), timeout=30, metadata=client.service
        )
        for category in message.categories
    ]
    assert {c.name for c in categories} == set(await client.categories(user))


async def test_a_new_user_gets_the_default_categories_once(client: LedgerClient) -> None:
    defaults = tomllib.loads((REPO_ROOT / "config" / "default_categories.toml").read_text())["categories"]
    user = await client.sign_up()
    answers = await asyncio.gather(
        *(
            client.ledger.ListCategories(ledger_pb2.ListCategoriesRequest(), metadata=user.metadata)
            for _ in range(10)
        )
    )
    names = sorted(category.name for category in answers[0].categories)
    assert names == sorted(item["name"] for item in defaults)
    assert all(sorted(c.name for c in answer.categories) == names for answer in answers)


async def test_request_id_format_is_checked(client: LedgerClient) -> None:
    user = await client.sign_up()
    for bad in ("x" * 101, "has space", "semi;colon"):
        assert "request_id" in await invalid_fields(client.create(user, request_id=bad))
