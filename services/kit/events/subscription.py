"""What a consumer subscribes to: payload types of the registry, never event names.
The kit derives the consumer's NATS filter from them and hands its handler each
event with the payload parsed, once, into its message."""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import takewhile
from typing import Any, Generic, NamedTuple, TypeVar

from google.protobuf.message import DecodeError, Message

from expense.events.v1 import events_pb2
from services.kit.events.bus import subject_for
from services.kit.events.registry import EventType, event_type_of, event_types

P = TypeVar("P", bound=Message)


class Event(NamedTuple, Generic[P]):
    """An envelope's fields with its payload parsed into the message its type declares
    (a tuple: as cheap to build as a consumer's hot path wants)."""

    event_id: str
    type: str
    user_id: str
    producer: str
    payload: P


class UnusableEvent(Exception):
    """A message no handler can take (it goes to the dead letters); says why."""

    def __init__(self, reason: str, event_id: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.event_id = event_id


@dataclass(frozen=True)
class Subscription:
    """A durable consumer (`consumer` is its name, kept for good: a new name starts
    over from the stream's first event) and the payload types it takes."""

    consumer: str
    payloads: tuple[type[Message], ...]
    types: dict[str, EventType] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.payloads:
            raise ValueError(f"{self.consumer} subscribes to nothing")
        # event_type_of refuses a message not declared an event type.
        types = {event_type_of(payload).name: event_type_of(payload) for payload in self.payloads}
        object.__setattr__(self, "types", types)

    def filter_subjects(self, prefix: str) -> list[str]:
        """One wildcard when these are all the types of a family (any server takes one
        subject, and deployed consumers keep their filter), else one subject per type
        (several are a consumer's `filter_subjects`: NATS 2.10+)."""
        names = sorted(self.types)
        family = _family(names)
        if family and {t.name for t in event_types() if t.name.startswith(f"{family}.")} == set(names):
            return [subject_for(prefix, f"{family}.>")]
        return [subject_for(prefix, name) for name in names]

    def parse(self, data: bytes) -> Event[Any]:
        """The event in a message's data; UnusableEvent when it is not one of these types,
        or its envelope names another producer than the registry's."""
        try:
            envelope = events_pb2.EventEnvelope.FromString(data)
        except DecodeError:
            raise UnusableEvent("the envelope does not parse") from None
        event_type = self.types.get(envelope.type)
        if event_type is None:
            known = any(t.name == envelope.type for t in event_types())
            kind = "not subscribed to" if known else "unknown"
            raise UnusableEvent(f"event type {envelope.type!r} is {kind}", envelope.event_id)
        if envelope.producer != event_type.producer:
            # NATS lets only the producer publish the type's subject; this catches the rest
            # (a NATS without credentials, a copy republished by another service).
            reason = f"{envelope.type} is {event_type.producer}'s, not {envelope.producer!r}'s"
            raise UnusableEvent(reason, envelope.event_id)
        payload = event_type.payload()
        if not envelope.payload.Is(payload.DESCRIPTOR):
            expected = payload.DESCRIPTOR.full_name
            reason = f"{envelope.type} carries {envelope.payload.type_url!r}, not {expected}"
            raise UnusableEvent(reason, envelope.event_id)
        try:
            payload.ParseFromString(envelope.payload.value)
        except DecodeError:
            raise UnusableEvent(f"the {envelope.type} payload does not parse", envelope.event_id) from None
        return Event(envelope.event_id, envelope.type, envelope.user_id, envelope.producer, payload)


def _family(names: list[str]) -> str:
    """The leading dotted tokens all the names share, short of a whole name
    ("expense" for expense.created and expense.deleted, and for expense.created alone)."""
    columns = zip(*(name.split(".")[:-1] for name in names), strict=False)
    return ".".join(column[0] for column in takewhile(lambda column: len(set(column)) == 1, columns))
