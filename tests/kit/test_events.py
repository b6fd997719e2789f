"""Outbox -> JetStream -> inbox, against real NATS and real databases."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from nats.js.api import ConsumerConfig
from sqlalchemy import Column, Integer, MetaData, String, Table, func, select

from expense.events.v1 import events_pb2
from services.kit.db.engine import Database
from services.kit.domain.timestamps import utcnow
from services.kit.events.bus import EventBus, dead_letter_subject, make_envelope, subject_for
from services.kit.events.consumer import EventConsumer, per_event
from services.kit.events.outbox import Outbox, OutboxRelay
from services.kit.events.registry import event_type_of
from services.kit.events.subscription import Event, Subscription
from services.kit.events.tables import add_event_tables
from services.kit.tasks import cancel_and_wait
from tests.infra import NatsServer, delete_stream, unique_prefix

metadata = MetaData()
outbox_table, inbox_table = add_event_tables(metadata)
registrations = Table(
    "registrations", metadata, Column("user_id", String(36), primary_key=True), Column("seen", Integer)
)
SIGNUPS = Subscription("kit", (events_pb2.UserRegistered,))


class World:
    def __init__(self, database_url: str, nats_url: str, subscription: Subscription = SIGNUPS) -> None:
        self.db = Database(database_url, schema="kit")
        self.nats_url = nats_url
        self.bus = EventBus(nats_url, unique_prefix(), "kit-test")
        self.outbox = Outbox(outbox_table, self.bus.prefix, "auth")
        self.relay = OutboxRelay(self.db, self.outbox, self.bus, 50, 0.2)
        self.consumer = EventConsumer(self.bus, self.db, inbox_table, subscription, per_event(self.apply))
        self.tasks: list[asyncio.Task[None]] = []

    async def apply(self, session, event: Event[Any]) -> None:  # type: ignore[no-untyped-def]
        # Counts the events of each user, of whichever type the consumer takes.
        user_id = event.user_id
        row = (await session.execute(select(registrations).where(registrations.c.user_id == user_id))).first()
        if row is None:
            await session.execute(registrations.insert().values(user_id=user_id, seen=1))
        else:
            await session.execute(
                registrations.update().where(registrations.c.user_id == user_id).values(seen=row.seen + 1)
            )

    async def setup(self) -> None:
        async with self.db.engine.begin() as connection:
            if self.db.schema:
                await connection.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{self.db.schema}"')
            await connection.run_sync(metadata.create_all)
        self.bus.start()
        self.tasks = [asyncio.create_task(self.relay.run()), asyncio.create_task(self.consumer.run())]

    async def register(self, user_id: str, fail: bool = False) -> None:
        async with self.db.transaction() as session:
            await self.outbox.add(session, user_id, events_pb2.UserRegistered(user_id=user_id))
            if fail:
                raise RuntimeError("the change rolls back")

    async def seen(self) -> dict[str, int]:
        async with self.db.transaction() as session:
            rows = (await session.execute(select(registrations))).all()
        return {row.user_id: row.seen for row in rows}

    async def wait_for(self, expected: dict[str, int], timeout: float = 15) -> dict[str, int]:
        deadline = asyncio.get_running_loop().time() + timeout
        while (seen := await self.seen()) != expected and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        return seen

    async def close(self) -> None:
        await cancel_and_wait(self.tasks)
        await self.bus.close()
        await delete_stream(self.nats_url, self.bus.stream)
        await self.db.dispose()


@pytest.fixture
async def world(database_url: str, nats_url: str) -> AsyncIterator[World]:
    world = World(database_url, nats_url)
    await world.setup()
    yield world
    await world.close()


async def test_committed_events_are_applied_once(world: World) -> None:
    for index in range(20):
        await world.register(f"user-{index}")
    assert await world.wait_for({f"user-{i}": 1 for i in range(20)}) == {f"user-{i}": 1 for i in range(20)}
    assert await world.relay.pending() == 0


async def test_rolled_back_change_publishes_nothing(world: World) -> None:
    with pytest.raises(RuntimeError):
        await world.register("ghost", fail=True)
    await world.register("real")
    assert await world.wait_for({"real": 1}) == {"real": 1}
    await asyncio.sleep(0.5)
    assert "ghost" not in await world.seen()


async def test_replayed_events_are_not_applied_twice(world: World) -> None:
    await world.register("once")
    assert await world.wait_for({"once": 1}) == {"once": 1}
    # A replay republishes with the same Nats-Msg-Id; push a copy past JetStream's
    # dedupe too (as after the duplicate window), so only the inbox can stop it.
    async with world.db.transaction() as session:
        body = (await session.execute(select(outbox_table.c.body))).scalar_one()
    await world.bus.publish(f"{world.bus.prefix}.events.user.registered", body, "another-msg-id")
    assert await world.relay.replay_from(0) == 1
    await asyncio.sleep(1.0)
    info = await world.bus.js.consumer_info(world.bus.stream, world.consumer.durable)
    assert info.num_pending == 0 and info.num_ack_pending == 0
    assert await world.seen() == {"once": 1}


async def test_consumer_config_is_durable_and_explicit(world: World) -> None:
    await world.register("probe")
    await world.wait_for({"probe": 1})
    info = await world.bus.js.consumer_info(world.bus.stream, world.consumer.durable)
    config: ConsumerConfig = info.config
    assert config.durable_name == world.consumer.durable
    assert config.ack_policy == "explicit"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_writes_while_nats_is_down_are_delivered_after_restart(
    database_url: str, tmp_path: Path
) -> None:
    server = NatsServer(tmp_path / "nats")
    server.start()
    world = World(database_url, server.url)
    await world.setup()
    try:
        await world.register("before")
        assert await world.wait_for({"before": 1}) == {"before": 1}
        server.stop()
        for index in range(10):
            await world.register(f"during-{index}")
        assert await world.relay.pending() >= 1
        server.start()
        expected = {"before": 1} | {f"during-{i}": 1 for i in range(10)}
        assert await world.wait_for(expected, timeout=30) == expected
    finally:
        await world.close()
        server.stop()


async def test_a_commit_while_a_batch_is_published_wakes_the_relay(database_url: str, nats_url: str) -> None:
    # A long poll interval: only the commit's hand-over can get the second event out in time.
    world = World(database_url, nats_url)
    world.relay.poll_interval = 60.0
    publish_handed = world.relay.publish_handed
    injected = False

    async def publish_with_a_commit_meanwhile() -> int:
        nonlocal injected
        published = await publish_handed()
        if published and not injected:
            injected = True
            await world.register("meanwhile")
        return published

    world.relay.publish_handed = publish_with_a_commit_meanwhile  # type: ignore[method-assign]
    await world.setup()
    try:
        await world.register("first")
        expected = {"first": 1, "meanwhile": 1}
        assert await world.wait_for(expected, timeout=15) == expected
    finally:
        await world.close()


async def test_rows_nobody_handed_over_are_published_once_stale(world: World) -> None:
    # As if written by a process that died before its relay published them.
    world.relay.stale_after = timedelta(seconds=0.3)
    envelope = make_envelope("user.registered", "orphan", events_pb2.UserRegistered(user_id="orphan"), "auth")
    async with world.db.transaction() as session:
        await session.execute(
            outbox_table.insert().values(
                event_id=envelope.event_id,
                subject=f"{world.bus.prefix}.events.user.registered",
                body=envelope.SerializeToString(),
                created_at=utcnow(),
            )
        )
    await world.register("handed")
    expected = {"orphan": 1, "handed": 1}
    assert await world.wait_for(expected) == expected
    assert await world.relay.pending() == 0


async def test_a_lingering_consumer_applies_events_arriving_soon_after_in_one_batch(world: World) -> None:
    world.consumer.linger = 0.5
    sizes: list[int] = []
    handle_batch = world.consumer.handle_batch

    async def recording(messages):  # type: ignore[no-untyped-def]
        sizes.append(len(messages))
        await handle_batch(messages)

    world.consumer.handle_batch = recording  # type: ignore[method-assign]
    await world.register("first")
    await asyncio.sleep(0.05)
    for user_id in ("second", "third", "fourth"):
        await world.register(user_id)
    expected = {"first": 1, "second": 1, "third": 1, "fourth": 1}
    assert await world.wait_for(expected) == expected
    assert [size for size in sizes if size] == [4]


async def test_published_rows_are_marked_in_one_update_per_interval(world: World) -> None:
    world.relay.mark_interval = 30.0
    await asyncio.sleep(0.7)  # the relay's next mark is now 30 s away
    users = {f"marked-{index}": 1 for index in range(5)}
    for user_id in users:
        await world.register(user_id)
    assert await world.wait_for(users) == users  # published and consumed

    async def unmarked() -> int:
        async with world.db.transaction() as session:
            query = select(func.count()).where(outbox_table.c.published_at.is_(None))
            return int((await session.execute(query)).scalar_one())

    assert await unmarked() == 5
    assert await world.relay.pending() == 0  # counts what is not published: marks first
    assert await unmarked() == 0


async def test_rows_must_be_marked_before_the_poll_deems_them_stale(database_url: str, nats_url: str) -> None:
    # A world never started: a bus connecting in the background while this instant test
    # ends could create its stream after the cleanup deleted it (an empty stream left behind).
    world = World(database_url, nats_url)
    try:
        with pytest.raises(ValueError, match="stale"):
            OutboxRelay(
                world.db,
                world.outbox,
                world.bus,
                50,
                0.2,
                stale_after=timedelta(seconds=1),
                mark_interval=timedelta(seconds=1),
            )
    finally:
        await world.db.dispose()


async def publish_envelope(bus: EventBus, envelope: events_pb2.EventEnvelope) -> None:
    """Straight to the stream, past any outbox, under the subject of the envelope's type."""
    await bus.wait_ready()
    await bus.publish(subject_for(bus.prefix, envelope.type), envelope.SerializeToString(), envelope.event_id)


async def dead_letters(bus: EventBus, consumer: str, count: int) -> list[tuple[str, str]]:
    """(event id, reason) of the first `count` messages of the consumer's dead-letter subject."""
    subscription = await bus.js.pull_subscribe(dead_letter_subject(bus.prefix, consumer), stream=bus.stream)
    try:
        messages = await subscription.fetch(count, timeout=5)
    finally:
        await subscription.unsubscribe()
    letters = []
    for message in messages:
        envelope = events_pb2.EventEnvelope.FromString(message.data)
        letters.append((envelope.event_id, (message.headers or {})["Dead-Letter-Reason"]))
    return letters


async def test_unusable_events_are_dead_letters_and_the_consumer_goes_on(world: World) -> None:
    await world.register("first")
    good = make_envelope("user.registered", "second", events_pb2.UserRegistered(user_id="second"), "auth")
    garbage = make_envelope("user.registered", "garbage", events_pb2.UserRegistered(), "auth")
    garbage.payload.value = b"\x0a\x64ab"  # field 1 says 100 bytes follow; two do
    wrong_type = make_envelope(
        "user.registered", "wrong", events_pb2.CategoryChanged(category_id="c"), "auth"
    )
    # Only auth publishes signups: an envelope naming another producer is a forgery.
    forged = make_envelope("user.registered", "forged", events_pb2.UserRegistered(user_id="forged"), "ledger")
    for envelope in (garbage, good, wrong_type, forged):
        await publish_envelope(world.bus, envelope)
    await world.register("third")
    expected = {"first": 1, "second": 1, "third": 1}
    assert await world.wait_for(expected) == expected
    assert await dead_letters(world.bus, "kit", 3) == [
        (garbage.event_id, "the user.registered payload does not parse"),
        (
            wrong_type.event_id,
            "user.registered carries 'type.googleapis.com/expense.events.v1.CategoryChanged',"
            " not expense.events.v1.UserRegistered",
        ),
        (forged.event_id, "user.registered is auth's, not 'ledger''s"),
    ]
    await asyncio.sleep(0.5)
    info = await world.bus.js.consumer_info(world.bus.stream, world.consumer.durable)
    assert (info.num_pending, info.num_ack_pending, info.num_redelivered) == (0, 0, 0)
    assert world.consumer.dead_letters == 3
    await world.register("after")  # still consuming
    assert await world.wait_for(expected | {"after": 1}) == expected | {"after": 1}
    assert await world.seen() == expected | {"after": 1}


async def test_a_durable_consumer_takes_its_new_filter(database_url: str, nats_url: str) -> None:
    world = World(database_url, nats_url)
    # As deployed before: the same durable, filtering a whole family.
    before = EventBus(nats_url, world.bus.prefix, "kit-test-before")
    before.start()
    await before.wait_ready()
    old = ConsumerConfig(
        durable_name=world.consumer.durable,
        ack_policy="explicit",
        filter_subject=subject_for(world.bus.prefix, "user.>"),
    )
    await before.js.add_consumer(before.stream, old)
    await before.close()
    await world.setup()
    try:
        await world.register("kept")
        assert await world.wait_for({"kept": 1}) == {"kept": 1}
        info = await world.bus.js.consumer_info(world.bus.stream, world.consumer.durable)
        assert info.config.filter_subject == subject_for(world.bus.prefix, "user.registered")
    finally:
        await world.close()


async def test_a_consumer_of_several_types_gets_only_those(database_url: str, tmp_path: Path) -> None:
    # filter_subjects needs NATS 2.10+: the server this project ships, not always the one on 4222.
    server = NatsServer(tmp_path / "nats")
    server.start()
    mixed = Subscription("mixed", (events_pb2.UserRegistered, events_pb2.CategoryChanged))
    world = World(database_url, server.url, mixed)
    await world.setup()
    try:
        for user_id, payload in [
            ("signed-up", events_pb2.UserRegistered(user_id="signed-up")),
            ("spent", events_pb2.ExpenseCreated()),
            ("sorted", events_pb2.CategoryChanged(category_id="c")),
        ]:
            producer = event_type_of(type(payload)).producer
            envelope = make_envelope(event_type_of(type(payload)).name, user_id, payload, producer)
            await publish_envelope(world.bus, envelope)
        expected = {"signed-up": 1, "sorted": 1}
        assert await world.wait_for(expected) == expected
        info = await world.bus.js.consumer_info(world.bus.stream, world.consumer.durable)
        assert info.config.filter_subjects == world.consumer.filter_subjects
        assert world.consumer.dead_letters == 0
    finally:
        await world.close()
        server.stop()
