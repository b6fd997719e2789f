"""EventConsumer with a batch handler, on both databases, fed exact batches:
each fresh event reaches the handler once, in order, in one call per batch,
with its payload parsed; redeliveries inside and across batches are dropped by
the inbox; a failing event falls back to one transaction per event so only it
is redelivered; a message no handler can take is dead-lettered and terminated
while the rest of its batch applies."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import pytest
from google.protobuf.any_pb2 import Any as AnyMessage
from sqlalchemy import Column, MetaData, String, Table, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from expense.events.v1 import events_pb2
from services.kit.db.engine import Database
from services.kit.events.bus import EventBus, dead_letter_subject, make_envelope
from services.kit.events.consumer import MAX_DELIVER, EventConsumer, inbox_table, per_event
from services.kit.events.subscription import Event, Subscription
from tests.infra import NATS_URL, unique_prefix
from tests.kit.conftest import database_with
from tests.kit.fake_messages import FakeMessage, as_messages, batch_of

metadata = MetaData()
inbox = inbox_table(metadata)
applied = Table("applied", metadata, Column("event_id", String(36), primary_key=True))
SIGNUPS = Subscription("kit", (events_pb2.UserRegistered,))


class Recorder:
    """A batch handler writing one row per event; raises while given a poisoned event."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.poisoned: set[str] = set()

    async def __call__(self, session: AsyncSession, events: Sequence[Event[Any]]) -> None:
        assert all(event.payload.user_id == event.user_id for event in events)
        ids = [event.event_id for event in events]
        self.calls.append(ids)
        await session.execute(applied.insert(), [{"event_id": event_id} for event_id in ids])
        if self.poisoned & set(ids):
            raise RuntimeError("poisoned")


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    async with database_with(database_url, metadata, "kit") as database:
        yield database


class RecordingBus(EventBus):
    """Never started: handle_batch needs no server. Keeps what it is asked to publish."""

    def __init__(self) -> None:
        super().__init__(NATS_URL, unique_prefix(), "kit-test")
        self.published: list[tuple[str, bytes, dict[str, str]]] = []

    async def publish(
        self, subject: str, data: bytes, msg_id: str, headers: Mapping[str, str] | None = None
    ) -> None:
        self.published.append((subject, data, dict(headers or {})))

    def dead_letters(self) -> list[tuple[bytes, str]]:
        """(data, reason) of what the consumer named "kit" dead-lettered."""
        subject = dead_letter_subject(self.prefix, "kit")
        return [
            (data, headers["Dead-Letter-Reason"]) for to, data, headers in self.published if to == subject
        ]


def consumer_for(db: Database, recorder: Recorder) -> EventConsumer:
    return EventConsumer(RecordingBus(), db, inbox, SIGNUPS, recorder)


def dead_letters(consumer: EventConsumer) -> list[tuple[bytes, str]]:
    assert isinstance(consumer.bus, RecordingBus)
    return consumer.bus.dead_letters()


def event(name: str) -> events_pb2.EventEnvelope:
    return make_envelope("user.registered", name, events_pb2.UserRegistered(user_id=name), "auth")


async def applied_ids(db: Database) -> set[str]:
    async with db.transaction() as session:
        return set((await session.execute(select(applied.c.event_id))).scalars())


async def inbox_ids(db: Database) -> set[str]:
    async with db.transaction() as session:
        return set((await session.execute(select(inbox.c.event_id))).scalars())


async def test_a_batch_reaches_the_handler_once_with_its_fresh_events(db: Database) -> None:
    recorder = Recorder()
    consumer = consumer_for(db, recorder)
    a, b, c, d = (event(name) for name in "abcd")
    first = batch_of(a, b, a, c)  # a redelivered inside the batch
    await consumer.handle_batch(as_messages(first))
    assert recorder.calls == [[a.event_id, b.event_id, c.event_id]]
    assert [m.outcome for m in first] == ["ack"] * 4

    second = batch_of(b, d, d, c)  # b and c redelivered across batches
    await consumer.handle_batch(as_messages(second))
    assert recorder.calls[1:] == [[d.event_id]]
    assert [m.outcome for m in second] == ["ack"] * 4
    assert await applied_ids(db) == await inbox_ids(db) == {e.event_id for e in (a, b, c, d)}
    assert consumer.applied == 8


async def test_a_batch_of_nothing_new_does_not_call_the_handler(db: Database) -> None:
    recorder = Recorder()
    consumer = consumer_for(db, recorder)
    a, b = event("a"), event("b")
    await consumer.handle_batch(as_messages(batch_of(a, b)))
    again = batch_of(b, a)
    await consumer.handle_batch(as_messages(again))
    assert recorder.calls == [[a.event_id, b.event_id]]
    assert [m.outcome for m in again] == ["ack", "ack"]


async def test_a_failing_event_is_retried_alone_and_the_rest_apply(db: Database) -> None:
    recorder = Recorder()
    consumer = consumer_for(db, recorder)
    a, poison, c = event("a"), event("poison"), event("c")
    recorder.poisoned = {poison.event_id}
    messages = batch_of(a, poison, c)
    await consumer.handle_batch(as_messages(messages))
    ids = [a.event_id, poison.event_id, c.event_id]
    # The batch once, then each event in a transaction of its own.
    assert recorder.calls == [ids, [a.event_id], [poison.event_id], [c.event_id]]
    assert [m.outcome for m in messages] == ["ack", "nak", "ack"]
    assert messages[1].nak_delay == 1.0
    # Neither its effect nor its inbox row committed: the redelivery applies it.
    assert await applied_ids(db) == await inbox_ids(db) == {a.event_id, c.event_id}

    recorder.poisoned = set()
    redelivered = FakeMessage.of(poison, num_delivered=2)
    await consumer.handle_batch(as_messages([redelivered]))
    assert redelivered.outcome == "ack"
    assert await applied_ids(db) == set(ids)


async def test_undecodable_events_are_terminated_and_the_others_batched(db: Database) -> None:
    recorder = Recorder()
    consumer = consumer_for(db, recorder)
    a, b = event("a"), event("b")
    garbage = FakeMessage(b"\xff\xff not an envelope")
    messages = [FakeMessage.of(a), garbage, FakeMessage.of(b)]
    await consumer.handle_batch(as_messages(messages))
    assert [m.outcome for m in messages] == ["ack", "term", "ack"]
    assert recorder.calls == [[a.event_id, b.event_id]]
    assert dead_letters(consumer) == [(garbage.data, "the envelope does not parse")]


def envelope_carrying(type_name: str, payload_type: str, payload_bytes: bytes) -> events_pb2.EventEnvelope:
    envelope = event("bad")
    envelope.type = type_name
    envelope.payload.CopyFrom(AnyMessage(type_url=f"type.googleapis.com/{payload_type}", value=payload_bytes))
    return envelope


async def test_events_no_handler_can_take_are_dead_letters_and_the_others_batched(db: Database) -> None:
    recorder = Recorder()
    consumer = consumer_for(db, recorder)
    a, b, c = event("a"), event("b"), event("c")
    signup = "expense.events.v1.UserRegistered"
    # Field 1 says 100 bytes follow; two do.
    truncated = envelope_carrying("user.registered", signup, b"\x0a\x64ab")
    wrong_payload = envelope_carrying("user.registered", "expense.events.v1.ExpenseCreated", b"")
    unknown = envelope_carrying("user.exploded", signup, b"")
    not_subscribed = make_envelope("expense.created", "x", events_pb2.ExpenseCreated(), "ledger")
    bad = [truncated, wrong_payload, unknown, not_subscribed]
    messages = batch_of(a, *bad[:2], b, *bad[2:], c)
    await consumer.handle_batch(as_messages(messages))
    assert [m.outcome for m in messages] == ["ack", "term", "term", "ack", "term", "term", "ack"]
    assert recorder.calls == [[a.event_id, b.event_id, c.event_id]]
    assert dead_letters(consumer) == [
        (truncated.SerializeToString(), "the user.registered payload does not parse"),
        (
            wrong_payload.SerializeToString(),
            "user.registered carries 'type.googleapis.com/expense.events.v1.ExpenseCreated',"
            " not expense.events.v1.UserRegistered",
        ),
        (unknown.SerializeToString(), "event type 'user.exploded' is unknown"),
        (not_subscribed.SerializeToString(), "event type 'expense.created' is not subscribed to"),
    ]
    assert consumer.applied == 3 and consumer.dead_letters == 4
    assert await applied_ids(db) == await inbox_ids(db) == {a.event_id, b.event_id, c.event_id}


async def test_an_event_failing_its_last_delivery_is_a_dead_letter(db: Database) -> None:
    recorder = Recorder()
    consumer = consumer_for(db, recorder)
    poison, other = event("poison"), event("other")
    recorder.poisoned = {poison.event_id}
    last = FakeMessage.of(poison, num_delivered=MAX_DELIVER)
    messages = [last, FakeMessage.of(other)]
    await consumer.handle_batch(as_messages(messages))
    assert [m.outcome for m in messages] == ["term", "ack"]
    [(data, reason)] = dead_letters(consumer)
    assert data == poison.SerializeToString()
    assert reason == f"the handler failed {MAX_DELIVER} times: RuntimeError('poisoned')"
    assert await inbox_ids(db) == {other.event_id}


async def test_per_event_hands_a_handler_the_events_in_order(db: Database) -> None:
    seen: list[str] = []

    async def one(session: AsyncSession, signup: Event[events_pb2.UserRegistered]) -> None:
        seen.append(signup.event_id)

    a, b, c = event("a"), event("b"), event("c")
    bus = EventBus(NATS_URL, unique_prefix(), "kit-test")
    consumer = EventConsumer(
        bus, db, inbox, Subscription("kit-one", (events_pb2.UserRegistered,)), per_event(one)
    )
    await consumer.handle_batch(as_messages(batch_of(a, b, c, b)))
    assert seen == [a.event_id, b.event_id, c.event_id]
    async with db.transaction() as session:
        rows = await session.execute(select(func.count()).where(inbox.c.consumer == "kit-one"))
        assert rows.scalar_one() == 3
