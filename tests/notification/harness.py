"""A mesh with the notification service on PostgreSQL, the machine's NATS and Redis,
and the providers' local fakes (SMTP with STARTTLS and AUTH, Twilio, the Graph API)
that the real adapters talk to; Twilio's and Meta's signed callbacks come back through
Envoy. A member signs up, registers and verifies numbers, and chooses channels."""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.graph import FakeGraphApi
from tests.fakes.smtp import FakeSmtpServer, ReceivedEmail
from tests.fakes.twilio import FakeTwilio
from tests.infra import NATS_URL, REDIS_URL
from tests.mesh import Mesh

PASSWORD = "violet-harbor-tune-42-notify"
WITHIN_SECONDS = 20.0
META_VERIFY_TOKEN = "meta-verify-token-of-the-tests"
NOTIFICATION_MESH = ["auth", "user", "ledger", "billing", "templating", "notification"]
# Auth's verification mail, which every signup brings beside the welcome.
VERIFY_SUBJECT = "Verify your email address"


class Fakes:
    def __init__(self, smtp: FakeSmtpServer, twilio: FakeTwilio, graph: FakeGraphApi) -> None:
        self.smtp = smtp
        self.twilio = twilio
        self.graph = graph


def notification_mesh(data_dir: Path, database_url: str, fakes: Fakes, **extra: str) -> Mesh:
    """The mesh (not started) with every provider pointed at its fake."""
    mesh = Mesh(
        data_dir,
        NOTIFICATION_MESH,
        {"DATABASE_URL": database_url, "NATS_URL": NATS_URL, "REDIS_URL": REDIS_URL},
    )
    providers = "EM_NOTIFICATION__PROVIDERS__"
    mesh.env.update(
        {
            f"{providers}EMAIL__ENABLED": "true",
            f"{providers}EMAIL__HOST": fakes.smtp.host,
            f"{providers}EMAIL__PORT": str(fakes.smtp.port),
            f"{providers}EMAIL__USERNAME": fakes.smtp.username,
            f"{providers}EMAIL__PASSWORD": fakes.smtp.password,
            f"{providers}EMAIL__CA_FILE": str(fakes.smtp.certificate.cert_file),
            f"{providers}EMAIL__FROM_ADDRESS": "Expense Mesh <alerts@mesh.example>",
            f"{providers}SMS__ENABLED": "true",
            f"{providers}SMS__BASE_URL": fakes.twilio.base_url,
            f"{providers}SMS__ACCOUNT_SID": fakes.twilio.account_sid,
            f"{providers}SMS__AUTH_TOKEN": fakes.twilio.auth_token,
            f"{providers}SMS__FROM_NUMBER": "+15005550006",
            f"{providers}SMS__STATUS_CALLBACK_URL": f"{mesh.base_url}/v1/notificationCallbacks/twilio",
            f"{providers}WHATSAPP__ENABLED": "true",
            f"{providers}WHATSAPP__BASE_URL": fakes.graph.base_url,
            f"{providers}WHATSAPP__PHONE_NUMBER_ID": fakes.graph.phone_number_id,
            f"{providers}WHATSAPP__ACCESS_TOKEN": fakes.graph.access_token,
            f"{providers}WHATSAPP__APP_SECRET": fakes.graph.app_secret,
            f"{providers}WHATSAPP__VERIFY_TOKEN": META_VERIFY_TOKEN,
            f"{providers}WEBHOOK__ENABLED": "true",
            f"{providers}WEBHOOK__ALLOW_HTTP_LOCALHOST": "true",
            # Tests see retries and the sweep soon.
            "EM_NOTIFICATION__DELIVERY__BACKOFF_SECONDS": "[0.5, 1, 1, 1, 1, 1, 1]",
            "EM_NOTIFICATION__DELIVERY__SWEEP_INTERVAL_SECONDS": "0.3",
            "EM_NOTIFICATION__BREAKER__OPEN_SECONDS": "1.0",
            # A killed worker's job comes back after this long.
            "EM_NOTIFICATION__DELIVERY__ACK_WAIT_SECONDS": "5",
            # Templating checks each default at start within its render cap: on a loaded
            # machine that cap is the neighbours' business, not this test's.
            "EM_TEMPLATING__MAX_RENDER_MS": "5000",
            **extra,
        }
    )
    return mesh


def mails_to(fakes: Fakes, email: str, subject_part: str = "") -> list[ReceivedEmail]:
    """The mails the fake SMTP server took for `email`, in arrival order."""
    return [
        m for m in fakes.smtp.messages if email in m.recipients and subject_part in str(m.message["Subject"])
    ]


def notices_to(fakes: Fakes, email: str) -> list[ReceivedEmail]:
    """The mails for `email` other than auth's signup verification mail (critical: it
    comes whatever the preferences, at a time of its own)."""
    return [m for m in mails_to(fakes, email) if m.message["Subject"] != VERIFY_SUBJECT]


async def eventually(
    read: Callable[[], Awaitable[Any]], check: Callable[[Any], bool], within: float = WITHIN_SECONDS
) -> Any:
    started = time.monotonic()
    while True:
        seen = await read()
        if check(seen):
            return seen
        if time.monotonic() - started > within:
            pytest.fail(f"not seen within {within} s: {seen!r}")
        await asyncio.sleep(0.1)


class Member:
    def __init__(self, client: httpx.AsyncClient, tokens: dict[str, Any], email: str) -> None:
        self.client = client
        self.email = email
        self.user_id: str = tokens["user"]["user_id"]
        self.phone = ""
        self.headers = {"authorization": f"Bearer {tokens['access_token']}"}

    async def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return await self.client.request(method, path, headers=self.headers, **kwargs)

    async def ok(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = await self.call(method, path, **kwargs)
        assert response.status_code == 200, f"{method} {path}: {response.status_code} {response.text}"
        return response.json()

    async def notifications(self, **params: Any) -> dict[str, Any]:
        return await self.ok("GET", "/v1/notifications", params=params)

    async def notification_of(self, source: str, title_part: str = "") -> dict[str, Any] | None:
        listed = await self.notifications(page_size=50)
        return next(
            (n for n in listed["notifications"] if n["source"] == source and title_part in n["title"]), None
        )

    async def spend_past_a_budget(self) -> None:
        """A Food & dining budget of 1,000 INR with an 80 % threshold, then 1,010 INR spent:
        one threshold alert (past the budget, no projected-overspend alert beside it)."""
        listed = await self.ok("GET", "/v1/categories")
        food = next(c["category_id"] for c in listed["categories"] if c["name"] == "Food & dining")
        budget = {
            "request_id": secrets.token_hex(8),
            "category_id": food,
            "period": "month",
            "amount": "1000.00",
            "currency": "INR",
            "thresholds": [80],
        }
        await self.ok("POST", "/v1/budgets", json=budget)
        expense = {
            "request_id": secrets.token_hex(16),
            "amount": "1010.00",
            "currency": "INR",
            "spent_on": date.today().isoformat(),
            "category_id": food,
            "merchant": "Cafe",
        }
        await self.ok("POST", "/v1/expenses", json=expense)

    async def spend_large(self, amount: str, merchant: str) -> None:
        """An expense past the INR large-expense limit: a large_expense alert (info)."""
        listed = await self.ok("GET", "/v1/categories")
        shopping = next(c["category_id"] for c in listed["categories"] if c["name"] == "Shopping")
        expense = {
            "request_id": secrets.token_hex(16),
            "amount": amount,
            "currency": "INR",
            "spent_on": date.today().isoformat(),
            "category_id": shopping,
            "merchant": merchant,
        }
        await self.ok("POST", "/v1/expenses", json=expense)


async def sign_up(client: httpx.AsyncClient) -> Member:
    email = f"notify.{secrets.token_hex(6)}@example.org"
    response = await client.post(
        "/v1/auth/signup", json={"email": email, "password": PASSWORD, "display_name": "Asha"}
    )
    assert response.status_code == 200, response.text
    return Member(client, response.json(), email)


async def verify_number(member: Member, fakes: Fakes, channel: str, number: str) -> dict[str, Any]:
    """Registers a number; reads the code the fake provider carried; verifies it."""
    created = await member.ok("POST", "/v1/contactPoints", json={"channel": channel, "address": number})
    contact = created["contact_point"]
    assert contact["verified"] is False and created["webhook_secret"] == ""
    if channel == "sms":
        text = next(m.body for m in reversed(fakes.twilio.messages) if m.to == number)
    else:
        sent = next(m for m in reversed(fakes.graph.messages) if m.to in (number, number.removeprefix("+")))
        text = str(sent.payload)
    code = re.search(r"\b(\d{6})\b", text)
    assert code, text
    verified = await member.ok(
        "POST", f"/v1/contactPoints/{contact['contact_point_id']}:verify", json={"code": code[1]}
    )
    assert verified["verified"] is True
    return verified
