"""The user service over real gRPC, as its own process, on SQLite and on
PostgreSQL, with real NATS JetStream: profiles from the signup event, first
reads racing that event, updates, validation, events, isolation."""

from __future__ import annotations

import asyncio
import signal

import grpc
import pytest

from expense.events.v1 import events_pb2
from expense.user.v1 import user_pb2
from services.kit.config.settings import BreakerSettings, ResilienceSettings
from services.kit.domain.ids import new_id
from services.kit.events.bus import make_envelope
from services.kit.grpc.status import field_violations
from services.kit.identity.tokens import Identity
from services.user.client import Preferences, PreferencesClient
from tests.user.harness import Account, UserServiceUnderTest, wait_until


async def expect_error(call, code: grpc.StatusCode) -> grpc.aio.AioRpcError:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == code, caught.value.details()
    return caught.value


async def test_profile_is_created_by_the_signup_event(user_service: UserServiceUnderTest, auth) -> None:
    account = await auth.signup("Event Person")
    event = await auth.signup_event(account)
    await user_service.deliver(event)
    await user_service.wait_applied(event.event_id)
    # No read has happened yet, so only the consumer can have created it.
    assert await user_service.profile_rows(account.user_id) == 1

    profile = await user_service.get(account)
    assert (profile.user_id, profile.email, profile.display_name) == (
        account.user_id,
        account.email,
        "Event Person",
    )
    assert (profile.default_currency, profile.time_zone, profile.locale) == ("INR", "UTC", "en")
    assert profile.first_day_of_week == "monday"
    assert list(profile.notifications.channels) == ["email"]
    assert profile.create_time.endswith("Z")


async def test_an_unusable_signup_event_is_dead_lettered_not_retried_forever(
    user_service: UserServiceUnderTest, auth
) -> None:
    account = await auth.signup("Odd Event")
    real = await auth.signup_event(account)
    odd = events_pb2.EventEnvelope()
    odd.CopyFrom(real)
    odd.event_id = new_id()
    odd.payload.Pack(events_pb2.ProfileUpdated(user_id=account.user_id))  # wrong payload type
    await user_service.deliver(odd)
    assert "carries 'type.googleapis.com/expense.events.v1.ProfileUpdated'" in (
        await user_service.wait_dead_lettered(odd.event_id)
    )
    assert await user_service.profile_rows(account.user_id) == 0
    assert not await user_service.event_applied(odd.event_id)
    # The consumer goes on with the next event.
    await user_service.deliver(real)
    await user_service.wait_applied(real.event_id)
    assert await user_service.profile_rows(account.user_id) == 1


async def test_first_read_before_the_event_still_succeeds(user_service: UserServiceUnderTest, auth) -> None:
    account = await auth.signup("Early Reader")
    # Several first reads at once, all before the event: one profile, the same for all.
    first_reads = await asyncio.gather(*(user_service.get(account) for _ in range(8)))
    assert {p.create_time for p in first_reads} == {first_reads[0].create_time}
    assert first_reads[0].display_name == "Early Reader"
    assert first_reads[0].email == account.email
    assert await user_service.profile_rows(account.user_id) == 1

    await user_service.update(account, "display_name", display_name="Renamed Meanwhile")
    event = await auth.signup_event(account)
    await user_service.deliver(event)
    await user_service.wait_applied(event.event_id)

    assert await user_service.profile_rows(account.user_id) == 1
    after = await user_service.get(account)
    assert after.display_name == "Renamed Meanwhile"  # the late event changed nothing
    assert after.create_time == first_reads[0].create_time


async def test_event_and_first_read_racing_converge(user_service: UserServiceUnderTest, auth) -> None:
    accounts = [await auth.signup(f"Racer {n}") for n in range(5)]
    events = [await auth.signup_event(account) for account in accounts]
    results = await asyncio.gather(
        *(user_service.deliver(event) for event in events),
        *(user_service.get(account) for account in accounts),
    )
    for account, profile in zip(accounts, results[len(events) :], strict=True):
        assert profile.user_id == account.user_id
    for account, event in zip(accounts, events, strict=True):
        await user_service.wait_applied(event.event_id)
        assert await user_service.profile_rows(account.user_id) == 1


async def test_update_changes_only_the_masked_fields(user_service: UserServiceUnderTest, auth) -> None:
    account = await auth.signup("Masked")
    before = await user_service.get(account)

    updated = await user_service.update(
        account, "time_zone", display_name="Ignored", time_zone="Asia/Kolkata", locale="fr"
    )
    assert updated.time_zone == "Asia/Kolkata"
    assert (updated.display_name, updated.locale) == (before.display_name, before.locale)
    assert updated.update_time > before.update_time
    assert updated.create_time == before.create_time

    stored = await user_service.get(account)
    assert stored == updated


async def test_update_of_every_preference(user_service: UserServiceUnderTest, auth) -> None:
    account = await auth.signup("Everything")
    await user_service.get(account)
    notifications = user_pb2.NotificationSettings(
        channels=["push", "WhatsApp"], quiet_hours_start="22:30", quiet_hours_end="07:00"
    )
    updated = await user_service.update(
        account,
        "",  # empty mask: every field the request sets
        display_name="  All Set  ",
        default_currency="usd",
        time_zone="europe/london",
        locale="en-gb",
        first_day_of_week="Sunday",
        notifications=notifications,
        sms_auto_import=True,
    )
    assert updated.display_name == "All Set"
    assert (updated.default_currency, updated.time_zone, updated.locale) == ("USD", "Europe/London", "en-GB")
    assert updated.first_day_of_week == "sunday"
    assert list(updated.notifications.channels) == ["push", "whatsapp"]
    assert (updated.notifications.quiet_hours_start, updated.notifications.quiet_hours_end) == (
        "22:30",
        "07:00",
    )
    assert updated.sms_auto_import is True

    # Clearing takes an explicit mask: empty values are not "set" in proto3.
    cleared = await user_service.update(account, "notifications,sms_auto_import")
    assert list(cleared.notifications.channels) == []
    assert cleared.notifications.quiet_hours_start == cleared.notifications.quiet_hours_end == ""
    assert cleared.sms_auto_import is False
    assert (await user_service.get(account)) == cleared


async def test_bad_values_are_refused_field_by_field(user_service: UserServiceUnderTest, auth) -> None:
    account = await auth.signup("Careful")
    before = await user_service.get(account)
    error = await expect_error(
        user_service.update(
            account,
            "time_zone,default_currency,locale,first_day_of_week,notifications.channels",
            time_zone="Mars/Olympus",
            default_currency="XYZ",
            locale="english please",
            first_day_of_week="caturday",
            notifications=user_pb2.NotificationSettings(channels=["email", "pigeon"]),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert set(field_violations(error)) == {
        "profile.time_zone",
        "profile.default_currency",
        "profile.locale",
        "profile.first_day_of_week",
        "profile.notifications.channels[1]",
    }
    assert "Mars/Olympus" in field_violations(error)["profile.time_zone"]
    # Nothing was changed by the refused update.
    assert (await user_service.get(account)) == before


async def test_half_quiet_hours_are_refused(user_service: UserServiceUnderTest, auth) -> None:
    account = await auth.signup("Quiet")
    error = await expect_error(
        user_service.update(
            account,
            "notifications.quiet_hours_start",
            notifications=user_pb2.NotificationSettings(quiet_hours_start="22:00"),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert list(field_violations(error)) == ["profile.notifications.quiet_hours_end"]


@pytest.mark.parametrize(
    ("mask", "hint"),
    [("email", "output-only"), ("user_id,display_name", "output-only"), ("password", "unknown")],
)
async def test_bad_masks_name_update_mask(
    user_service: UserServiceUnderTest, auth, mask: str, hint: str
) -> None:
    account = await auth.signup("Mask Tester")
    before = await user_service.get(account)
    error = await expect_error(
        user_service.update(account, mask, email="stolen@example.com", display_name="Hijack"),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    violations = field_violations(error)
    assert list(violations) == ["update_mask"]
    assert hint in violations["update_mask"]
    assert (await user_service.get(account)) == before


async def test_every_update_publishes_profile_updated(user_service: UserServiceUnderTest, auth) -> None:
    account = await auth.signup("Publisher")
    await user_service.update(
        account, "time_zone,first_day_of_week", time_zone="Asia/Tokyo", first_day_of_week="sunday"
    )

    async def published() -> bool:
        envelope = await user_service.last_event("user.profile_updated")
        return envelope is not None and envelope.user_id == account.user_id

    await wait_until(published, "user.profile_updated for the update")
    envelope = await user_service.last_event("user.profile_updated")
    assert envelope is not None
    assert (envelope.type, envelope.producer) == ("user.profile_updated", "user")
    payload = events_pb2.ProfileUpdated()
    assert envelope.payload.Unpack(payload)
    assert (payload.user_id, payload.time_zone, payload.first_day_of_week) == (
        account.user_id,
        "Asia/Tokyo",
        "sunday",
    )
    assert (payload.default_currency, payload.locale) == ("INR", "en")
    # Created at version 1; each update one more, so consumers can tell a redelivered older event.
    assert payload.version == 2
    await user_service.update(account, "locale", locale="fr")

    async def republished() -> bool:
        envelope = await user_service.last_event("user.profile_updated")
        return envelope is not None and envelope.event_id != last.event_id

    last = envelope
    await wait_until(republished, "user.profile_updated for the second update")
    envelope = await user_service.last_event("user.profile_updated")
    assert envelope is not None and envelope.payload.Unpack(payload)
    assert (payload.locale, payload.time_zone, payload.version) == ("fr", "Asia/Tokyo", 3)


async def test_a_signup_event_arriving_after_the_erasure_creates_no_profile(
    user_service: UserServiceUnderTest, auth
) -> None:
    """JetStream may deliver auth's user.registered after its user.deleted (a redelivery):
    the erasure is on record, so the late signup is skipped instead of creating the profile again."""
    account = await auth.signup("Gone Soon")
    signup = await auth.signup_event(account)
    deleted = make_envelope(
        "user.deleted", account.user_id, events_pb2.UserDeleted(user_id=account.user_id), "auth"
    )
    await user_service.deliver(deleted)
    await user_service.wait_applied(deleted.event_id)
    await user_service.deliver(signup)
    await user_service.wait_applied(signup.event_id)
    assert await user_service.profile_rows(account.user_id) == 0


async def test_each_user_sees_and_changes_only_their_own(user_service: UserServiceUnderTest, auth) -> None:
    alice: Account = await auth.signup("Alice")
    bob: Account = await auth.signup("Bob")
    await user_service.update(alice, "time_zone", time_zone="Asia/Kolkata")
    # Bob names Alice's id in the body: ignored, the id comes from his token.
    await user_service.update(bob, "", user_id=alice.user_id, email=alice.email, display_name="Bob B")

    seen_by_alice = await user_service.get(alice)
    seen_by_bob = await user_service.get(bob)
    assert (seen_by_alice.user_id, seen_by_alice.display_name, seen_by_alice.time_zone) == (
        alice.user_id,
        "Alice",
        "Asia/Kolkata",
    )
    assert (seen_by_bob.user_id, seen_by_bob.email, seen_by_bob.display_name, seen_by_bob.time_zone) == (
        bob.user_id,
        bob.email,
        "Bob B",
        "UTC",
    )


@pytest.mark.parametrize("authorization", [None, "Bearer not-a-token", "Basic dXNlcjpwYXNz"])
async def test_calls_without_a_valid_token_are_refused(
    user_service: UserServiceUnderTest, authorization: str | None
) -> None:
    metadata = () if authorization is None else (("authorization", authorization),)
    await expect_error(
        user_service.stub.GetProfile(user_pb2.GetProfileRequest(), metadata=metadata, timeout=5),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    await expect_error(
        user_service.stub.UpdateProfile(
            user_pb2.UpdateProfileRequest(profile=user_pb2.Profile(display_name="x")),
            metadata=metadata,
            timeout=5,
        ),
        grpc.StatusCode.UNAUTHENTICATED,
    )


async def test_concurrent_updates_of_different_fields_all_survive(
    user_service: UserServiceUnderTest, auth
) -> None:
    account = await auth.signup("Busy")
    await user_service.get(account)
    await asyncio.gather(
        user_service.update(account, "time_zone", time_zone="Asia/Tokyo"),
        user_service.update(account, "locale", locale="ja"),
        user_service.update(account, "default_currency", default_currency="JPY"),
        user_service.update(account, "first_day_of_week", first_day_of_week="sunday"),
        user_service.update(account, "display_name", display_name="Busy Bee"),
        user_service.update(account, "sms_auto_import", sms_auto_import=True),
    )
    final = await user_service.get(account)
    assert (final.time_zone, final.locale, final.default_currency) == ("Asia/Tokyo", "ja", "JPY")
    assert (final.first_day_of_week, final.display_name, final.sms_auto_import) == (
        "sunday",
        "Busy Bee",
        True,
    )


async def test_a_token_of_an_ended_session_is_refused(user_service: UserServiceUnderTest, auth) -> None:
    account = await auth.signup("Leaving")
    await user_service.get(account)
    await auth.log_out_everywhere(account)

    async def refused() -> bool:
        try:
            await user_service.get(account)
        except grpc.aio.AioRpcError as error:
            return error.code() == grpc.StatusCode.UNAUTHENTICATED
        return False

    await wait_until(refused, "the ended session's token to be refused")


async def test_other_services_fall_back_on_the_last_preferences_while_it_is_down(
    user_service: UserServiceUnderTest, auth
) -> None:
    """PreferencesClient (ledger, reporting): fresh answers, then, with the service stopped,
    the last answer or the newest profile event's preferences; nothing to fall back on is an
    error, at once once the breaker is open."""
    account = await auth.signup("Fallback Person")
    await user_service.update(account, "default_currency", default_currency="EUR")
    resilience = ResilienceSettings(
        preferences_fresh_seconds=0, breaker=BreakerSettings(failure_threshold=1, open_seconds=60)
    )
    address = f"127.0.0.1:{user_service.process.port}"
    client = PreferencesClient(address, 0.5, resilience.model_copy(update={"preferences_stale_seconds": 60}))
    identity = Identity(account.user_id, "", "", 0, account.access_token)
    stranger = Identity(new_id(), "", "", 0, account.access_token)
    assert (await client.get(identity)).default_currency == "EUR"
    process = user_service.process.process
    assert process is not None
    process.send_signal(signal.SIGSTOP)
    try:
        assert (await client.get(identity)).default_currency == "EUR"  # the last answer
        latest = Preferences("JPY", "Asia/Tokyo", "sunday", "ja")
        client.forget(account.user_id, latest, version=3)
        # An older event redelivered after it does not become the fallback.
        client.forget(account.user_id, Preferences("GBP", "Europe/London", "monday", "en"), version=2)
        assert await client.get(identity) == latest  # the newer event's
        with pytest.raises(grpc.aio.AioRpcError) as nothing_cached:
            await client.get(stranger)
        assert nothing_cached.value.code() == grpc.StatusCode.UNAVAILABLE  # the breaker is open
    finally:
        process.send_signal(signal.SIGCONT)
        await client.close()
