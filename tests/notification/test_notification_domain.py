"""notification's rules in plain Python: statuses only move forward, providers' words
map onto ours, quiet hours (across midnight, in the user's zone), the user's day and
digest time, daily caps, the sources' mappings against the templates they name, and
contact addresses and codes."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from google.protobuf import json_format, struct_pb2
from google.protobuf.message import Message

from expense.events.v1 import events_pb2
from services.kit.domain.errors import InvalidArgument
from services.notification.domain import (
    DELIVERED,
    FAILED,
    QUEUED,
    SENT,
    UNDELIVERED,
    Preferences,
    can_move,
    code_digest,
    code_matches,
    contact_address,
    day_of,
    message_payloads,
    next_digest_time,
    our_status,
    parse_clock,
    plan_of,
    quiet_until,
    time_zone,
    variables_of,
)
from services.notification.settings import ComputedField, NotificationMeshSettings, TemplateMapping
from services.notification.usecases import event_addresses
from services.templating.defaults import load_drafts, templates_dir
from services.templating.domain import babel_locale, bind_variables
from services.templating.rendering import Renderer
from services.templating.settings import TemplatingSettings
from services.templating.usecases import caps_of, sources

SETTINGS = NotificationMeshSettings().notification
TEMPLATES = load_drafts(templates_dir(TemplatingSettings().templates_dir))


def test_a_status_only_moves_forward() -> None:
    assert can_move(QUEUED, SENT) and can_move(QUEUED, DELIVERED) and can_move(SENT, UNDELIVERED)
    assert not can_move(DELIVERED, SENT)  # a late "sent" never overwrites "delivered"
    assert not can_move(SENT, SENT) and not can_move(SENT, QUEUED)
    for final in (DELIVERED, FAILED, UNDELIVERED):
        assert not any(can_move(final, other) for other in (QUEUED, SENT, DELIVERED, FAILED, UNDELIVERED))


def test_providers_words_map_onto_ours() -> None:
    assert [our_status(word) for word in ("queued", "accepted", "sending", "sent", "Delivered", "read")] == [
        QUEUED, QUEUED, SENT, SENT, DELIVERED, DELIVERED,
    ]  # fmt: skip
    assert (our_status("failed"), our_status("undelivered"), our_status("canceled")) == (
        FAILED,
        UNDELIVERED,
        FAILED,
    )
    assert our_status("warming-up") is None


def test_quiet_hours_across_midnight_in_the_users_zone() -> None:
    kolkata = Preferences(quiet_start=time(22), quiet_end=time(7), time_zone="Asia/Kolkata")
    # 17:00 UTC is 22:30 in Kolkata: quiet until 07:00 there, 01:30 UTC the next day.
    assert quiet_until(kolkata, datetime(2026, 12, 7, 17, 0, tzinfo=UTC)) == datetime(
        2026, 12, 8, 1, 30, tzinfo=UTC
    )
    # 00:30 UTC is 06:00 in Kolkata: still quiet, until 01:30 UTC the same day.
    assert quiet_until(kolkata, datetime(2026, 12, 8, 0, 30, tzinfo=UTC)) == datetime(
        2026, 12, 8, 1, 30, tzinfo=UTC
    )
    assert quiet_until(kolkata, datetime(2026, 12, 8, 6, 0, tzinfo=UTC)) is None  # 11:30 there
    daytime = Preferences(quiet_start=time(13), quiet_end=time(14), time_zone="UTC")
    assert quiet_until(daytime, datetime(2026, 12, 7, 13, 59, tzinfo=UTC)) == datetime(
        2026, 12, 7, 14, tzinfo=UTC
    )
    assert quiet_until(daytime, datetime(2026, 12, 7, 14, 0, tzinfo=UTC)) is None
    assert quiet_until(Preferences(), datetime(2026, 12, 7, 3, tzinfo=UTC)) is None


def test_the_users_day_and_digest_time_follow_their_zone() -> None:
    prefs = Preferences(time_zone="Asia/Kolkata", digest_time=time(8))
    start, end = day_of(prefs, datetime(2026, 12, 7, 20, 0, tzinfo=UTC))  # 01:30 on the 8th there
    assert (start, end) == (
        datetime(2026, 12, 7, 18, 30, tzinfo=UTC),
        datetime(2026, 12, 8, 18, 30, tzinfo=UTC),
    )
    assert next_digest_time(prefs, datetime(2026, 12, 7, 1, 0, tzinfo=UTC)) == datetime(
        2026, 12, 7, 2, 30, tzinfo=UTC
    )
    assert next_digest_time(prefs, datetime(2026, 12, 7, 3, 0, tzinfo=UTC)) == datetime(
        2026, 12, 8, 2, 30, tzinfo=UTC
    )


def test_channels_and_caps_of_a_user() -> None:
    prefs = Preferences(rules={"alert.raised": ("sms", "email")}, daily_caps={"sms": 3, "email": 500})
    assert prefs.channels_for("alert.raised", ["in_app"]) == ("in_app", "email", "sms")
    assert prefs.channels_for("user.registered", ["in_app", "email"]) == ("in_app", "email")
    # A source without the inbox (a password reset's mail) stays out of it; a mandatory
    # channel cannot be turned off.
    quiet = Preferences(rules={"auth.password_reset_requested": ()})
    assert quiet.channels_for("auth.password_reset_requested", ["email"], ["email"]) == ("email",)
    assert quiet.channels_for("auth.password_reset_requested", ["email"]) == ()
    assert prefs.cap("sms", {"sms": 10}) == 3  # the user's lower cap
    assert prefs.cap("email", {"email": 50}) == 50  # never above the configured one
    assert prefs.cap("webhook", {}) is None


@pytest.mark.parametrize("alert_type", sorted(SETTINGS.sources["alert.raised"].templates))
def test_each_alert_type_maps_onto_its_templates_declared_variables(alert_type: str) -> None:
    mapping = SETTINGS.sources["alert.raised"].templates[alert_type]
    template = next(draft for draft in TEMPLATES if draft.template.key == mapping.key)
    declared = {spec.name: spec for spec in template.variables}
    details = {path.split(".", 1)[1]: "12.50" for path in _paths(mapping.variables)} | {"currency": "INR"}
    plan = plan_of(
        SETTINGS.sources["alert.raised"], {"type": alert_type, "severity": "", "details": details}, NOW
    )
    assert plan is not None and plan.template == mapping.key and plan.severity == "warning"
    assert set(plan.variables) <= set(declared), "a variable the template does not declare"
    required = {name for name, spec in declared.items() if spec.required}
    assert required <= set(plan.variables), "a variable the template requires is not mapped"
    for name, spec in declared.items():
        if spec.type == "money" and name in plan.variables:
            assert plan.variables[name] == {"amount": "12.50", "currency": "INR"}


def test_an_unmapped_alert_type_makes_no_message_and_severity_comes_from_the_event() -> None:
    source = SETTINGS.sources["alert.raised"]
    assert plan_of(source, {"type": "horoscope", "details": {}}, NOW) is None
    plan = plan_of(source, {"type": "bill_overdue", "severity": "critical", "details": {"payee": "X"}}, NOW)
    assert plan is not None and plan.critical


def test_an_empty_name_still_makes_a_message_and_money_needs_an_amount() -> None:
    source = SETTINGS.sources["alert.raised"]
    details = {"merchant": "Croma", "category": "", "amount": "150000.00", "typical": "", "currency": "INR"}
    plan = plan_of(source, {"type": "large_expense", "severity": "info", "details": details}, NOW)
    assert plan is not None and plan.variables == {
        "merchant": "Croma",
        "category": "",
        "amount": {"amount": "150000.00", "currency": "INR"},
    }


def test_a_signup_maps_onto_the_welcome() -> None:
    plan = plan_of(
        SETTINGS.sources["user.registered"], {"user_id": "u", "email": "a@b.c", "display_name": "Asha"}, NOW
    )
    assert plan is not None and (plan.template, plan.variables) == ("user.welcome", {"name": "Asha"})


def test_contact_addresses_in_canonical_form_or_refused() -> None:
    assert contact_address("email", " Asha@Example.ORG ") == "Asha@example.org"
    assert contact_address("sms", "+91 98765-43210") == "+919876543210"
    assert contact_address("webhook", "https://hooks.example.com/x") == "https://hooks.example.com/x"
    for channel, address in [
        ("email", "no-at-sign"),
        ("sms", "9876543210"),
        ("whatsapp", "+0123"),
        ("webhook", ""),
    ]:
        with pytest.raises(InvalidArgument) as refused:
            contact_address(channel, address)
        assert refused.value.violations[0].field == "address"
    with pytest.raises(InvalidArgument):
        contact_address("pigeon", "roof")


def test_codes_are_stored_as_keyed_digests() -> None:
    digest = code_digest("contact-1", "482913")
    assert "482913" not in digest and code_matches("contact-1", " 482913 ", digest)
    assert not code_matches("contact-1", "482914", digest)
    assert not code_matches("contact-2", "482913", digest)  # keyed by the contact point


def test_clocks_and_zones_are_checked() -> None:
    assert parse_clock("07:05", "start") == time(7, 5)
    for bad in ("7:05", "24:00", "12:60", "noon"):
        with pytest.raises(InvalidArgument):
            parse_clock(bad, "start")
    assert time_zone("Asia/Kolkata") == "Asia/Kolkata"
    with pytest.raises(InvalidArgument):
        time_zone("Mars/Olympus")


def _paths(variables: dict[str, object]) -> list[str]:
    paths: list[str] = []
    for path in variables.values():
        paths += [path] if isinstance(path, str) else [path.amount, path.currency]  # type: ignore[attr-defined]
    return paths


NOW = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)
SECURITY_KINDS = {
    events_pb2.SecurityEvent.KIND_NEW_DEVICE_SIGN_IN: "auth.new_device",
    events_pb2.SecurityEvent.KIND_PASSWORD_CHANGED: "auth.password_changed",
    events_pb2.SecurityEvent.KIND_ALL_SESSIONS_REVOKED: "auth.sessions_revoked",
}


def _auth_events() -> list[tuple[str, Message, str]]:
    """Auth's events as auth fills them, and the template each must reach."""
    expire = (NOW + timedelta(minutes=30)).isoformat()
    events: list[tuple[str, Message, str]] = [
        (
            "auth.password_reset_requested",
            events_pb2.PasswordResetRequested(
                user_id="u1", email="asha@example.org", display_name="Asha", token="tok",
                reset_url="https://app.example.com/reset?token=tok", expire_time=expire,
            ),
            "auth.password_reset",
        ),
        (
            "auth.email_verification_requested",
            events_pb2.EmailVerificationRequested(
                user_id="u1", email="asha@example.org", display_name="Asha", token="tok",
                verify_url="https://app.example.com/verify?token=tok",
                expire_time=(NOW + timedelta(hours=24)).isoformat(),
            ),
            "user.verify_email",
        ),
    ]  # fmt: skip
    for kind, key in SECURITY_KINDS.items():
        event = events_pb2.SecurityEvent(
            user_id="u1", email="asha@example.org", kind=kind, occur_time=NOW.isoformat(),
            user_agent="Firefox on Linux", ip_address="203.0.113.9", cause="reset", revoked_sessions=2,
        )  # fmt: skip
        events.append(("auth.security_event", event, key))
    return events


@pytest.mark.parametrize(("source", "event", "key"), _auth_events(), ids=lambda v: getattr(v, "__name__", ""))
def test_auth_events_render_through_each_channel_of_their_template(
    source: str, event: Message, key: str
) -> None:
    """The mapped variables, as they cross the wire (a Struct), are exactly what
    templating's Render binds: none missing, none extra, on every channel."""
    settings = SETTINGS.sources[source]
    payload = json_format.MessageToDict(event, preserving_proto_field_name=True)
    plan = plan_of(settings, payload, NOW)
    assert plan is not None and plan.template == key and plan.critical
    assert "email" in settings.mandatory_channels and event_addresses(settings.address_fields, payload) == {
        "email": "asha@example.org"
    }
    wire = struct_pb2.Struct()
    wire.update(plan.variables)
    variables = json_format.MessageToDict(wire)
    renderer = Renderer(caps_of(TemplatingSettings()))
    drafts = [draft for draft in TEMPLATES if draft.template.key == key]
    assert {draft.template.channel for draft in drafts} >= {"email", "in_app"}
    for draft in drafts:
        values = bind_variables(draft.variables, variables, key)
        _subject, body, *_ = renderer.render(sources(draft), values, babel_locale("en"))
        assert body.strip(), draft.template
    email = next(draft for draft in drafts if draft.template.channel == "email")
    text = "".join(
        renderer.render(sources(email), bind_variables(email.variables, variables, key), babel_locale("en"))
    )
    if key == "auth.password_reset":
        assert "https://app.example.com/reset?token=tok" in text and "30 minutes" in text
    if key == "user.verify_email":
        assert "Hi Asha" in text and "24 hours" in text
    if key == "auth.sessions_revoked":
        assert "2" in text


def test_computed_variables_count_from_the_intake_and_refuse_bad_times() -> None:
    mapping = TemplateMapping(
        key="k",
        variables={
            "minutes": ComputedField(minutes_until="expire"),
            "hours": ComputedField(hours_until="expire"),
            "month": ComputedField(month_start="month"),
        },
    )
    later = (NOW + timedelta(minutes=29, seconds=59)).isoformat()
    assert variables_of(mapping, {"expire": later, "month": "2026-11"}, NOW) == {
        "minutes": 30,
        "hours": 0,
        "month": "2026-11-01",
    }
    past = (NOW - timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
    assert variables_of(mapping, {"expire": past}, NOW) == {"minutes": 0, "hours": 0}
    assert variables_of(mapping, {"expire": "tomorrow", "month": "2026-13"}, NOW) == {}
    assert variables_of(mapping, {"expire": "2026-12-07T02:00:00"}, NOW) == {}  # no zone: refused
    with pytest.raises(ValueError):
        ComputedField(minutes_until="a", hours_until="b")
    with pytest.raises(ValueError):
        ComputedField()


def test_a_monthly_report_makes_one_message_per_currency_that_renders() -> None:
    source = SETTINGS.sources["report.monthly_ready"]
    event = events_pb2.MonthlyReportReady(
        user_id="u1",
        month="2026-11",
        time_zone="Asia/Kolkata",
        currencies=[
            events_pb2.MonthlyCurrencySummary(
                currency="INR", total="48250.75", previous_total="55143.00", change_percent="-12.50",
                top_categories=[
                    events_pb2.MonthlyCategoryAmount(category_id="c1", name="Rent", amount="20000.00"),
                    events_pb2.MonthlyCategoryAmount(category_id="c2", name="Groceries", amount="15200.00"),
                ],
            ),
            events_pb2.MonthlyCurrencySummary(currency="EUR", total="120.00"),  # nothing the month before
        ],
    )  # fmt: skip
    payload = json_format.MessageToDict(event, preserving_proto_field_name=True)
    scope = {"recipient": {"name": "Asha"}, **payload}
    plans = [plan_of(source, message, NOW) for message in message_payloads(source, scope)]
    assert [plan.variables if plan else None for plan in plans] == [
        {
            "name": "Asha",
            "month": "2026-11-01",
            "total": {"amount": "48250.75", "currency": "INR"},
            "change_percent": "-12.50",
            "top_categories": [
                {"name": "Rent", "amount": {"amount": "20000.00", "currency": "INR"}},
                {"name": "Groceries", "amount": {"amount": "15200.00", "currency": "INR"}},
            ],
        },
        {
            "name": "Asha",
            "month": "2026-11-01",
            "total": {"amount": "120.00", "currency": "EUR"},
            "top_categories": [],
        },
    ]
    renderer = Renderer(caps_of(TemplatingSettings()))
    drafts = [draft for draft in TEMPLATES if draft.template.key == "report.monthly"]
    for plan in plans:
        assert plan is not None
        for draft in drafts:
            values = bind_variables(draft.variables, plan.variables, "report.monthly")
            rendered = "".join(renderer.render(sources(draft), values, babel_locale("en")))
            assert any(month in rendered for month in ("Nov 2026", "November 2026", '"2026-11-01"'))
    email = next(draft for draft in drafts if draft.template.channel == "email")
    first = renderer.render(
        sources(email), bind_variables(email.variables, plans[0].variables, "k"), babel_locale("en")
    )
    assert "Hi Asha" in first[1] and "-12.5%" in first[1] and "Rent: ₹20,000.00" in first[1]
    assert message_payloads(source, {"currencies": []}) == []  # a month without spending: no message
