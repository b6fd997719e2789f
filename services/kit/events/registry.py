"""The event registry: every event type is declared once, on its payload message in
proto/expense/events/v1/events.proto (`option (event_type) = {name, producer}`).
Producers publish a payload and the registry names it; consumers subscribe to payload
types and get them parsed."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from google.protobuf.message import Message

from expense.events.v1 import events_pb2


@dataclass(frozen=True)
class EventType:
    name: str
    producer: str
    payload: type[Message]
    # Empty: any service may consume it; else only these (a payload carrying a secret).
    consumers: tuple[str, ...] = ()

    def may_consume(self, service: str) -> bool:
        return not self.consumers or service in self.consumers


def _declared(payload: type[Message]) -> events_pb2.EventType | None:
    options = payload.DESCRIPTOR.GetOptions()
    if not options.HasExtension(events_pb2.event_type):
        return None
    return options.Extensions[events_pb2.event_type]


@cache
def event_types() -> tuple[EventType, ...]:
    """Every declared event type, in the order of the proto file."""
    declared = []
    for descriptor in events_pb2.DESCRIPTOR.message_types_by_name.values():
        payload = getattr(events_pb2, descriptor.name)
        option = _declared(payload)
        if option is not None:
            declared.append(EventType(option.name, option.producer, payload, tuple(option.consumers)))
    return tuple(declared)


@cache
def event_type_of(payload: type[Message]) -> EventType:
    """The event type a payload message is published as."""
    option = _declared(payload)
    if option is None:
        raise TypeError(f"{payload.DESCRIPTOR.full_name} is not declared an event type")
    return EventType(option.name, option.producer, payload, tuple(option.consumers))


@cache
def event_type_named(name: str) -> EventType:
    for event_type in event_types():
        if event_type.name == name:
            return event_type
    raise KeyError(f"no event type named {name!r}")
