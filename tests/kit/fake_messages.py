"""JetStream messages without a server, for handing a consumer exact batches:
which events come together, repeated or undecodable, is then up to the test."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import cast

from nats.aio.msg import Msg

from expense.events.v1 import events_pb2

_stream_sequence = itertools.count(1)


@dataclass
class FakeMessage:
    data: bytes
    subject: str = "test.events"
    num_delivered: int = 1
    # "ack", "nak" or "term" once the consumer has settled the message.
    outcome: str = ""
    nak_delay: float | None = None
    stream_sequence: int = field(default_factory=lambda: next(_stream_sequence))
    # When the message reached the stream (the consumer's lag metric reads it).
    timestamp: datetime = field(default_factory=lambda: datetime.now(UTC))

    @classmethod
    def of(cls, envelope: events_pb2.EventEnvelope, num_delivered: int = 1) -> FakeMessage:
        return cls(envelope.SerializeToString(), f"test.events.{envelope.type}", num_delivered)

    @property
    def metadata(self) -> SimpleNamespace:
        return SimpleNamespace(
            num_delivered=self.num_delivered,
            sequence=SimpleNamespace(stream=self.stream_sequence),
            timestamp=self.timestamp,
        )

    async def ack(self) -> None:
        self.outcome = "ack"

    async def nak(self, delay: float | None = None) -> None:
        self.outcome, self.nak_delay = "nak", delay

    async def term(self) -> None:
        self.outcome = "term"


def batch_of(*envelopes: events_pb2.EventEnvelope) -> list[FakeMessage]:
    return [FakeMessage.of(envelope) for envelope in envelopes]


def as_messages(messages: Sequence[FakeMessage]) -> list[Msg]:
    """What EventConsumer.handle_batch takes (the fakes have the parts it uses)."""
    return cast(list[Msg], list(messages))
