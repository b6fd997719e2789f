"""Categories: nesting without cycles and within the depth limit, unique names,
deletion refused while in use unless the expenses and children move."""

from __future__ import annotations

import asyncio
import uuid

import grpc

from expense.ledger.v1 import ledger_pb2
from tests.ledger.harness import LedgerClient, User, invalid_fields, rpc_error


async def _delete(client: LedgerClient, user: User, category_id: str, reassign_to: str = "") -> int:
    request = ledger_pb2.DeleteCategoryRequest(category_id=category_id, reassign_to=reassign_to)
    answer = await client.ledger.DeleteCategory(request, metadata=user.metadata, timeout=10)
    return answer.reassigned_expenses


async def _move(client: LedgerClient, user: User, category_id: str, parent_id: str) -> ledger_pb2.Category:
    request = ledger_pb2.UpdateCategoryRequest(
        category_id=category_id, category=ledger_pb2.Category(parent_id=parent_id), update_mask="parent_id"
    )
    return await client.ledger.UpdateCategory(request, metadata=user.metadata, timeout=10)


async def test_categories_nest_up_to_the_configured_depth(client: LedgerClient) -> None:
    user = await client.sign_up()
    food = (await client.categories(user))["Food & dining"]
    cafes = await client.create_category(user, "Cafes", food.category_id, color="#aabbcc", icon="coffee")
    assert (cafes.parent_id, cafes.color, cafes.icon) == (food.category_id, "#AABBCC", "coffee")
    espresso = await client.create_category(user, "Espresso bars", cafes.category_id)
    assert "parent_id" in await invalid_fields(client.create_category(user, "Too deep", espresso.category_id))

    # Moving a subtree under one of its own members would make a cycle.
    fields = await invalid_fields(_move(client, user, food.category_id, espresso.category_id))
    assert "category.parent_id" in fields
    # Moving a two-level subtree under a second-level category would be 4 deep.
    travel = (await client.categories(user))["Travel"]
    trains = await client.create_category(user, "Trains", travel.category_id)
    assert "category.parent_id" in await invalid_fields(
        _move(client, user, cafes.category_id, trains.category_id)
    )
    moved = await _move(client, user, cafes.category_id, travel.category_id)
    assert moved.parent_id == travel.category_id
    top = await _move(client, user, cafes.category_id, "")
    assert top.parent_id == ""


async def test_names_are_unique_per_user_ignoring_case(client: LedgerClient) -> None:
    user = await client.sign_up()
    error = await rpc_error(client.create_category(user, "  groceries "))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    pets = await client.create_category(user, "Pets")
    request = ledger_pb2.UpdateCategoryRequest(
        category_id=pets.category_id, category=ledger_pb2.Category(name="RENT"), update_mask="name"
    )
    error = await rpc_error(client.ledger.UpdateCategory(request, metadata=user.metadata))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    other = await client.sign_up()
    assert (await client.create_category(other, "Pets")).name == "Pets"


async def test_create_category_is_idempotent_with_a_request_id(client: LedgerClient) -> None:
    user = await client.sign_up()
    request_id = str(uuid.uuid4())
    first = await client.create_category(user, "Gifts", request_id=request_id)
    again = await client.create_category(user, "Gifts", request_id=request_id)
    assert again == first
    assert "request_id" in await invalid_fields(
        client.create_category(user, "Gadgets", request_id=request_id)
    )

    # Concurrent retries all get the first answer, not ALREADY_EXISTS for the name.
    request_id = str(uuid.uuid4())
    answers = await asyncio.gather(
        *(client.create_category(user, "Books", request_id=request_id) for _ in range(10))
    )
    assert len({answer.SerializeToString() for answer in answers}) == 1
    assert [name for name in await client.categories(user) if name == "Books"] == ["Books"]


async def test_delete_is_refused_while_in_use(client: LedgerClient) -> None:
    user = await client.sign_up()
    categories = await client.categories(user)
    health = categories["Health"]
    expense = await client.create(user, category_id=health.category_id)
    error = await rpc_error(_delete(client, user, health.category_id))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION

    parent = await client.create_category(user, "Hobbies")
    await client.create_category(user, "Chess", parent.category_id)
    error = await rpc_error(_delete(client, user, parent.category_id))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert (await client.get(user, expense.expense_id)).category_id == health.category_id

    # A deleted expense no longer holds its category.
    await client.delete(user, expense.expense_id)
    assert await _delete(client, user, health.category_id) == 0
    assert "Health" not in await client.categories(user)


async def test_reassignment_moves_expenses_and_children(client: LedgerClient) -> None:
    user = await client.sign_up()
    categories = await client.categories(user)
    shopping, other = categories["Shopping"], categories["Other"]
    clothes = await client.create_category(user, "Clothes", shopping.category_id)
    in_parent = await client.create(user, category_id=shopping.category_id)
    in_child = await client.create(user, category_id=clothes.category_id)

    fields = await invalid_fields(_delete(client, user, shopping.category_id, clothes.category_id))
    assert "reassign_to" in fields
    error = await rpc_error(_delete(client, user, shopping.category_id, str(uuid.uuid4())))
    assert error.code() == grpc.StatusCode.NOT_FOUND

    assert await _delete(client, user, shopping.category_id, other.category_id) == 1
    moved = await client.get(user, in_parent.expense_id)
    assert moved.category_id == other.category_id and moved.etag != in_parent.etag
    assert (await client.get(user, in_child.expense_id)).category_id == clothes.category_id
    after = await client.categories(user)
    assert "Shopping" not in after and after["Clothes"].parent_id == other.category_id
    history = await client.history(user, in_parent.expense_id)
    assert [entry.action for entry in history] == ["create", "update"]
    assert history[1].before.category_id == shopping.category_id
    # The parent's list now includes the moved child's expenses.
    listed = await client.list_all(user, category_id=other.category_id)
    assert {e.expense_id for e in listed} == {in_parent.expense_id, in_child.expense_id}
