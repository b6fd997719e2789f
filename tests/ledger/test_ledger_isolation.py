"""Isolation: user B calling every ledger RPC with user A's ids gets exactly
what a random id gets (NOT_FOUND), and A's data stays as it was."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import grpc

from expense.ledger.v1 import ledger_pb2
from tests.ledger.harness import LedgerClient, User, import_row, rpc_error


async def _snapshot(client: LedgerClient, user: User, expense_id: str) -> tuple[object, ...]:
    return (
        await client.get(user, expense_id),
        [e.SerializeToString() for e in await client.history(user, expense_id)],
        [e.SerializeToString() for e in await client.list_all(user)],
        {name: c.SerializeToString() for name, c in (await client.categories(user)).items()},
    )


def _calls(
    client: LedgerClient, bob: User, expense_id: str, category_id: str, etag: str
) -> list[Callable[[], Awaitable[object]]]:
    def ledger(method: str, request: object) -> Callable[[], Awaitable[object]]:
        return lambda: getattr(client.ledger, method)(request, metadata=bob.metadata, timeout=10)

    return [
        lambda: client.get(bob, expense_id),
        lambda: client.update(bob, expense_id, "amount", etag, amount="1.00"),
        lambda: client.update(bob, expense_id, "", amount="1.00"),
        lambda: client.delete(bob, expense_id, etag),
        lambda: client.delete(bob, expense_id),
        lambda: client.history(bob, expense_id),
        lambda: client.create(bob, category_id=category_id),
        lambda: client.list(bob, category_id=category_id),
        lambda: client.create_category(bob, "Mine", category_id),
        ledger(
            "UpdateCategory",
            ledger_pb2.UpdateCategoryRequest(
                category_id=category_id, category=ledger_pb2.Category(name="Stolen"), update_mask="name"
            ),
        ),
        ledger("DeleteCategory", ledger_pb2.DeleteCategoryRequest(category_id=category_id)),
    ]


async def test_another_users_ids_answer_like_random_ids(client: LedgerClient) -> None:
    alice, bob = await client.sign_up(), await client.sign_up()
    food = (await client.categories(alice))["Food & dining"]
    expense = await client.create(alice, amount="77.00", category_id=food.category_id, tags=["secret"])
    before = await _snapshot(client, alice, expense.expense_id)

    foreign = _calls(client, bob, expense.expense_id, food.category_id, expense.etag)
    random = _calls(client, bob, str(uuid.uuid4()), str(uuid.uuid4()), expense.etag)
    for foreign_call, random_call in zip(foreign, random, strict=True):
        foreign_error = await rpc_error(foreign_call())
        random_error = await rpc_error(random_call())
        assert foreign_error.code() == grpc.StatusCode.NOT_FOUND
        assert (foreign_error.code(), foreign_error.details()) == (
            random_error.code(),
            random_error.details(),
        )

    bob_category = (await client.categories(bob))["Other"]
    request = ledger_pb2.DeleteCategoryRequest(
        category_id=bob_category.category_id, reassign_to=food.category_id
    )
    error = await rpc_error(client.ledger.DeleteCategory(request, metadata=bob.metadata))
    assert error.code() == grpc.StatusCode.NOT_FOUND

    answer = await client.import_rows(bob, [import_row(category_id=food.category_id)])
    assert answer.results[0].status == "invalid" and answer.results[0].errors[0].field == "category_id"

    assert await client.list_all(bob) == []
    assert await client.list_all(bob, tag="secret") == []
    assert await _snapshot(client, alice, expense.expense_id) == before
