"""Events through the outbox: a durable pull consumer of the test's own, on the
mesh's real JetStream stream, sees exactly the committed changes, each once;
also when NATS was down during the writes and came back afterwards."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Iterator

import grpc
import pytest
from sqlalchemy import func, select

from expense.events.v1 import events_pb2
from expense.ledger.v1 import ledger_pb2
from services.ledger import storage
from tests.infra import NatsServer, fresh_postgres_database, require
from tests.ledger.conftest import LEDGER_MESH, keep_log, ledger_database, mesh_nats_url
from tests.ledger.harness import (
    EventReader,
    LedgerClient,
    User,
    gather_outcomes,
    ledger_client,
    rpc_error,
    unpack,
)
from tests.mesh import Mesh


def _summary(events: list[events_pb2.EventEnvelope]) -> Counter[tuple[str, str, int]]:
    """(type, expense id, version after the change) of each event."""
    found: Counter[tuple[str, str, int]] = Counter()
    for envelope in events:
        message = unpack(envelope)
        if isinstance(message, events_pb2.ExpenseCreated):
            found[(envelope.type, message.expense.expense_id, message.expense.version)] += 1
        elif isinstance(message, events_pb2.ExpenseUpdated):
            found[(envelope.type, message.after.expense_id, message.after.version)] += 1
        elif isinstance(message, events_pb2.ExpenseDeleted):
            found[(envelope.type, message.before.expense_id, message.before.version + 1)] += 1
    return found


async def test_events_are_exactly_the_committed_changes(client: LedgerClient, ledger_mesh: Mesh) -> None:
    reader = EventReader(mesh_nats_url(ledger_mesh), ledger_mesh.event_prefix)
    await reader.open()
    try:
        user = await client.sign_up()
        kept = await client.create(user, amount="10.00", merchant="Kept", category_id="")
        changed = await client.update(
            user, kept.expense_id, "amount,merchant", kept.etag, amount="12.50", merchant="K"
        )
        gone = await client.create(user, amount="3.00")
        await client.delete(user, gone.expense_id, gone.etag)

        # Writes that did not commit publish nothing: 49 of 50 idempotent retries
        # (on PostgreSQL they insert, then roll back), 19 of 20 racing updates, failures.
        request_id = str(uuid.uuid4())
        retries = await gather_outcomes(
            [client.create(user, request_id=request_id, amount="7.00") for _ in range(50)]
        )
        once = retries[0]
        assert isinstance(once, ledger_pb2.Expense)
        racing = await gather_outcomes(
            [
                client.update(user, once.expense_id, "amount", once.etag, amount=f"{i + 8}.00")
                for i in range(20)
            ]
        )
        winner = next(outcome for outcome in racing if isinstance(outcome, ledger_pb2.Expense))
        await rpc_error(client.create(user, category_id=str(uuid.uuid4())))
        await rpc_error(client.update(user, kept.expense_id, "amount", kept.etag, amount="1.00"))
        await rpc_error(client.delete(user, str(uuid.uuid4())))

        expected = Counter(
            {
                ("expense.created", kept.expense_id, 1): 1,
                ("expense.updated", kept.expense_id, 2): 1,
                ("expense.created", gone.expense_id, 1): 1,
                ("expense.deleted", gone.expense_id, 2): 1,
                ("expense.created", once.expense_id, 1): 1,
                ("expense.updated", once.expense_id, 2): 1,
            }
        )
        events = await reader.read(user.user_id, lambda seen: len(seen) >= expected.total())
    finally:
        await reader.close()

    assert _summary(events) == expected
    assert len({envelope.event_id for envelope in events}) == len(events)
    assert {envelope.producer for envelope in events} == {"ledger"}
    update = next(
        unpack(e)
        for e in events
        if e.type == "expense.updated" and unpack(e).after.expense_id == kept.expense_id
    )
    assert (update.before.amount_minor, update.after.amount_minor) == (1000, 1250)
    assert (update.before.merchant, update.after.merchant, update.after.currency) == ("Kept", "K", "INR")
    assert update.after.spent_on == changed.spent_on and update.after.source == "manual"
    raced = next(
        unpack(e)
        for e in events
        if e.type == "expense.updated" and unpack(e).after.expense_id == once.expense_id
    )
    assert raced.after.amount_minor == int(winner.amount.replace(".", ""))


async def test_category_changes_are_published(client: LedgerClient, ledger_mesh: Mesh) -> None:
    reader = EventReader(mesh_nats_url(ledger_mesh), ledger_mesh.event_prefix, "category.>")
    await reader.open()
    try:
        user = await client.sign_up()
        categories = await client.categories(user)
        parent = await client.create_category(user, "Projects")
        child = await client.create_category(user, "Garden", parent.category_id)
        await client.create(user, category_id=parent.category_id)
        request = ledger_pb2.DeleteCategoryRequest(
            category_id=parent.category_id, reassign_to=categories["Other"].category_id
        )
        await client.ledger.DeleteCategory(request, metadata=user.metadata, timeout=10)
        expected = len(categories) + 4
        events = await reader.read(user.user_id, lambda seen: len(seen) >= expected)
    finally:
        await reader.close()
    changes = [unpack(envelope) for envelope in events]
    assert len(changes) == expected
    assert {c.name for c in changes[: len(categories)]} == set(categories)
    deleted = [c for c in changes if c.deleted]
    assert [(c.category_id, c.reassigned_to) for c in deleted] == [
        (parent.category_id, categories["Other"].category_id)
    ]
    moved = [c for c in changes if c.category_id == child.category_id]
    assert [c.parent_id for c in moved] == [parent.category_id, categories["Other"].category_id]


# -------------------------------------------------------------- NATS down


@pytest.fixture(scope="module")
def own_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path_factory.mktemp("nats-store"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def mesh_on_own_nats(own_nats: NatsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    require("PostgreSQL", "127.0.0.1", 5432)
    with fresh_postgres_database() as database_url:
        env = {"DATABASE_URL": database_url, "NATS_URL": own_nats.url}
        mesh = Mesh(tmp_path_factory.mktemp("ledger-own-nats"), LEDGER_MESH, env)
        try:
            mesh.start()
            yield mesh
        finally:
            mesh.stop()
            keep_log(mesh)


async def test_no_event_is_lost_while_nats_is_down(mesh_on_own_nats: Mesh, own_nats: NatsServer) -> None:
    async with ledger_client(mesh_on_own_nats) as client:
        user: User = await client.sign_up()
        before = await client.create(user, amount="1.00")
        own_nats.stop()
        try:
            # Every write still commits while the broker is away.
            created = [await client.create(user, amount=f"{i}.00", note=f"offline {i}") for i in range(2, 22)]
            updated = await client.update(
                user, created[0].expense_id, "amount", created[0].etag, amount="99.00"
            )
            await client.delete(user, created[1].expense_id, created[1].etag)
            with pytest.raises(grpc.aio.AioRpcError):
                await client.update(user, created[0].expense_id, "amount", created[0].etag, amount="98.00")
            # Their events wait in the outbox, unpublished, until NATS is back.
            assert await _unpublished(mesh_on_own_nats) >= len(created) + 2
        finally:
            own_nats.start()
        assert updated.amount == "99.00"

        expected = Counter({("expense.created", e.expense_id, 1): 1 for e in [before, *created]})
        expected[("expense.updated", created[0].expense_id, 2)] += 1
        expected[("expense.deleted", created[1].expense_id, 2)] += 1
        reader = EventReader(own_nats.url, mesh_on_own_nats.event_prefix)
        await _open_when_stream_is_back(reader)
        try:
            events = await reader.read(user.user_id, lambda seen: len(seen) >= expected.total())
        finally:
            await reader.close()
    assert _summary(events) == expected
    assert len({envelope.event_id for envelope in events}) == len(events)


async def _unpublished(mesh: Mesh) -> int:
    db = ledger_database(mesh)
    try:
        async with db.transaction() as session:
            query = (
                select(func.count())
                .select_from(storage.outbox)
                .where(storage.outbox.c.published_at.is_(None))
            )
            return int((await session.execute(query)).scalar_one())
    finally:
        await db.dispose()


async def _open_when_stream_is_back(reader: EventReader) -> None:
    for _ in range(100):
        try:
            await reader.open()
            return
        except Exception:
            await asyncio.sleep(0.2)
    await reader.open()
