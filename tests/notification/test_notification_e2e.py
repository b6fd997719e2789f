"""The notification story through Envoy on one mesh (PostgreSQL, the machine's NATS,
the providers' fakes): a signup brings a welcome in-app and by email; a member verifies
an SMS and a WhatsApp number with the codes those providers carried, chooses channels,
and a budget alert then arrives once per channel, each delivery reaching `delivered`
(in-app at once, SMS and WhatsApp through their signed callbacks; a forged callback is a
401 that changes nothing). Quiet hours hold an email back, which goes once they end.
A redelivered alert event makes no second message."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import httpx
import nats
import pytest
from sqlalchemy import update

from expense.events.v1 import events_pb2
from expense.notification.v1 import notification_pb2, notification_pb2_grpc
from services.kit.config.settings import REPO_ROOT
from services.kit.db.engine import Database
from services.kit.events.bus import make_envelope, stream_name, subject_for
from services.notification import storage
from tests.fakes.graph import FakeGraphApi
from tests.fakes.smtp import FakeSmtpServer
from tests.fakes.twilio import FakeTwilio
from tests.fakes.webhook_receiver import FakeWebhookReceiver
from tests.infra import fresh_postgres_database, require
from tests.mesh import Mesh, forget_run
from tests.notification.harness import (
    META_VERIFY_TOKEN,
    VERIFY_SUBJECT,
    Fakes,
    Member,
    eventually,
    mails_to,
    notices_to,
    notification_mesh,
    sign_up,
    verify_number,
)
from tests.service_identity import operator_bearer

pytestmark = pytest.mark.e2e
ALERT_CHANNELS = ["in_app", "email", "sms", "whatsapp"]


@pytest.fixture(scope="module")
async def fakes() -> AsyncIterator[Fakes]:
    async with FakeSmtpServer() as smtp, FakeTwilio() as twilio, FakeGraphApi() as graph:
        yield Fakes(smtp, twilio, graph)


@pytest.fixture(scope="module")
async def mesh(fakes: Fakes, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Mesh]:
    require("NATS", "127.0.0.1", 4222)
    require("Redis", "127.0.0.1", 6379)
    with fresh_postgres_database() as database_url:
        mesh = notification_mesh(tmp_path_factory.mktemp("notification"), database_url, fakes)
        try:
            # In a thread: the fakes answer on this loop while the mesh starts.
            await asyncio.to_thread(mesh.start)
            yield mesh
        finally:
            await asyncio.to_thread(mesh.stop)
            await asyncio.to_thread(forget_run, mesh)


@pytest.fixture
async def client(mesh: Mesh) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=mesh.base_url, timeout=15, trust_env=False) as http:
        yield http


@pytest.fixture
async def database(mesh: Mesh) -> AsyncIterator[Database]:
    db = Database(mesh.env["DATABASE_URL"], schema="notification")
    yield db
    await db.dispose()


def deliveries_by_channel(notification: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {delivery["channel"]: delivery for delivery in notification["deliveries"]}


async def member_on_every_channel(client: httpx.AsyncClient, fakes: Fakes) -> Member:
    """A member with verified numbers of their own (member.phone) and every channel chosen."""
    member = await sign_up(client)
    # The account's address becomes the email contact point once its signup event is applied.
    await eventually(
        lambda: member.ok("GET", "/v1/contactPoints"),
        lambda seen: any(c["channel"] == "email" for c in seen["contact_points"]),
    )
    member.phone = f"+9198{secrets.randbelow(10**8):08d}"
    await verify_number(member, fakes, "sms", member.phone)
    await verify_number(member, fakes, "whatsapp", member.phone)
    rules = [{"source": "alert.raised", "channels": ALERT_CHANNELS}]
    await member.ok(
        "PATCH", "/v1/notificationPreferences", params={"update_mask": "rules"}, json={"rules": rules}
    )
    return member


async def test_a_signup_is_welcomed_in_app_and_by_email(client: httpx.AsyncClient, fakes: Fakes) -> None:
    member = await sign_up(client)
    welcome = await eventually(
        lambda: member.notification_of("user.registered"), lambda seen: seen is not None
    )
    assert "Asha" in welcome["title"] and welcome["read_time"] == ""
    mails = await eventually(
        lambda: asyncio.sleep(0, notices_to(fakes, member.email)),
        lambda seen: len(seen) == 1,
    )
    assert "Welcome" in mails[0].message["Subject"] and mails[0].over_tls
    listed = await member.notifications()
    assert listed["unread_count"] == 1
    contacts = await member.ok("GET", "/v1/contactPoints")
    assert [(c["channel"], c["address"], c["verified"]) for c in contacts["contact_points"]] == [
        ("email", member.email, True)
    ]


async def test_in_app_is_shown_on_intake_and_only_other_channels_take_the_work_queue(
    client: httpx.AsyncClient, database: Database
) -> None:
    member = await sign_up(client)
    welcome = await eventually(
        lambda: member.notification_of("user.registered"), lambda seen: seen is not None
    )
    deliveries = await eventually(
        lambda: _stored_deliveries(database, welcome["notification_id"]),
        lambda seen: {d.channel: d.status for d in seen} == {"in_app": "delivered", "email": "sent"},
    )
    queued = {d.channel: d.enqueued_at is not None for d in deliveries}
    assert queued == {"in_app": False, "email": True}


async def _stored_deliveries(database: Database, notification_id: str) -> list[storage.DeliveryRow]:
    async with database.read() as connection:
        return await storage.deliveries_of(connection, notification_id)


def link_token(text: str, path: str) -> str:
    """The token of the link to `path` a mail carries (auth's [auth] *_url)."""
    found = re.search(rf"https://app\.example\.com/{path}\?token=([^\s&]+)", text)
    assert found, text
    return found[1]


async def test_the_signup_mails_a_verification_link_that_verifies_the_address(
    client: httpx.AsyncClient, fakes: Fakes
) -> None:
    member = await sign_up(client)
    mails = await eventually(
        lambda: asyncio.sleep(0, mails_to(fakes, member.email, VERIFY_SUBJECT)), lambda seen: len(seen) == 1
    )
    text = mails[0].message.get_content()
    assert "Hi Asha" in text and "48 hours" in text  # [auth] email_verification_ttl_hours
    token = link_token(text, "verify-email")
    verified = await client.post("/v1/auth/email:verify", json={"token": token})
    assert verified.status_code == 200 and verified.json()["email"] == member.email, verified.text
    assert (await client.post("/v1/auth/email:verify", json={"token": token})).status_code == 400  # once
    assert await member.notification_of("auth.email_verification_requested") is None  # email only


async def test_a_password_reset_mails_a_working_token_and_the_change_is_told_whatever_the_preferences(
    client: httpx.AsyncClient, fakes: Fakes
) -> None:
    """Security messages are critical and their email mandatory: no contact point, quiet
    hours, the digest or a rule leaving email out holds them back."""
    member = await sign_up(client)
    contacts = await eventually(
        lambda: member.ok("GET", "/v1/contactPoints"),
        lambda seen: any(c["channel"] == "email" for c in seen["contact_points"]),
    )
    for contact in contacts["contact_points"]:
        await member.ok("DELETE", f"/v1/contactPoints/{contact['contact_point_id']}")
    now = datetime.now(UTC)
    quiet = {
        "start": (now - timedelta(hours=1)).strftime("%H:%M"),
        "end": (now + timedelta(hours=2)).strftime("%H:%M"),
    }
    await member.ok(
        "PATCH",
        "/v1/notificationPreferences",
        params={"update_mask": "rules,quiet_hours,digest"},
        json={
            "rules": [{"source": "auth.security_event", "channels": ["in_app"]}],
            "quiet_hours": quiet,
            "digest": True,
        },
    )

    requested = await client.post("/v1/auth/password:reset-request", json={"email": member.email})
    assert requested.status_code == 200, requested.text
    mails = await eventually(
        lambda: asyncio.sleep(0, mails_to(fakes, member.email, "Reset your password")),
        lambda seen: len(seen) == 1,
    )
    text = mails[0].message.get_content()
    assert "30 minutes" in text  # [auth] password_reset_ttl_minutes, from the event's expire_time
    token = link_token(text, "reset-password")
    new_password = "amber-lantern-quiet-77-river"
    reset = await client.post("/v1/auth/password:reset", json={"token": token, "new_password": new_password})
    assert reset.status_code == 200 and reset.json()["revoked_sessions"] == 1, reset.text
    again = await client.post("/v1/auth/password:reset", json={"token": token, "new_password": new_password})
    assert again.status_code == 400  # single use
    login = await client.post("/v1/auth/login", json={"email": member.email, "password": new_password})
    assert login.status_code == 200, login.text

    changed = await eventually(
        lambda: asyncio.sleep(0, mails_to(fakes, member.email, "Your password was changed")),
        lambda seen: len(seen) == 1,
    )
    assert changed[0].over_tls
    member = Member(client, login.json(), member.email)
    notice = await eventually(
        lambda: member.notification_of("auth.security_event"), lambda seen: seen is not None
    )
    assert notice["severity"] == "critical" and "password" in notice["title"].lower()
    email = deliveries_by_channel(await member.ok("GET", f"/v1/notifications/{notice['notification_id']}"))[
        "email"
    ]
    assert email["status"] == "sent" and not email["in_digest"] and email["deferred_until"] == ""
    # The reset itself leaves no inbox entry: its link is for the mailbox alone.
    assert await member.notification_of("auth.password_reset_requested") is None


async def test_a_budget_alert_arrives_once_per_channel_and_is_delivered(
    client: httpx.AsyncClient, fakes: Fakes, mesh: Mesh
) -> None:
    member = await member_on_every_channel(client, fakes)
    await member.spend_past_a_budget()
    alert = await eventually(lambda: member.notification_of("alert.raised"), lambda seen: seen is not None)
    assert "Food" in alert["title"] and "101" in alert["body"] and alert["severity"] == "warning"

    path = f"/v1/notifications/{alert['notification_id']}"
    sent = await eventually(
        lambda: member.ok("GET", path),
        lambda seen: (
            {d["channel"]: d["status"] for d in seen["deliveries"]}
            == {"in_app": "delivered", "email": "sent", "sms": "sent", "whatsapp": "sent"}
        ),
    )
    deliveries = deliveries_by_channel(sent)
    assert {d["template"] for d in deliveries.values()} == {"budget.threshold@1"}
    assert all(d["attempts"] == 1 and d["error"] == "" for d in deliveries.values())

    sms = fakes.twilio.message(deliveries["sms"]["provider_message_id"])
    whatsapp = fakes.graph.message(deliveries["whatsapp"]["provider_message_id"])
    assert "Food" in sms.body and sms.to == member.phone
    assert whatsapp.payload["type"] == "template"
    assert whatsapp.payload["template"]["name"] == "budget_threshold_alert"

    # A forged receipt: 401, nothing moves.
    forged = await fakes.twilio.send_status_callback(sms.sid, "delivered", signing_token="not-the-token")
    assert forged.status_code == 401, forged.text
    meta_url = f"{mesh.base_url}/v1/notificationCallbacks/meta"
    forged_meta = await fakes.graph.post_webhook(
        meta_url, fakes.graph.status_payload(whatsapp.wamid, "delivered"), signing_secret="wrong"
    )
    assert forged_meta.status_code == 401, forged_meta.text
    unchanged = deliveries_by_channel(await member.ok("GET", path))
    assert unchanged["sms"]["status"] == unchanged["whatsapp"]["status"] == "sent"

    # Signed receipts: delivered; a late "sent" after it changes nothing.
    answer = await fakes.twilio.send_status_callback(sms.sid, "delivered")
    assert answer.status_code == 200 and answer.json()["updated"] == 1, answer.text
    answer = await fakes.graph.post_webhook(meta_url, fakes.graph.status_payload(whatsapp.wamid, "delivered"))
    assert answer.status_code == 200 and answer.json()["updated"] == 1, answer.text
    late = await fakes.twilio.send_status_callback(sms.sid, "sent")
    assert late.status_code == 200 and late.json()["updated"] == 0
    done = deliveries_by_channel(await member.ok("GET", path))
    assert (done["sms"]["status"], done["whatsapp"]["status"]) == ("delivered", "delivered")

    # One message per channel for the one alert.
    assert len([m for m in fakes.twilio.messages if m.to == member.phone]) == 2  # the code, the alert
    assert len(notices_to(fakes, member.email)) == 2  # welcome, alert

    # Read state: the alert and the welcome are unread until marked.
    assert (await member.notifications())["unread_count"] == 2
    read = await member.ok("POST", f"{path}:read", json={})
    assert read["read_time"] != ""
    unread = await member.notifications(unread_only=True)
    assert [n["source"] for n in unread["notifications"]] == ["user.registered"]
    assert unread["unread_count"] == 1
    marked = await member.ok("POST", "/v1/notifications:read-all", json={})
    assert marked["marked_count"] == 1
    assert (await member.notifications())["unread_count"] == 0

    # Counted by channel and status.
    async with httpx.AsyncClient(trust_env=False) as scraper:
        scraped = (await scraper.get(mesh.metrics_url("notification"))).text
    assert 'em_notification_deliveries_total{channel="sms",status="delivered"}' in scraped
    assert "em_notification_dead_letters " in scraped

    # Another member sees none of it.
    other = await sign_up(client)
    assert (await other.call("GET", path)).status_code == 404


async def test_a_webhook_endpoint_gets_its_secret_once_and_signed_alerts(client: httpx.AsyncClient) -> None:
    member = await sign_up(client)
    async with FakeWebhookReceiver(secret="unknown-yet") as receiver:
        created = await member.ok(
            "POST", "/v1/contactPoints", json={"channel": "webhook", "address": receiver.url}
        )
        secret = created["webhook_secret"]
        assert secret.startswith("whsec_") and created["contact_point"]["verified"] is True
        listed = await member.ok("GET", "/v1/contactPoints")
        assert secret not in json.dumps(listed)  # shown once
        receiver.secret = secret
        rules = [{"source": "alert.raised", "channels": ["in_app", "webhook"]}]
        await member.ok(
            "PATCH", "/v1/notificationPreferences", params={"update_mask": "rules"}, json={"rules": rules}
        )
        await member.spend_past_a_budget()
        alert = await eventually(
            lambda: member.notification_of("alert.raised"), lambda seen: seen is not None
        )
        path = f"/v1/notifications/{alert['notification_id']}"
        done = await eventually(
            lambda: member.ok("GET", path),
            lambda seen: deliveries_by_channel(seen).get("webhook", {}).get("status") == "delivered",
        )
        (received,) = receiver.received
    assert received.verified, received.headers
    assert received.webhook_id == deliveries_by_channel(done)["webhook"]["provider_message_id"]
    assert "Food" in received.body.decode() and "budget.threshold" in received.body.decode()


async def test_metas_subscription_handshake_answers_our_verify_token_only(mesh: Mesh) -> None:
    # Meta's subscription handshake: the challenge back for our verify token only.
    handshake = {
        "hub.mode": "subscribe",
        "hub.challenge": "1158201444",
        "hub.verify_token": META_VERIFY_TOKEN,
    }
    async with httpx.AsyncClient(base_url=mesh.base_url, trust_env=False) as meta:
        answered = await meta.get("/v1/notificationCallbacks/meta", params=handshake)
        assert (answered.status_code, answered.text) == (200, "1158201444"), answered.text
        refused = await meta.get(
            "/v1/notificationCallbacks/meta", params={**handshake, "hub.verify_token": "x"}
        )
        assert refused.status_code == 403, refused.text


async def test_a_redelivered_alert_event_makes_no_second_message(
    client: httpx.AsyncClient, fakes: Fakes, mesh: Mesh, database: Database
) -> None:
    member = await member_on_every_channel(client, fakes)
    await member.spend_past_a_budget()
    alert = await eventually(lambda: member.notification_of("alert.raised"), lambda seen: seen is not None)
    path = f"/v1/notifications/{alert['notification_id']}"
    await eventually(
        lambda: member.ok("GET", path), lambda seen: all(d["status"] != "queued" for d in seen["deliveries"])
    )
    # The alert event again, as a redelivery would bring it (past JetStream's dedupe).
    connection = await nats.connect(mesh.nats_url_as())
    try:
        js = connection.jetstream()
        subject = subject_for(mesh.event_prefix, "alert.raised")
        last = await js.get_last_msg(stream_name(mesh.event_prefix), subject)
        await js.publish(subject, last.data, headers={"Nats-Msg-Id": f"again-{last.seq}"})
    finally:
        await connection.close()
    await asyncio.sleep(2.0)
    texts = [m for m in fakes.twilio.messages if m.to == member.phone]
    assert len(texts) == 2  # the code and the alert, once
    deliveries = deliveries_by_channel(await member.ok("GET", path))
    assert sorted(deliveries) == sorted(ALERT_CHANNELS)
    assert all(d["attempts"] == 1 for d in deliveries.values())


async def test_a_monthly_report_mails_one_summary_per_currency_greeting_by_the_signups_name(
    client: httpx.AsyncClient, fakes: Fakes, mesh: Mesh
) -> None:
    member = await sign_up(client)
    await eventually(
        lambda: member.ok("GET", "/v1/contactPoints"),
        lambda seen: any(c["channel"] == "email" for c in seen["contact_points"]),
    )  # the signup applied: its email and name are known
    report = events_pb2.MonthlyReportReady(
        user_id=member.user_id,
        month="2026-11",
        time_zone="UTC",
        currencies=[
            events_pb2.MonthlyCurrencySummary(
                currency="INR", total="48250.75", previous_total="55143.00", change_percent="-12.50",
                top_categories=[
                    events_pb2.MonthlyCategoryAmount(category_id="c", name="Rent", amount="20000.00")
                ],
            ),
            events_pb2.MonthlyCurrencySummary(currency="EUR", total="120.00"),
        ],
    )  # fmt: skip
    # As reporting's outbox publishes it (this mesh runs no reporting).
    envelope = make_envelope("report.monthly_ready", member.user_id, report, "reporting")
    connection = await nats.connect(mesh.nats_url_as())
    try:
        subject = subject_for(mesh.event_prefix, "report.monthly_ready")
        await connection.jetstream().publish(
            subject, envelope.SerializeToString(), headers={"Nats-Msg-Id": envelope.event_id}
        )
    finally:
        await connection.close()
    mails = await eventually(
        lambda: asyncio.sleep(0, mails_to(fakes, member.email, "November 2026 in numbers")),
        lambda seen: len(seen) == 2,
    )
    texts = sorted(m.message.get_content() for m in mails)
    assert all(text.startswith("Hi Asha") for text in texts)
    assert "€120.00" in texts[0] and "against the month before" not in texts[0]
    assert "₹48,250.75, -12.5% against the month before" in texts[1] and "Rent: ₹20,000.00" in texts[1]
    listed = await member.notifications(page_size=50)
    assert len([n for n in listed["notifications"] if n["source"] == "report.monthly_ready"]) == 2


async def test_quiet_hours_hold_an_email_back_until_they_end(
    client: httpx.AsyncClient, fakes: Fakes, database: Database
) -> None:
    member = await sign_up(client)
    await eventually(
        lambda: asyncio.sleep(0, notices_to(fakes, member.email)),
        lambda seen: len(seen) == 1,
    )  # the welcome, before the quiet hours
    now = datetime.now(UTC)
    quiet = {
        "start": (now - timedelta(hours=1)).strftime("%H:%M"),
        "end": (now + timedelta(hours=2)).strftime("%H:%M"),
    }
    await member.ok(
        "PATCH",
        "/v1/notificationPreferences",
        params={"update_mask": "quiet_hours"},
        json={"quiet_hours": quiet},
    )
    await member.spend_past_a_budget()
    alert = await eventually(lambda: member.notification_of("alert.raised"), lambda seen: seen is not None)
    path = f"/v1/notifications/{alert['notification_id']}"
    held = await eventually(
        lambda: member.ok("GET", path),
        lambda seen: deliveries_by_channel(seen).get("email", {}).get("deferred_until", "") != "",
    )
    email = deliveries_by_channel(held)["email"]
    assert email["status"] == "queued" and email["error"] == "deferred: quiet hours"
    assert email["deferred_until"].startswith((now + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M"))
    assert deliveries_by_channel(held)["in_app"]["status"] == "delivered"  # in-app disturbs nobody
    assert len(notices_to(fakes, member.email)) == 1  # the welcome

    # The quiet hours end (the clock moved on: the deferral is due now).
    async with database.transaction() as session:
        await session.execute(
            update(storage.deliveries)
            .where(storage.deliveries.c.notification_id == alert["notification_id"])
            .where(storage.deliveries.c.channel == "email")
            .values(deferred_until=datetime.now(UTC) - timedelta(seconds=1))
        )
    await member.ok(
        "PATCH",
        "/v1/notificationPreferences",
        params={"update_mask": "quiet_hours"},
        json={"quiet_hours": {}},
    )
    sent = await eventually(
        lambda: member.ok("GET", path), lambda seen: deliveries_by_channel(seen)["email"]["status"] == "sent"
    )
    assert deliveries_by_channel(sent)["email"]["attempts"] == 1
    mails = notices_to(fakes, member.email)
    assert len(mails) == 2 and "Food" in mails[1].message["Subject"]


async def test_digest_mode_collects_low_severity_items_into_one_daily_message(
    client: httpx.AsyncClient, fakes: Fakes, database: Database
) -> None:
    member = await sign_up(client)
    await eventually(
        lambda: asyncio.sleep(0, notices_to(fakes, member.email)),
        lambda seen: len(seen) == 1,
    )  # the welcome, before the digest mode
    await member.ok(
        "PATCH",
        "/v1/notificationPreferences",
        params={"update_mask": "digest,digest_time"},
        json={"digest": True, "digest_time": "08:00"},
    )
    await member.spend_large("150000.00", "Croma")  # large_expense: severity info
    await member.spend_large("160000.00", "Tanishq")
    large = await eventually(
        lambda: member.notifications(page_size=50),
        lambda seen: len([n for n in seen["notifications"] if n["source"] == "alert.raised"]) == 2,
    )
    alerts = [n for n in large["notifications"] if n["source"] == "alert.raised"]
    for alert in alerts:
        held = deliveries_by_channel(await member.ok("GET", f"/v1/notifications/{alert['notification_id']}"))
        assert held["in_app"]["status"] == "delivered"  # the inbox has it at once
        assert held["email"]["in_digest"] and held["email"]["status"] == "queued"
        assert held["email"]["deferred_until"].endswith("T08:00:00.000Z")

    # Digest time (the clock moved on): one email carries both.
    async with database.transaction() as session:
        await session.execute(
            update(storage.deliveries)
            .where(storage.deliveries.c.user_id == member.user_id, storage.deliveries.c.in_digest.is_(True))
            .values(deferred_until=datetime.now(UTC) - timedelta(seconds=1))
        )
    mails = await eventually(
        lambda: asyncio.sleep(0, notices_to(fakes, member.email)),
        lambda seen: len(seen) == 2,
    )
    digest = mails[1].message
    assert "2 updates" in digest["Subject"]
    text = digest.get_content()
    assert "Croma" in text and "Tanishq" in text
    for alert in alerts:
        sent = deliveries_by_channel(await member.ok("GET", f"/v1/notifications/{alert['notification_id']}"))
        assert sent["email"]["status"] == "sent"
        assert sent["email"]["provider_message_id"] == digest["Message-ID"]
    await asyncio.sleep(1.0)
    assert len(notices_to(fakes, member.email)) == 2


async def test_bad_requests_name_their_fields(client: httpx.AsyncClient, fakes: Fakes) -> None:
    member = await sign_up(client)
    cases: list[tuple[str, str, dict[str, Any], str]] = [
        ("GET", "/v1/notifications?page_token=zzz", {}, "page_token"),
        ("GET", "/v1/notifications/not-an-id", {}, "notification_id"),
        ("POST", "/v1/contactPoints", {"json": {"channel": "sms", "address": "12345"}}, "address"),
        ("POST", "/v1/contactPoints", {"json": {"channel": "pigeon", "address": "x"}}, "channel"),
        (
            "PATCH",
            "/v1/notificationPreferences?update_mask=quiet_hours",
            {"json": {"quiet_hours": {"start": "25:00", "end": "07:00"}}},
            "preferences.quiet_hours.start",
        ),
        (
            "PATCH",
            "/v1/notificationPreferences?update_mask=rules",
            {"json": {"rules": [{"source": "alert.raised", "channels": ["fax"]}]}},
            "preferences.rules[0].channels",
        ),
    ]
    number = f"+9197{secrets.randbelow(10**8):08d}"
    created = await member.ok("POST", "/v1/contactPoints", json={"channel": "sms", "address": number})
    contact_id = created["contact_point"]["contact_point_id"]
    cases.append(("POST", f"/v1/contactPoints/{contact_id}:verify", {"json": {"code": "12ab"}}, "code"))
    sent_code = next(m.body for m in reversed(fakes.twilio.messages) if m.to == number)
    wrong = "000000" if "000000" not in sent_code else "111111"
    cases.append(("POST", f"/v1/contactPoints/{contact_id}:verify", {"json": {"code": wrong}}, "code"))
    for method, path, kwargs, field in cases:
        response = await member.call(method, path, **kwargs)
        assert response.status_code == 400, f"{method} {path}: {response.status_code} {response.text}"
        body = json.dumps(response.json())
        assert field in body, body
    listed = await member.ok("GET", "/v1/contactPoints")
    assert [c["verified"] for c in listed["contact_points"] if c["address"] == number] == [False]
    # Only the providers' callbacks take a body that is not JSON.
    form = await member.client.post(
        "/v1/contactPoints",
        content=b"channel=sms&address=%2B919800000000",
        headers={**member.headers, "content-type": "application/x-www-form-urlencoded"},
    )
    assert form.status_code == 415, form.text


async def test_a_provider_outage_waits_then_dead_letters_and_an_operator_replays(
    client: httpx.AsyncClient, fakes: Fakes, mesh: Mesh
) -> None:
    member = await member_on_every_channel(client, fakes)
    log_start = len(mesh.output)
    fakes.twilio.outage(500)
    try:
        await member.spend_past_a_budget()
        alert = await eventually(
            lambda: member.notification_of("alert.raised"), lambda seen: seen is not None
        )
        path = f"/v1/notifications/{alert['notification_id']}"
        # Every try fails: the breaker opens, the job waits, and past max_deliver it is a dead letter.
        dead = await eventually(
            lambda: member.ok("GET", path),
            lambda seen: deliveries_by_channel(seen)["sms"]["dead_lettered"],
            within=60,
        )
    finally:
        fakes.twilio.recover()
    sms = deliveries_by_channel(dead)["sms"]
    assert sms["status"] == "queued" and sms["attempts"] >= 2 and "failed 8 times" in sms["error"]
    assert deliveries_by_channel(dead)["email"]["status"] == "sent"  # the other channels went on
    opened = [
        line
        for line in mesh.output[log_start:]
        if "circuit breaker opened" in line and "provider-sms" in line
    ]
    assert opened, "the SMS provider's breaker never opened"

    # An operator lists and inspects it over gRPC (a user's token is refused) and with the command.
    channel = grpc.aio.insecure_channel(mesh.address("notification"))
    stub = notification_pb2_grpc.NotificationInternalServiceStub(channel)
    try:
        operator = operator_bearer(mesh.data_dir)
        listed = await stub.ListDeadLetters(notification_pb2.ListDeadLettersRequest(), metadata=operator)
        letter = next(d for d in listed.dead_letters if d.channel == "sms" and d.attempts == 8)
        assert listed.total >= 1 and "failed 8 times" in letter.reason
        shown = await stub.GetDeadLetter(
            notification_pb2.GetDeadLetterRequest(sequence=letter.sequence), metadata=operator
        )
        assert shown.delivery_id == letter.delivery_id
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.ListDeadLetters(
                notification_pb2.ListDeadLettersRequest(), metadata=tuple(member.headers.items())
            )
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        command = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "services.notification", "dlq", "show", str(letter.sequence)],
            env=mesh.env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert command.returncode == 0, command.stderr
        assert letter.delivery_id in command.stdout and "failed 8 times" in command.stdout

        # Replayed once the provider is back: delivered, and the dead letter is gone.
        replay = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "services.notification", "dlq", "replay", str(letter.sequence)],
            env=mesh.env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert replay.returncode == 0, replay.stderr
        sent = await eventually(
            lambda: member.ok("GET", path),
            lambda seen: deliveries_by_channel(seen)["sms"]["status"] == "sent",
        )
        assert not deliveries_by_channel(sent)["sms"]["dead_lettered"]
        with pytest.raises(grpc.aio.AioRpcError) as gone:
            await stub.GetDeadLetter(
                notification_pb2.GetDeadLetterRequest(sequence=letter.sequence), metadata=operator
            )
        assert gone.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        await channel.close()
    assert len([m for m in fakes.twilio.messages if m.to == member.phone]) == 2  # the code, the alert


async def test_a_short_outage_is_retried_through_to_the_provider(
    client: httpx.AsyncClient, fakes: Fakes
) -> None:
    member = await member_on_every_channel(client, fakes)
    failed_before = fakes.twilio.failed_requests
    fakes.twilio.outage(503)
    await member.spend_past_a_budget()
    alert = await eventually(lambda: member.notification_of("alert.raised"), lambda seen: seen is not None)
    path = f"/v1/notifications/{alert['notification_id']}"
    await eventually(
        lambda: asyncio.sleep(0, fakes.twilio.failed_requests), lambda failed: failed >= failed_before + 2
    )
    fakes.twilio.recover()
    sent = await eventually(
        lambda: member.ok("GET", path), lambda seen: deliveries_by_channel(seen)["sms"]["status"] == "sent"
    )
    assert deliveries_by_channel(sent)["sms"]["attempts"] >= 2
    assert len([m for m in fakes.twilio.messages if m.to == member.phone]) == 2  # the code, the alert


async def test_a_crash_between_send_and_ack_sends_each_channel_once(
    client: httpx.AsyncClient, fakes: Fakes, mesh: Mesh
) -> None:
    """Kills the notification service while Twilio holds the alert's SMS request (claimed,
    attempt counted, sent, unanswered): the stalled request dies with its connection. The
    redelivered job comes back when the dead worker's claim ends and sends the SMS once;
    Twilio reports it (its status callback names our delivery) and nothing is sent again."""
    member = await member_on_every_channel(client, fakes)
    fakes.twilio.delay_seconds = 3.0
    received = fakes.twilio.requests_received
    try:
        await member.spend_past_a_budget()
        alert = await eventually(
            lambda: member.notification_of("alert.raised"), lambda seen: seen is not None
        )
        # The alert's SMS request is at Twilio, stalled.
        await eventually(lambda: asyncio.sleep(0, fakes.twilio.requests_received), lambda n: n > received)
        os.kill(notification_pid(mesh), signal.SIGKILL)
        texts = await eventually(
            lambda: asyncio.sleep(0, [m for m in fakes.twilio.messages if m.to == member.phone]),
            lambda seen: len(seen) == 2,
        )
    finally:
        fakes.twilio.delay_seconds = 0.0
    answer = await fakes.twilio.send_status_callback(texts[-1].sid, "sent")
    assert answer.status_code == 200, answer.text
    path = f"/v1/notifications/{alert['notification_id']}"
    settled = await eventually(
        lambda: member.ok("GET", path),
        lambda seen: all(d["status"] in ("sent", "delivered") for d in seen["deliveries"]),
        within=40,
    )
    await asyncio.sleep(6.0)  # past ack_wait: any redelivered job has run
    assert len([m for m in fakes.twilio.messages if m.to == member.phone]) == 2
    assert deliveries_by_channel(settled)["sms"]["provider_message_id"] == texts[-1].sid


def notification_pid(mesh: Mesh) -> int:
    found = re.findall(r"(?:started|restarted) notification \(pid (\d+)\)", mesh.log)
    assert found, mesh.log
    return int(found[-1])


async def webhook_member(client: httpx.AsyncClient, receiver: FakeWebhookReceiver, sign: bool) -> Member:
    """A member with alerts in-app and to `receiver` (which checks the secret when `sign`)."""
    member = await sign_up(client)
    created = await member.ok(
        "POST", "/v1/contactPoints", json={"channel": "webhook", "address": receiver.url}
    )
    if sign:
        receiver.secret = created["webhook_secret"]
    rules = [{"source": "alert.raised", "channels": ["in_app", "webhook"]}]
    await member.ok(
        "PATCH", "/v1/notificationPreferences", params={"update_mask": "rules"}, json={"rules": rules}
    )
    return member


def large_expense_alert(member: Member, merchant: str) -> events_pb2.EventEnvelope:
    alert = events_pb2.AlertRaised(
        alert_id=secrets.token_hex(8),
        type="large_expense",
        severity="warning",
        title=f"Large expense at {merchant}",
        details={"merchant": merchant, "category": "Shopping", "amount": "90000.00", "typical": "900.00",
                 "currency": "INR"},
    )  # fmt: skip
    return make_envelope("alert.raised", member.user_id, alert, "billing")


async def test_alerts_arriving_together_make_each_message_once_and_a_refusing_endpoint_fails_alone(
    client: httpx.AsyncClient, mesh: Mesh
) -> None:
    """Alerts published at once reach the intake and the worker in batches: an event that
    comes twice (a redelivery) still makes one message per channel, and an endpoint
    refusing its webhooks (401: it does not know the secret) fails its own deliveries
    while the rest of the batch is delivered."""
    async with (
        FakeWebhookReceiver(secret="unknown-yet") as good_hooks,
        FakeWebhookReceiver(secret="not-the-secret") as bad_hooks,
    ):
        good = await webhook_member(client, good_hooks, sign=True)
        bad = await webhook_member(client, bad_hooks, sign=False)
        envelopes = [large_expense_alert(m, f"Batch {i}") for i, m in enumerate([good, bad] * 3)]
        connection = await nats.connect(mesh.nats_url_as())
        try:
            js = connection.jetstream()
            subject = subject_for(mesh.event_prefix, "alert.raised")
            # The first event twice: the second copy past JetStream's dedupe, as a redelivery.
            for number, envelope in enumerate([*envelopes, envelopes[0]]):
                await js.publish(
                    subject,
                    envelope.SerializeToString(),
                    headers={"Nats-Msg-Id": f"batch-{number}-{envelope.event_id}"},
                )
        finally:
            await connection.close()

        async def alerts_of(member: Member) -> list[dict[str, Any]]:
            listed = await member.notifications(page_size=50)
            alerts = [n for n in listed["notifications"] if n["source"] == "alert.raised"]
            return [await member.ok("GET", f"/v1/notifications/{n['notification_id']}") for n in alerts]

        def settled(seen: list[dict[str, Any]]) -> bool:
            return len(seen) == 3 and all(d["status"] != "queued" for n in seen for d in n["deliveries"])

        good_alerts = await eventually(lambda: alerts_of(good), settled)
        bad_alerts = await eventually(lambda: alerts_of(bad), settled)
        await asyncio.sleep(1.0)  # nothing comes twice
    for alerts, webhook_status in ((good_alerts, "delivered"), (bad_alerts, "failed")):
        for alert in alerts:
            deliveries = deliveries_by_channel(alert)
            assert sorted(deliveries) == ["in_app", "webhook"]
            assert deliveries["in_app"]["status"] == "delivered"
            assert deliveries["webhook"]["status"] == webhook_status
            assert {d["attempts"] for d in deliveries.values()} == {1}
    assert len(good_hooks.received) == 3 and all(hook.verified for hook in good_hooks.received)
    assert len({hook.webhook_id for hook in good_hooks.received}) == 3
    assert len(bad_hooks.received) == 3 and not bad_hooks.verified
