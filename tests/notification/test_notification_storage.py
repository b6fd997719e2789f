"""notification's storage on a migrated SQLite file and a fresh PostgreSQL database:
one notification per event and one delivery per (event, channel) however often an
event comes; one worker claims a delivery at a time; statuses only move forward;
the sweep finds what was never queued and what is due again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from expense.events.v1 import events_pb2
from services.kit.db import migrations
from services.kit.db.engine import Database
from services.kit.db.erasure import ErasedUsers
from services.kit.domain.ids import new_id
from services.kit.domain.timestamps import utcnow
from services.kit.events.bus import EventBus
from services.kit.events.subscription import Event
from services.notification import storage
from services.notification.domain import DELIVERED, FAILED, SENT, MessagePlan, Preferences
from services.notification.queue import DONE, DeliveryQueue, Job
from services.notification.secrets import SecretBox
from services.notification.settings import NotificationMeshSettings
from services.notification.usecases import CLAIM_END_MARGIN_SECONDS, Deliveries, Intake

CHANNELS = ("in_app", "email", "sms")


@pytest.fixture
async def db(database_url: str, tmp_path: Path) -> AsyncIterator[Database]:
    settings = NotificationMeshSettings(database_url=database_url, data_dir=tmp_path)
    await asyncio.to_thread(migrations.upgrade, "notification", settings)
    database = Database.for_service(settings, "notification")
    yield database
    await database.dispose()


@pytest.fixture
def intake(db: Database) -> Intake:
    settings = NotificationMeshSettings().notification
    # The bus is never started: notify() only writes rows.
    queue = DeliveryQueue(EventBus("nats://127.0.0.1:1", "unused", "test"), settings.delivery)
    return Intake(db, settings, queue, ErasedUsers(storage.erased_users))


async def contact(db: Database, user_id: str, channel: str, address: str) -> None:
    now = utcnow()
    async with db.transaction() as session:
        row = storage.ContactPointRow(new_id(), user_id, channel, address, now, "", None, 0, "", now)
        assert await storage.add_contact_point(session, row)


async def notify(db: Database, intake: Intake, user_id: str, event_id: str) -> list[str]:
    plan = MessagePlan("budget.threshold", {"budget": "Food"}, "warning")
    async with db.transaction() as session:
        fresh = await intake.notify(
            session, user_id, event_id, "alert.raised", plan, CHANNELS, Preferences(), utcnow()
        )
    return [delivery.channel for delivery in fresh]


async def test_an_event_makes_one_notification_and_one_delivery_per_channel(
    db: Database, intake: Intake
) -> None:
    user_id, event_id = new_id(), new_id()
    await contact(db, user_id, "email", "asha@example.org")
    await contact(db, user_id, "sms", "+919876543210")
    assert await notify(db, intake, user_id, event_id) == list(CHANNELS)
    assert await notify(db, intake, user_id, event_id) == []  # the event again: nothing new
    async with db.read() as connection:
        notification = await storage.notification_of_event(connection, event_id)  # type: ignore[arg-type]
        assert notification is not None
        deliveries = await storage.deliveries_of(connection, notification.notification_id)
    assert sorted(d.channel for d in deliveries) == sorted(CHANNELS)
    assert {d.address for d in deliveries} == {
        notification.notification_id,
        "asha@example.org",
        "+919876543210",
    }


async def test_a_channel_without_a_verified_address_gets_no_delivery(db: Database, intake: Intake) -> None:
    user_id = new_id()
    assert await notify(db, intake, user_id, new_id()) == ["in_app"]


async def test_one_worker_claims_a_delivery_at_a_time(db: Database, intake: Intake) -> None:
    user_id, event_id = new_id(), new_id()
    await notify(db, intake, user_id, event_id)
    async with db.read() as connection:
        notification = await storage.notification_of_event(connection, event_id)  # type: ignore[arg-type]
        assert notification is not None
        (delivery,) = await storage.deliveries_of(connection, notification.notification_id)
    now = utcnow()

    async def claim() -> list[storage.DeliveryRow]:
        async with db.transaction() as session:
            return await storage.start_attempts(
                session, [delivery.delivery_id], now, now + timedelta(seconds=30)
            )

    claims = [row for rows in await asyncio.gather(claim(), claim(), claim()) for row in rows]
    assert [c.attempts for c in claims] == [1]
    async with db.transaction() as session:  # the claim lapsed: a crashed worker's job may go on
        later = now + timedelta(seconds=31)
        (again,) = await storage.start_attempts(
            session, [delivery.delivery_id], later, later + timedelta(seconds=30)
        )
    assert again.attempts == 2


async def test_statuses_only_move_forward(db: Database, intake: Intake) -> None:
    user_id, event_id = new_id(), new_id()
    await notify(db, intake, user_id, event_id)
    async with db.read() as connection:
        notification = await storage.notification_of_event(connection, event_id)  # type: ignore[arg-type]
        assert notification is not None
        (delivery,) = await storage.deliveries_of(connection, notification.notification_id)
    ids, now = [delivery.delivery_id], utcnow()
    async with db.transaction() as session:
        assert await storage.advance(session, ids, SENT, now, provider_message_id="SM1") == 1
        assert await storage.advance(session, ids, DELIVERED, now) == 1
        assert await storage.advance(session, ids, SENT, now) == 0  # late
        assert await storage.advance(session, ids, "failed", now) == 0  # final stays final
    async with db.read() as connection:
        stored = await storage.get_delivery(connection, delivery.delivery_id)
    assert stored is not None and (stored.status, stored.provider_message_id) == (DELIVERED, "SM1")


async def test_the_sweep_finds_the_unqueued_and_the_due_again(db: Database, intake: Intake) -> None:
    user_id = new_id()
    await notify(db, intake, user_id, new_id())
    now = utcnow()
    async with db.transaction() as session:
        assert await storage.due_for_queue(session, now, now - timedelta(seconds=10), 100) == []  # too fresh
        (unqueued,) = await storage.due_for_queue(session, now, now + timedelta(seconds=1), 100)
        assert (
            await storage.due_for_queue(session, now, now + timedelta(seconds=1), 100) == []
        )  # marked queued
        # Claimed, then held back by quiet hours.
        assert await storage.start_attempts(session, [unqueued.delivery_id], now, now + timedelta(minutes=1))
        await storage.release(
            session, unqueued.delivery_id, now + timedelta(minutes=5), now, "deferred: quiet hours"
        )
        assert await storage.due_for_queue(session, now, now + timedelta(seconds=1), 100) == []
        later = now + timedelta(minutes=6)
        (due,) = await storage.due_for_queue(session, later, later, 100)
    assert due.delivery_id == unqueued.delivery_id and due.error == "deferred: quiet hours"


async def test_a_job_lost_with_its_worker_is_queued_again(db: Database, intake: Intake) -> None:
    user_id = new_id()
    await notify(db, intake, user_id, new_id())
    now = utcnow()
    async with db.transaction() as session:
        (queued,) = await storage.due_for_queue(session, now, now + timedelta(seconds=1), 100)
        # Its last try claimed it and died: nothing while the queue's schedule lasts.
        assert await storage.start_attempts(session, [queued.delivery_id], now, now + timedelta(minutes=1))
        assert await storage.due_for_queue(session, now, now, 100, lost_before=now - timedelta(hours=2)) == []
        hours_later = now + timedelta(hours=3)
        (lost,) = await storage.due_for_queue(
            session, hours_later, hours_later, 100, lost_before=hours_later - timedelta(hours=2)
        )
    assert lost.delivery_id == queued.delivery_id and lost.attempts == 1


async def test_the_signups_name_and_the_users_choices_never_erase_each_other(db: Database) -> None:
    default = Preferences(time_zone="UTC", locale="en")
    chosen = Preferences(rules={"alert.raised": ("webhook",)}, time_zone="UTC", locale="en")
    first, second = new_id(), new_id()
    async with db.transaction() as session:
        # The user's choices first, then the name (the signup event applied late).
        await storage.save_preferences(session, first, chosen, utcnow())
        await storage.set_display_name(session, first, "Asha", default, utcnow())
        # The name first, then choices read before it (a PATCH racing the signup).
        await storage.set_display_name(session, second, "Ravi", default, utcnow())
        await storage.save_preferences(session, second, chosen, utcnow())
    async with db.read() as connection:
        for user_id, name in ((first, "Asha"), (second, "Ravi")):
            saved = await storage.get_preferences(connection, user_id, default)
            assert (saved.rules, saved.display_name) == ({"alert.raised": ("webhook",)}, name)


async def test_the_users_choices_never_put_an_older_profile_copy_back(db: Database) -> None:
    """A PATCH of the user's choices that read the row before a newer profile event committed
    writes the choices only: time zone and locale are the profile copy's, by version."""
    default = Preferences(time_zone="UTC", locale="en")
    user_id = new_id()
    async with db.transaction() as session:
        await storage.save_preferences(session, user_id, default, utcnow())
    async with db.read() as connection:
        read_before = await storage.get_preferences(connection, user_id, default)
    newer = storage.ProfileCopy("Asia/Tokyo", "ja", 2)
    async with db.transaction() as session:
        assert await storage.save_profile_copy(session, user_id, newer, default, utcnow())
        chosen = replace(read_before, rules={"alert.raised": ("webhook",)})
        await storage.save_preferences(session, user_id, chosen, utcnow())
        # An older profile event redelivered after the newer one changes nothing either.
        older = storage.ProfileCopy("Europe/Paris", "fr", 1)
        assert not await storage.save_profile_copy(session, user_id, older, default, utcnow())
    async with db.read() as connection:
        saved = await storage.get_preferences(connection, user_id, default)
    assert (saved.time_zone, saved.locale) == ("Asia/Tokyo", "ja")
    assert saved.rules == {"alert.raised": ("webhook",)}


async def test_a_monthly_report_makes_one_message_per_currency_once(db: Database, intake: Intake) -> None:
    user_id = new_id()
    await contact(db, user_id, "email", "asha@example.org")
    report = events_pb2.MonthlyReportReady(
        user_id=user_id,
        month="2026-11",
        currencies=[
            events_pb2.MonthlyCurrencySummary(currency="INR", total="10.00"),
            events_pb2.MonthlyCurrencySummary(currency="EUR", total="2.00"),
        ],
    )
    event = Event(new_id(), "report.monthly_ready", user_id, "reporting", report)
    made = []
    for _ in range(2):  # the second time as a redelivery: nothing more
        async with db.transaction() as session:
            made.append(len(await intake.on_event(session, event)))
    assert made == [4, 0]  # in-app and email per currency, once
    async with db.transaction() as session:
        totals = [
            (await storage.notification_of_event(session, f"{event.event_id}/{index}")).variables["total"]  # type: ignore[union-attr]
            for index in (0, 1)
        ]
    assert totals == [{"amount": "10.00", "currency": "INR"}, {"amount": "2.00", "currency": "EUR"}]


async def test_concurrent_jobs_of_one_user_never_pass_a_daily_cap(db: Database, intake: Intake) -> None:
    settings = intake.settings.model_copy(update={"daily_caps": {"webhook": 3}})
    # claim() renders and sends nothing: no templating client, no channels.
    worker = Deliveries(db, settings, intake.queue, {}, None, SecretBox(b"k" * 32))  # type: ignore[arg-type]
    user_id, prefs, now = new_id(), Preferences(), utcnow()
    await contact(db, user_id, "webhook", "https://hooks.example.org/in")
    plan = MessagePlan("budget.threshold", {"budget": "Food"}, "warning")
    fresh = []
    async with db.transaction() as session:
        for _ in range(8):
            fresh += await intake.notify(
                session, user_id, new_id(), "alert.raised", plan, ["webhook"], prefs, now
            )
    assert len(fresh) == 8
    claims = await asyncio.gather(*(worker.claim(new.delivery_id, now) for new in fresh))
    assert len([c for c in claims if c is not None]) == 3
    async with db.read() as connection:
        stored = [await storage.get_delivery(connection, new.delivery_id) for new in fresh]
    held = [d for d in stored if d is not None and d.deferred_until is not None]
    assert len(held) == 5
    assert {d.error for d in held} == {"deferred: the daily cap of 3 is reached"}
    assert {d.attempts for d in held} == {0}  # a held-back job is no attempt


def alert_event(user_id: str, event_id: str = "") -> Event[events_pb2.AlertRaised]:
    alert = events_pb2.AlertRaised(
        alert_id=new_id(), type="budget_threshold", severity="warning", title="Food at 80 %",
        details={"budget": "Food", "percent": "80", "spent": "800.00", "limit": "1000.00", "currency": "INR"},
    )  # fmt: skip
    return Event(event_id or new_id(), "alert.raised", user_id, "billing", alert)


async def test_a_batch_of_events_makes_each_message_once_in_few_statements(
    db: Database, intake: Intake
) -> None:
    users = [new_id(), new_id()]
    for user_id in users:
        await contact(db, user_id, "email", f"{user_id}@example.org")
    async with db.transaction() as session:
        for user_id in users:
            chosen = Preferences(rules={"alert.raised": ("in_app", "email")})
            await storage.save_preferences(session, user_id, chosen, utcnow())
    repeated = alert_event(users[0])
    batch = [repeated, alert_event(users[1]), repeated, alert_event(users[0])]
    async with db.transaction() as session:
        fresh = await intake.apply(session, batch)
    # Three events, two channels each: the repeated event once.
    assert sorted(new.channel for new in fresh) == ["email"] * 3 + ["in_app"] * 3
    async with db.transaction() as session:
        again = await intake.apply(session, [repeated, alert_event(users[1], batch[1].event_id)])
        made = await storage.notification_of_event(session, repeated.event_id)
        assert made is not None
        deliveries = await storage.deliveries_of(session, made.notification_id)
    assert again == []  # a redelivered batch makes nothing more
    assert {(d.channel, d.address) for d in deliveries} == {
        ("in_app", made.notification_id),
        ("email", f"{users[0]}@example.org"),
    }


async def test_a_batch_claim_takes_each_delivery_once_and_holds_back_past_the_cap(
    db: Database, intake: Intake
) -> None:
    settings = intake.settings.model_copy(update={"daily_caps": {"webhook": 3}})
    # claim_many() renders and sends nothing: no templating client, no channels.
    worker = Deliveries(db, settings, intake.queue, {}, None, SecretBox(b"k" * 32))  # type: ignore[arg-type]
    capped, other, now = new_id(), new_id(), utcnow()
    for user_id in (capped, other):
        await contact(db, user_id, "webhook", f"https://hooks.example.org/{user_id}")
    plan = MessagePlan("budget.threshold", {"budget": "Food"}, "warning")
    critical = MessagePlan("budget.threshold", {"budget": "Food"}, "critical")
    fresh = []
    async with db.transaction() as session:
        for user_id, count, message in ((capped, 5, plan), (other, 2, plan), (capped, 1, critical)):
            for _ in range(count):
                fresh += await intake.notify(
                    session, user_id, new_id(), "alert.raised", message, ["webhook"], Preferences(), now
                )
    ids = [new.delivery_id for new in fresh]
    # A job repeated in the batch, and a second batch of the same jobs (another worker).
    claims = await worker.claim_many([*ids, ids[0]], now)
    assert await worker.claim_many(ids, now) == {}
    async with db.read() as connection:
        stored = {d.delivery_id: d for d in await storage.deliveries_by_ids(connection, ids)}
    # The capped user's critical message is never held but counts: 2 of their 5 others go.
    assert len([i for i in ids[:5] if i in claims]) == 2
    assert ids[5] in claims and ids[6] in claims and ids[7] in claims
    held = [stored[i] for i in ids if i not in claims]
    assert len(held) == 3
    assert {d.error for d in held} == {"deferred: the daily cap of 3 is reached"}
    assert {d.attempts for d in held} == {0} and {stored[i].attempts for i in claims} == {1}
    assert all(claim.webhook_secret is not None for claim in claims.values())


async def test_a_batch_of_results_moves_each_delivery_forward_only(db: Database, intake: Intake) -> None:
    user_id, now = new_id(), utcnow()
    await contact(db, user_id, "email", "asha@example.org")
    plan = MessagePlan("budget.threshold", {"budget": "Food"}, "warning")
    async with db.transaction() as session:
        fresh = await intake.notify(
            session, user_id, new_id(), "alert.raised", plan, CHANNELS, Preferences(), now
        )
        fresh += await intake.notify(
            session, user_id, new_id(), "alert.raised", plan, CHANNELS, Preferences(), now
        )
    # In-app and email of each event (no SMS contact point).
    first_app, first_mail, _, second_mail = [new.delivery_id for new in fresh]
    async with db.transaction() as session:
        # A receipt came first: delivered already.
        await storage.advance(session, [second_mail], DELIVERED, now, provider_message_id="early")
        moved = await storage.advance_each(
            session,
            [
                storage.Result(
                    first_mail, SENT, provider_message_id="m-1", template="budget.threshold@1", error=""
                ),
                storage.Result(second_mail, SENT, provider_message_id="late"),
                storage.Result(first_app, FAILED, error="refused"),
            ],
            now,
        )
    async with db.read() as connection:
        stored = {
            d.delivery_id: d
            for d in await storage.deliveries_by_ids(connection, [first_app, first_mail, second_mail])
        }
    assert moved == 2
    assert (
        stored[first_mail].status,
        stored[first_mail].provider_message_id,
        stored[first_mail].template,
    ) == (SENT, "m-1", "budget.threshold@1")
    assert (stored[second_mail].status, stored[second_mail].provider_message_id) == (DELIVERED, "early")
    assert (stored[first_app].status, stored[first_app].error, stored[first_app].template) == (
        FAILED,
        "refused",
        "",
    )


async def test_a_job_finding_its_delivery_claimed_comes_back_when_the_claim_ends(
    db: Database, intake: Intake
) -> None:
    """A redelivered job whose delivery is claimed (another replica, or a worker killed
    between claiming and recording its send) is not done: it comes back once the claim
    ends, then finds the send recorded or sends it itself."""
    channels = {"webhook": object()}  # never sent through: the delivery is claimed
    worker = Deliveries(db, intake.settings, intake.queue, channels, None, SecretBox(b"k" * 32))  # type: ignore[arg-type]
    user_id, now = new_id(), utcnow()
    await contact(db, user_id, "webhook", "https://hooks.example.org/in")
    plan = MessagePlan("budget.threshold", {"budget": "Food"}, "warning")
    async with db.transaction() as session:
        (new,) = await intake.notify(
            session, user_id, new_id(), "alert.raised", plan, ["webhook"], Preferences(), now
        )
    assert new.delivery_id in await worker.claim_many([new.delivery_id], now)  # then killed
    job = Job(new.delivery_id, "webhook", 2)
    (outcome,) = await worker.handle_batch([job])
    ack_wait = intake.settings.delivery.ack_wait_seconds
    assert outcome.retry_in is not None
    assert ack_wait - 10 < outcome.retry_in <= ack_wait + CLAIM_END_MARGIN_SECONDS
    async with db.transaction() as session:  # a receipt recorded the send made before the crash
        await storage.advance_each(session, [storage.Result(new.delivery_id, SENT, "SM1")], utcnow())
    assert await worker.handle_batch([job]) == [DONE]
