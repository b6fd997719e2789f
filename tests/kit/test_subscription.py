"""Subscriptions name payload types; the kit derives the NATS filter from the registry
and refuses a server that would ignore a filter of several subjects."""

from __future__ import annotations

from pathlib import Path

import pytest

from expense.events.v1 import events_pb2
from services.kit.config.settings import MeshSettings
from services.kit.events.bus import EventBus
from services.kit.events.consumer import EventConsumer, per_event
from services.kit.events.registry import event_type_of
from services.kit.events.subscription import Subscription
from services.kit.runtime import Runtime
from services.reporting import storage as reporting_storage
from tests.kit.test_consumer_batches import RecordingBus


def filters(*payloads: type) -> list[str]:
    return Subscription("probe", payloads).filter_subjects("em")


def test_every_type_of_a_family_is_one_wildcard() -> None:
    expense = (events_pb2.ExpenseCreated, events_pb2.ExpenseUpdated, events_pb2.ExpenseDeleted)
    assert filters(*expense) == ["em.events.expense.>"]
    user = (events_pb2.UserRegistered, events_pb2.ProfileUpdated, events_pb2.UserDeleted)
    assert filters(*user) == ["em.events.user.>"]
    assert filters(events_pb2.UserRegistered, events_pb2.ProfileUpdated) == [
        "em.events.user.profile_updated",
        "em.events.user.registered",
    ]
    assert filters(events_pb2.CategoryChanged) == ["em.events.category.>"]


def test_part_of_a_family_or_several_families_is_one_subject_per_type() -> None:
    assert filters(events_pb2.UserRegistered) == ["em.events.user.registered"]
    assert filters(events_pb2.ExpenseDeleted, events_pb2.ExpenseCreated) == [
        "em.events.expense.created",
        "em.events.expense.deleted",
    ]
    assert filters(events_pb2.UserRegistered, events_pb2.CategoryChanged) == [
        "em.events.category.changed",
        "em.events.user.registered",
    ]


def test_only_declared_event_types_can_be_subscribed_to() -> None:
    with pytest.raises(TypeError, match="ExpenseSnapshot is not declared an event type"):
        Subscription("probe", (events_pb2.ExpenseSnapshot,))
    with pytest.raises(ValueError, match="subscribes to nothing"):
        Subscription("probe", ())


async def test_a_server_ignoring_filter_subjects_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    async def nothing(session: object, event: object) -> None:
        pass

    mixed = Subscription("mixed", (events_pb2.UserRegistered, events_pb2.CategoryChanged))
    consumer = EventConsumer(RecordingBus(), None, None, mixed, per_event(nothing))  # type: ignore[arg-type]
    monkeypatch.setattr(EventBus, "server_version", property(lambda bus: (2, 9)))
    with pytest.raises(RuntimeError, match=r"needs NATS 2\.10"):
        consumer._config()
    monkeypatch.setattr(EventBus, "server_version", property(lambda bus: (2, 10)))
    config = consumer._config()
    assert config.filter_subject is None
    assert config.filter_subjects == consumer.filter_subjects


def test_a_type_with_named_consumers_refuses_every_other_service() -> None:
    reset = event_type_of(events_pb2.PasswordResetRequested)
    assert reset.consumers == ("notification",)
    assert reset.may_consume("notification") and not reset.may_consume("reporting")
    assert event_type_of(events_pb2.SecurityEvent).may_consume("reporting")  # no restriction


async def test_the_runtime_refuses_a_consumer_of_a_type_restricted_to_others(tmp_path: Path) -> None:
    runtime = Runtime("reporting", MeshSettings(data_dir=tmp_path))
    sneaky = Subscription("reporting_resets", (events_pb2.PasswordResetRequested,))
    with pytest.raises(ValueError, match=r"may not consume auth\.password_reset_requested"):
        runtime.consume(reporting_storage.inbox_table, sneaky, lambda session, event: None)  # type: ignore[arg-type, return-value]
    await runtime.db.dispose()
