"""Profile rules: each bad value gives a violation naming its field, update masks
resolve to the right leaf paths, quiet hours come in pairs. No I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from expense.user.v1 import user_pb2
from services.kit.domain.errors import InvalidArgument
from services.user.api import requested_changes, to_proto
from services.user.domain import (
    DISPLAY_NAME_MAX_LENGTH,
    Notifications,
    ProfileRules,
    canonical_locale,
    canonical_time_zone,
    update_paths,
)
from services.user.settings import ProfileDefaults
from services.user.usecases import profile_updated

CHANNELS = ("email", "sms", "whatsapp", "push")
T0 = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)


@pytest.fixture
def rules() -> ProfileRules:
    return ProfileRules(CHANNELS, ProfileDefaults())


@pytest.fixture
def profile(rules: ProfileRules):
    return rules.new_profile("u-1", "asha@example.com", "  Asha  ", T0)


def violations(error: pytest.ExceptionInfo[InvalidArgument]) -> dict[str, str]:
    return {v.field: v.description for v in error.value.violations}


def test_new_profile_takes_the_configured_defaults(profile) -> None:
    assert profile.display_name == "Asha"
    assert profile.email == "asha@example.com"
    assert (profile.default_currency, profile.time_zone, profile.locale) == ("INR", "UTC", "en")
    assert profile.first_day_of_week == "monday"
    assert profile.notifications == Notifications(channels=("email",))
    assert profile.sms_auto_import is False
    assert profile.create_time == profile.update_time == T0


def test_other_defaults_come_from_config() -> None:
    defaults = ProfileDefaults(
        default_currency="eur", time_zone="europe/berlin", locale="de-de", notification_channels=["push"]
    )
    profile = ProfileRules(CHANNELS, defaults).new_profile("u-2", "a@b.c", "A", T0)
    assert (profile.default_currency, profile.time_zone, profile.locale) == ("EUR", "Europe/Berlin", "de-DE")
    assert profile.notifications.channels == ("push",)


def test_a_bad_default_refuses_to_start() -> None:
    with pytest.raises(ValueError, match=r"user\.defaults\.time_zone"):
        ProfileRules(CHANNELS, ProfileDefaults(time_zone="Mars/Olympus"))
    with pytest.raises(ValueError, match=r"user\.defaults\.notifications\.channels\[0\]"):
        ProfileRules(("email",), ProfileDefaults(notification_channels=["pager"]))


def test_a_long_account_name_is_clipped(rules: ProfileRules) -> None:
    profile = rules.new_profile("u-3", "a@b.c", "x" * 500, T0)
    assert len(profile.display_name) == DISPLAY_NAME_MAX_LENGTH


def test_apply_changes_only_the_given_paths(rules: ProfileRules, profile) -> None:
    later = T0 + timedelta(minutes=5)
    updated = rules.apply(profile, {"time_zone": "Asia/Kolkata", "notifications.channels": ["sms"]}, later)
    assert updated.time_zone == "Asia/Kolkata"
    assert updated.notifications.channels == ("sms",)
    assert updated.display_name == profile.display_name
    assert updated.default_currency == profile.default_currency
    assert updated.create_time == T0
    assert updated.update_time == later


def test_values_are_canonicalised(rules: ProfileRules, profile) -> None:
    changes = {
        "display_name": "  Asha R  ",
        "default_currency": "usd",
        "time_zone": "asia/kolkata",
        "locale": "EN-in",
        "first_day_of_week": "Sunday",
        "notifications.channels": ["SMS", "email", "sms"],
        "notifications.quiet_hours_start": "22:00",
        "notifications.quiet_hours_end": "07:30",
        "sms_auto_import": True,
    }
    updated = rules.apply(profile, changes, T0)
    assert updated.display_name == "Asha R"
    assert updated.default_currency == "USD"
    assert updated.time_zone == "Asia/Kolkata"
    assert updated.locale == "en-IN"
    assert updated.first_day_of_week == "sunday"
    assert updated.notifications == Notifications(("sms", "email"), "22:00", "07:30")
    assert updated.sms_auto_import is True


@pytest.mark.parametrize(
    ("path", "value", "field", "hint"),
    [
        ("display_name", "   ", "profile.display_name", "empty"),
        ("display_name", "x" * (DISPLAY_NAME_MAX_LENGTH + 1), "profile.display_name", "at most"),
        ("display_name", "bell\x07", "profile.display_name", "control"),
        ("default_currency", "XYZ", "profile.default_currency", "ISO 4217"),
        ("default_currency", "", "profile.default_currency", "ISO 4217"),
        ("time_zone", "Mars/Olympus", "profile.time_zone", "IANA"),
        ("time_zone", "localtime", "profile.time_zone", "IANA"),
        ("time_zone", "+05:30", "profile.time_zone", "IANA"),
        ("locale", "en_IN", "profile.locale", "BCP 47"),
        ("locale", "english", "profile.locale", "BCP 47"),
        ("locale", "", "profile.locale", "BCP 47"),
        ("first_day_of_week", "funday", "profile.first_day_of_week", "monday"),
        ("notifications.channels", ["email", "pigeon"], "profile.notifications.channels[1]", "pigeon"),
        ("notifications.quiet_hours_start", "24:00", "profile.notifications.quiet_hours_start", "HH:MM"),
        ("notifications.quiet_hours_end", "7:30", "profile.notifications.quiet_hours_end", "HH:MM"),
        ("notifications.quiet_hours_start", "22:1٠", "profile.notifications.quiet_hours_start", "HH:MM"),
        ("notifications.quiet_hours_end", "0７:30", "profile.notifications.quiet_hours_end", "HH:MM"),
        ("locale", "es-٤١٩", "profile.locale", "BCP 47"),
        ("locale", "\u212aa", "profile.locale", "BCP 47"),
    ],
)
def test_each_bad_value_names_its_field(
    rules: ProfileRules, profile, path: str, value: object, field: str, hint: str
) -> None:
    with pytest.raises(InvalidArgument) as error:
        rules.apply(profile, {path: value}, T0)
    found = violations(error)
    assert list(found) == [field]
    assert hint in found[field]


def test_every_bad_value_is_reported_at_once(rules: ProfileRules, profile) -> None:
    with pytest.raises(InvalidArgument) as error:
        rules.apply(profile, {"time_zone": "Nowhere", "default_currency": "ABC", "locale": "??"}, T0)
    assert set(violations(error)) == {"profile.time_zone", "profile.default_currency", "profile.locale"}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"notifications.quiet_hours_start": "22:00"}, "profile.notifications.quiet_hours_end"),
        ({"notifications.quiet_hours_end": "07:00"}, "profile.notifications.quiet_hours_start"),
        (
            {"notifications.quiet_hours_start": "22:00", "notifications.quiet_hours_end": "22:00"},
            "profile.notifications.quiet_hours_end",
        ),
    ],
)
def test_quiet_hours_need_both_ends(rules: ProfileRules, profile, changes: dict, field: str) -> None:
    with pytest.raises(InvalidArgument) as error:
        rules.apply(profile, changes, T0)
    assert list(violations(error)) == [field]


def test_quiet_hours_can_cross_midnight_and_be_cleared(rules: ProfileRules, profile) -> None:
    quiet = rules.apply(
        profile, {"notifications.quiet_hours_start": "23:00", "notifications.quiet_hours_end": "06:00"}, T0
    )
    assert (quiet.notifications.quiet_hours_start, quiet.notifications.quiet_hours_end) == ("23:00", "06:00")
    # Clearing one end alone leaves half a pair: refused.
    with pytest.raises(InvalidArgument):
        rules.apply(quiet, {"notifications.quiet_hours_end": ""}, T0)
    cleared = rules.apply(
        quiet, {"notifications.quiet_hours_start": "", "notifications.quiet_hours_end": ""}, T0
    )
    assert cleared.notifications == Notifications(channels=("email",))


def test_locale_shapes() -> None:
    assert canonical_locale("zh-hant-tw") == "zh-Hant-TW"
    assert canonical_locale("es-419") == "es-419"
    assert canonical_locale("de-CH-1996") == "de-CH-1996"
    with pytest.raises(ValueError):
        canonical_locale("en-")
    with pytest.raises(ValueError):
        canonical_locale("en-IN-x-private")


def test_time_zone_links_stay_valid() -> None:
    assert canonical_time_zone("Etc/UTC") == "Etc/UTC"
    assert canonical_time_zone("america/new_york") == "America/New_York"


class TestUpdateMask:
    def test_named_paths(self) -> None:
        assert update_paths("display_name, time_zone", []) == ("display_name", "time_zone")

    def test_camel_case_json_form(self) -> None:
        assert update_paths("displayName,notifications.quietHoursStart", []) == (
            "display_name",
            "notifications.quiet_hours_start",
        )

    def test_notifications_stands_for_all_its_fields(self) -> None:
        assert update_paths("notifications,notifications.channels", []) == (
            "notifications.channels",
            "notifications.quiet_hours_start",
            "notifications.quiet_hours_end",
        )

    def test_empty_mask_means_the_populated_fields(self) -> None:
        assert update_paths("  ", ["locale", "sms_auto_import"]) == ("locale", "sms_auto_import")

    def test_empty_mask_and_empty_profile_is_refused(self) -> None:
        with pytest.raises(InvalidArgument) as error:
            update_paths("", [])
        assert list(violations(error)) == ["update_mask"]

    @pytest.mark.parametrize("path", ["user_id", "email", "create_time", "update_time", "createTime"])
    def test_output_only_paths_are_refused(self, path: str) -> None:
        with pytest.raises(InvalidArgument) as error:
            update_paths(f"display_name,{path}", [])
        found = violations(error)
        assert list(found) == ["update_mask"]
        assert "output-only" in found["update_mask"]

    @pytest.mark.parametrize("path", ["password", "notifications.sms", "display_name.first", "profile"])
    def test_unknown_paths_are_refused(self, path: str) -> None:
        with pytest.raises(InvalidArgument) as error:
            update_paths(path, [])
        found = violations(error)
        assert list(found) == ["update_mask"]
        assert path in found["update_mask"]


class TestRequestedChanges:
    def test_masked_fields_only(self) -> None:
        request = user_pb2.UpdateProfileRequest(
            profile=user_pb2.Profile(display_name="New", time_zone="Asia/Tokyo", locale="ja"),
            update_mask="time_zone",
        )
        assert requested_changes(request) == {"time_zone": "Asia/Tokyo"}

    def test_a_masked_empty_value_is_a_change(self) -> None:
        request = user_pb2.UpdateProfileRequest(update_mask="notifications.channels,sms_auto_import")
        assert requested_changes(request) == {"notifications.channels": [], "sms_auto_import": False}

    def test_empty_mask_takes_populated_fields_and_ignores_output_only(self) -> None:
        request = user_pb2.UpdateProfileRequest(
            profile=user_pb2.Profile(
                user_id="someone-else",
                email="x@y.z",
                locale="fr",
                notifications=user_pb2.NotificationSettings(channels=["push"]),
                sms_auto_import=True,
            )
        )
        assert requested_changes(request) == {
            "locale": "fr",
            "notifications.channels": ["push"],
            "sms_auto_import": True,
        }


def test_proto_and_event_carry_the_profile(profile) -> None:
    message = to_proto(profile)
    assert message.user_id == "u-1"
    assert message.notifications.channels == ["email"]
    assert message.create_time == "2026-01-05T09:30:00.000Z"
    event = profile_updated(profile)
    assert (event.user_id, event.default_currency, event.time_zone) == ("u-1", "INR", "UTC")
    assert (event.first_day_of_week, event.locale) == ("monday", "en")
    assert event.version == profile.version == 1


def test_each_update_is_a_new_version(rules: ProfileRules, profile) -> None:
    once = rules.apply(profile, {"locale": "fr"}, T0)
    twice = rules.apply(once, {"time_zone": "Asia/Tokyo"}, T0)
    assert (profile.version, once.version, twice.version) == (1, 2, 3)
    assert profile_updated(twice).version == 3


def test_sms_senders_are_canonical_upper_case_ids_and_travel_in_the_event(
    rules: ProfileRules, profile
) -> None:
    changes = {"sms_auto_import": True, "sms_allowed_senders": ["hdfcbk", " ICICIT ", "HDFCBK", "hdfc"]}
    updated = rules.apply(profile, changes, T0)
    assert updated.sms_allowed_senders == ("HDFCBK", "ICICIT", "HDFC")
    event = profile_updated(updated)
    assert event.sms_auto_import is True and list(event.sms_allowed_senders) == ["HDFCBK", "ICICIT", "HDFC"]
    assert list(to_proto(updated).sms_allowed_senders) == ["HDFCBK", "ICICIT", "HDFC"]
    request = user_pb2.UpdateProfileRequest(update_mask="sms_allowed_senders")
    assert requested_changes(request) == {"sms_allowed_senders": []}


def test_bad_sms_senders_name_the_item(rules: ProfileRules, profile) -> None:
    with pytest.raises(InvalidArgument) as failure:
        rules.apply(profile, {"sms_allowed_senders": ["HDFCBK", "VM-HDFCBK-S"]}, T0)
    assert "profile.sms_allowed_senders[1]" in violations(failure)
    with pytest.raises(InvalidArgument) as failure:
        rules.apply(profile, {"sms_allowed_senders": [f"S{i:03d}" for i in range(51)]}, T0)
    assert "at most 50" in violations(failure)["profile.sms_allowed_senders"]
