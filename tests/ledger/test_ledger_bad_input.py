"""Every invalid field gets INVALID_ARGUMENT with a field violation naming it,
and changes nothing; never INTERNAL."""

from __future__ import annotations

import secrets
import uuid

import grpc
import pytest

from expense.ledger.v1 import ledger_pb2
from services.ledger.domain import Cursor, PageTokens
from services.ledger.inputs import ListInput, validate
from services.ledger.settings import LedgerSettings
from tests.ledger.harness import LedgerClient, invalid_fields, rpc_error

BAD_CREATE_FIELDS = [
    ("amount", {"amount": ""}),
    ("amount", {"amount": "abc"}),
    ("amount", {"amount": "0"}),
    ("amount", {"amount": "0.00"}),
    ("amount", {"amount": "-5.00"}),
    ("amount", {"amount": "1.234"}),
    ("amount", {"amount": "1.5", "currency": "JPY"}),
    ("amount", {"amount": "1.2345", "currency": "KWD"}),
    ("amount", {"amount": "10000000000.01"}),
    ("amount", {"amount": "1e5"}),
    ("amount", {"amount": "12,50"}),
    ("amount", {"amount": "NaN"}),
    # Digits other than 0-9 (Arabic-Indic, full-width, mixed) are not amounts.
    ("amount", {"amount": "١٢"}),
    ("amount", {"amount": "１２"}),
    ("amount", {"amount": "1٢.50"}),
    ("amount", {"amount": "12.５0"}),
    ("currency", {"currency": "XYZ"}),
    ("currency", {"currency": "RUPEES"}),
    ("spent_on", {"spent_on": "2026-13-01"}),
    ("spent_on", {"spent_on": "2026-02-30"}),
    ("spent_on", {"spent_on": "21/11/2026"}),
    ("spent_on", {"spent_on": "1899-12-31"}),
    ("spent_on", {"spent_on": "2999-01-01"}),
    ("merchant", {"merchant": "m" * 201}),
    ("merchant", {"merchant": "bad\x00byte"}),
    ("note", {"note": "n" * 1001}),
    ("note", {"note": "bell\x07"}),
    ("tags", {"tags": [f"t{i}" for i in range(11)]}),
    ("tags", {"tags": ["x" * 33]}),
    ("tags", {"tags": ["  "]}),
    ("tags", {"tags": ["a|b"]}),
    ("category_id", {"category_id": "c" * 37}),
    ("request_id", {"request_id": "r" * 101}),
]


@pytest.mark.parametrize(("field", "fields"), BAD_CREATE_FIELDS)
async def test_create_names_the_invalid_field(
    client: LedgerClient, field: str, fields: dict[str, object]
) -> None:
    user = await client.sign_up()
    violations = await invalid_fields(client.create(user, **fields))
    assert field in violations, violations
    assert violations[field]
    assert await client.list_all(user) == []


async def test_all_violations_come_together(client: LedgerClient) -> None:
    user = await client.sign_up()
    violations = await invalid_fields(
        client.create(user, amount="-1", spent_on="soon", merchant="\x01", tags=[""])
    )
    assert {"amount", "spent_on", "merchant", "tags"} <= set(violations)


BAD_LIST_FIELDS = [
    ("page_size", {"page_size": -1}),
    ("page_token", {"page_token": "garbage"}),
    ("page_token", {"page_token": "eyJub3QiOiAiYSB0b2tlbiJ9"}),
    ("from", {"from": "2026-02-30"}),
    ("to", {"to": "yesterday"}),
    ("to", {"from": "2026-03-01", "to": "2026-02-01"}),
    ("min_amount", {"min_amount": "abc"}),
    ("min_amount", {"min_amount": "-1"}),
    ("max_amount", {"max_amount": "1.00001"}),
    ("min_amount", {"min_amount": "١٢"}),
    ("max_amount", {"max_amount": "１２"}),
    ("min_amount", {"min_amount": "1.٥"}),
    ("max_amount", {"min_amount": "10", "max_amount": "5"}),
    ("order_by", {"order_by": "merchant"}),
    ("order_by", {"order_by": "amount sideways"}),
    ("q", {"q": "q" * 101}),
    ("tag", {"tag": "t" * 33}),
    ("category_id", {"category_id": "c" * 37}),
    ("currency", {"min_amount": "10"}),  # amounts compare within one currency
    ("currency", {"max_amount": "10"}),
    ("currency", {"currency": "XYZ"}),
]


@pytest.mark.parametrize(("field", "fields"), BAD_LIST_FIELDS)
async def test_list_names_the_invalid_field(
    client: LedgerClient, field: str, fields: dict[str, object]
) -> None:
    user = await client.sign_up()
    request = {key: value for key, value in fields.items() if key != "from"}
    call = client.ledger.ListExpenses(
        ledger_pb2.ListExpensesRequest(**request, **_from(fields)), metadata=user.metadata, timeout=10
    )
    violations = await invalid_fields(call)
    assert field in violations, violations


def _from(fields: dict[str, object]) -> dict[str, object]:
    return {"from": fields["from"]} if "from" in fields else {}


async def test_a_page_token_only_continues_its_own_query(client: LedgerClient) -> None:
    user = await client.sign_up()
    for day in range(1, 4):
        await client.create(user, spent_on=f"2026-01-0{day}")
    page = await client.list(user, page_size=1)
    assert page.next_page_token
    violations = await invalid_fields(client.list(user, page_size=1, page_token=page.next_page_token, q="x"))
    assert "page_token" in violations
    tampered = page.next_page_token[:-2] + ("AA" if not page.next_page_token.endswith("AA") else "BB")
    assert "page_token" in await invalid_fields(client.list(user, page_size=1, page_token=tampered))


def _page_query(**fields: str) -> bytes:
    """What the ledger's page tokens are bound to, for a ListExpenses with these fields."""
    data = dict.fromkeys(
        ("page_token", "from", "to", "category_id", "q", "min_amount", "max_amount", "currency"), ""
    )
    data |= {"page_size": 0, "tag": "", "order_by": ""} | fields
    return validate(ListInput, data, LedgerSettings()).page_query()


async def test_a_forged_page_token_is_an_invalid_argument(client: LedgerClient) -> None:
    """Signed with the ledger's key (or not): tampered, another key, another query, a
    position out of range: each INVALID_ARGUMENT on page_token, never INTERNAL."""
    user = await client.sign_up()
    for amount in ("1.00", "2.00", "3.00"):
        await client.create(user, amount=amount)
    first = await client.list(user, page_size=1, order_by="amount")
    second = await client.list(user, page_size=1, order_by="amount", page_token=first.next_page_token)
    assert [e.amount for e in (*first.expenses, *second.expenses)] == ["1.00", "2.00"]

    mesh_key = (client.mesh.data_dir / "keys" / "page-token.key").read_bytes()
    query = _page_query(order_by="amount")
    expense_id = first.expenses[0].expense_id
    body, signature = first.next_page_token.split(".")
    forged = [
        f"{body[:-1]}{'A' if body[-1] != 'A' else 'B'}.{signature}",
        PageTokens(secrets.token_bytes(32)).encode(Cursor("10000", expense_id), query),
        PageTokens(mesh_key).encode(Cursor("10000", expense_id), _page_query(order_by="amount", q="x")),
        PageTokens(mesh_key).encode(Cursor("9" * 30, expense_id), query),
        PageTokens(mesh_key).encode(Cursor(str(2**63), expense_id), query),
    ]
    for token in forged:
        call = client.list(user, page_size=1, order_by="amount", page_token=token)
        assert "page_token" in await invalid_fields(call), token
    genuine = PageTokens(mesh_key).encode(Cursor("10000", expense_id), query)
    again = await client.list(user, page_size=1, order_by="amount", page_token=genuine)
    assert [e.amount for e in again.expenses] == ["2.00"]


async def test_page_size_is_defaulted_and_capped(client: LedgerClient) -> None:
    user = await client.sign_up()
    rows = [
        ledger_pb2.ImportRow(request_id=f"p{i}", amount="1.00", currency="INR", spent_on="2026-01-01")
        for i in range(501)
    ]
    await client.import_rows(user, rows)
    assert len((await client.list(user)).expenses) == 50
    capped = await client.list(user, page_size=100_000)
    assert len(capped.expenses) == 500 and capped.next_page_token and capped.total_size == 501


BAD_UPDATES = [
    ("update_mask", "expense_id", {}),
    ("update_mask", "etag", {}),
    ("update_mask", "source", {}),
    ("update_mask", "bogus", {}),
    ("update_mask", "", {}),
    ("expense.amount", "amount", {"amount": "abc"}),
    ("expense.amount", "amount", {"amount": ""}),
    ("expense.amount", "amount", {"amount": "١٢"}),
    ("expense.amount", "amount", {"amount": "１２.００"}),
    ("expense.currency", "currency", {"currency": "XYZ"}),
    ("expense.spent_on", "spent_on", {"spent_on": ""}),
    ("expense.note", "note", {"note": "n" * 1001}),
    ("expense.tags", "tags", {"tags": ["x" * 33]}),
]


@pytest.mark.parametrize(("field", "mask", "fields"), BAD_UPDATES)
async def test_update_names_the_invalid_field(
    client: LedgerClient, field: str, mask: str, fields: dict[str, object]
) -> None:
    user = await client.sign_up()
    expense = await client.create(user, amount="10.00")
    violations = await invalid_fields(client.update(user, expense.expense_id, mask, expense.etag, **fields))
    assert field in violations, violations
    assert await client.get(user, expense.expense_id) == expense


async def test_required_ids_are_named(client: LedgerClient) -> None:
    user = await client.sign_up()
    assert "expense_id" in await invalid_fields(client.get(user, ""))
    assert "expense_id" in await invalid_fields(client.delete(user, " "))
    assert "expense_id" in await invalid_fields(client.history(user, ""))
    request = ledger_pb2.DeleteCategoryRequest(category_id="")
    assert "category_id" in await invalid_fields(
        client.ledger.DeleteCategory(request, metadata=user.metadata)
    )


BAD_CATEGORIES = [
    ("name", {"name": ""}),
    ("name", {"name": "n" * 61}),
    ("name", {"name": "tab\tname"}),
    ("color", {"name": "Pets", "color": "red"}),
    ("color", {"name": "Pets", "color": "#12345"}),
    ("icon", {"name": "Pets", "icon": "Not An Icon!"}),
    ("parent_id", {"name": "Pets", "parent_id": "p" * 37}),
    ("request_id", {"name": "Pets", "request_id": "bad id"}),
]


@pytest.mark.parametrize(("field", "fields"), BAD_CATEGORIES)
async def test_category_create_names_the_invalid_field(
    client: LedgerClient, field: str, fields: dict[str, object]
) -> None:
    user = await client.sign_up()
    request = ledger_pb2.CreateCategoryRequest(**fields)  # type: ignore[arg-type]
    violations = await invalid_fields(client.ledger.CreateCategory(request, metadata=user.metadata))
    assert field in violations, violations


async def test_import_limits_and_shapes(client: LedgerClient) -> None:
    user = await client.sign_up()
    too_many = [ledger_pb2.ImportRow(request_id=f"r{i}", amount="1.00") for i in range(1001)]
    assert "rows" in await invalid_fields(client.import_rows(user, too_many))
    assert "rows" in await invalid_fields(client.import_rows(user, []))
    both = ledger_pb2.ImportExpensesRequest(rows=too_many[:1], csv="request_id,amount\nx,1.00\n")
    assert "csv" in await invalid_fields(client.ledger.ImportExpenses(both, metadata=user.metadata))
    for csv in (
        "amount,when\n1.00,today\n",  # unknown column
        "amount\n1.00\n",  # no request_id column
        "request_id,amount\nr1,1.00,extra\n",  # more values than columns
        "request_id,amount\n" + "".join(f"r{i},1.00\n" for i in range(1001)),
    ):
        request = ledger_pb2.ImportExpensesRequest(csv=csv)
        assert "csv" in await invalid_fields(client.ledger.ImportExpenses(request, metadata=user.metadata))
    assert await client.list_all(user) == []


async def test_oversized_messages_are_refused_not_crashed(client: LedgerClient) -> None:
    user = await client.sign_up()
    error = await rpc_error(client.create(user, note="n" * (2 << 20)))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_stream_user_id_is_checked(client: LedgerClient) -> None:
    stream = client.internal.StreamExpenses(
        ledger_pb2.StreamExpensesRequest(user_id="u" * 37), timeout=10, metadata=client.service
    )
    error = await rpc_error(_drain(stream))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    empty = [
        m
        async for m in client.internal.StreamExpenses(
            ledger_pb2.StreamExpensesRequest(user_id=str(uuid.uuid4())), metadata=client.service
        )
    ]
    assert empty == []


async def _drain(stream: object) -> None:
    async for _ in stream:  # type: ignore[attr-defined]
        pass
