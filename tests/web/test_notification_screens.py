"""The notifications screen in a real browser against a whole mesh whose SMS provider is a
local server speaking Twilio's API (tests/fakes/twilio.py): the feed and its unread badge,
mark read and mark all read, preferences per event and channel with quiet hours and the
digest, and a phone number verified with the code the fake carried."""

from __future__ import annotations

import asyncio
import re
import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.fakes.twilio import FakeTwilio
from tests.infra import NATS_URL, REDIS_URL, fresh_postgres_database, require
from tests.mesh import Mesh, forget_run
from tests.web.browser import ARTIFACTS, browser
from tests.web.screens import PASSWORD, check_screen, sign_up, wait_for_text, wait_until

__all__ = ["browser"]

pytestmark = pytest.mark.e2e
PHONE = "+919800001234"


class TwilioInThread:
    """The async fake on an event loop of its own thread, for the sync playwright test."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.fake = FakeTwilio()

    def __enter__(self) -> FakeTwilio:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.fake.__aenter__(), self.loop).result(10)
        return self.fake

    def __exit__(self, *exc_info: object) -> None:
        asyncio.run_coroutine_threadsafe(self.fake.__aexit__(None, None, None), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def sms_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Mesh, FakeTwilio]]:
    require("Redis", "127.0.0.1", 6379)
    with TwilioInThread() as twilio, fresh_postgres_database() as database_url:
        mesh = Mesh(
            tmp_path_factory.mktemp("mesh-web-sms"),
            env={"DATABASE_URL": database_url, "REDIS_URL": REDIS_URL, "NATS_URL": NATS_URL},
        )
        providers = "EM_NOTIFICATION__PROVIDERS__SMS__"
        mesh.env.update(
            {
                f"{providers}ENABLED": "true",
                f"{providers}BASE_URL": twilio.base_url,
                f"{providers}ACCOUNT_SID": twilio.account_sid,
                f"{providers}AUTH_TOKEN": twilio.auth_token,
                f"{providers}FROM_NUMBER": "+15005550006",
                f"{providers}STATUS_CALLBACK_URL": f"{mesh.base_url}/v1/notificationCallbacks/twilio",
                "EM_TEMPLATING__MAX_RENDER_MS": "5000",
            }
        )
        try:
            mesh.start()
            yield mesh, twilio
        finally:
            mesh.stop()
            forget_run(mesh)


# The mesh before the browser: torn down after it, outside playwright's running loop.
def test_notifications_feed_preferences_and_phone_verification(sms_mesh, browser) -> None:
    mesh, twilio = sms_mesh
    base = mesh.base_url
    email = f"noor-{uuid.uuid4().hex[:8]}@example.com"
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    try:
        sign_up(page, base, email)
        token = httpx.post(f"{base}/v1/auth/login", json={"email": email, "password": PASSWORD}).json()
        headers = {"authorization": f"Bearer {token['access_token']}"}
        feed_and_badge(page, base, headers)
        preferences_saved(page, base, headers)
        phone_verified(page, twilio)
        check_screen(page, "notifications")
    except Exception:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "failure-notifications.png"), full_page=True)
        raise
    assert problems == []
    context.close()


def feed_and_badge(page, base: str, headers: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    """The welcome (user.registered) and auth's new-device notice (the test's sign-in from
    httpx after the browser's signup) are unread: the badge says 2 (unread_count)."""
    for _ in range(100):
        if httpx.get(f"{base}/v1/notifications", headers=headers).json()["unread_count"] == 2:
            break
        time.sleep(0.2)
    page.goto(f"{base}/#/notifications")
    wait_for_text(page, "#notification-list", r"welcome")
    wait_until(page, "document.getElementById('unread').textContent === '2'")
    assert page.locator("#unread-count").inner_text() == "2 unread"
    welcome_item = page.locator("#notification-list li", has_text=re.compile("welcome", re.I)).first
    welcome_item.get_by_role("button", name=re.compile("Mark .* as read")).click()
    wait_until(page, "document.getElementById('unread').textContent === '1'")
    assert page.locator("#unread-count").inner_text() == "1 unread"
    listed = httpx.get(f"{base}/v1/notifications", headers=headers).json()
    welcome = next(n for n in listed["notifications"] if n["source"] == "user.registered")
    assert welcome["read_time"] and listed["unread_count"] == 1

    # A budget crossed: billing's alert becomes a second, unread notification.
    budget = httpx.post(
        f"{base}/v1/budgets",
        headers=headers,
        json={
            "request_id": str(uuid.uuid4()),
            "amount": "100",
            "currency": "INR",
            "period": "month",
            "thresholds": [80],
        },
    )
    assert budget.status_code == 200, budget.text
    expense = httpx.post(
        f"{base}/v1/expenses",
        headers=headers,
        json={"request_id": str(uuid.uuid4()), "amount": "90", "currency": "INR", "merchant": "Bazaar"},
    )
    assert expense.status_code == 200, expense.text
    page.get_by_label("Unread only").check()
    wait_for_text(page, "#notification-list", r"of your budget used", seconds=40)
    assert "welcome" not in page.locator("#notification-list").inner_text().lower()
    # The badge and the feed both say unread_count (billing may raise more than one alert).
    unread = page.locator("#notification-list li.unread").count()
    assert unread >= 1 and page.locator("#unread-count").inner_text() == f"{unread} unread"
    wait_until(page, f"document.getElementById('unread').textContent === '{unread}'")
    shown = {
        n["notification_id"]
        for n in httpx.get(f"{base}/v1/notifications", headers=headers).json()["notifications"]
    }
    page.get_by_role("button", name="Mark all as read").click()
    wait_until(page, "document.getElementById('unread-count')?.textContent === '0 unread'")
    wait_until(page, "document.getElementById('unread').hidden")
    # Everything there when it was clicked is read; billing's scheduler may raise a
    # projection alert any moment after, which is rightly unread.
    after = httpx.get(f"{base}/v1/notifications", headers=headers).json()["notifications"]
    assert shown and all(n["read_time"] for n in after if n["notification_id"] in shown), after


def preferences_saved(page, base: str, headers: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    page.get_by_label("Budget, bill and spending alerts: SMS").check()
    page.get_by_label("Budget, bill and spending alerts: Email").uncheck()
    assert page.get_by_label("Budget, bill and spending alerts: In app").is_disabled()
    page.locator("input[name=quiet_start]").fill("22:00")
    page.locator("input[name=quiet_end]").fill("07:00")
    page.get_by_label("Collect minor messages into one a day").check()
    page.get_by_role("button", name="Save preferences").click()
    wait_until(page, "document.getElementById('preferences-status').textContent === 'Saved.'")
    saved = httpx.get(f"{base}/v1/notificationPreferences", headers=headers).json()
    rules = {r["source"]: set(r["channels"]) for r in saved["rules"]}
    assert rules["alert.raised"] == {"in_app", "sms"}
    assert saved["quiet_hours"] == {"start": "22:00", "end": "07:00"} and saved["digest"] is True
    # Half a quiet-hours range is refused with the service's field violation, shown as is.
    page.locator("input[name=quiet_end]").fill("")
    page.get_by_role("button", name="Save preferences").click()
    wait_until(page, "document.getElementById('preferences-status').textContent.includes('quiet_hours')")


def phone_verified(page, twilio: FakeTwilio) -> None:  # type: ignore[no-untyped-def]
    form = page.locator("#contact-form")
    form.get_by_label("Channel").select_option("sms")
    form.get_by_label("Address").fill(PHONE)
    form.get_by_role("button", name="Add").click()
    page.wait_for_selector(f"#contact-list li:has-text('{PHONE}') form.verify")
    text = next(m.body for m in reversed(twilio.messages) if m.to == PHONE)
    code = re.search(r"\b(\d{6})\b", text)
    assert code, text
    wrong = "000000" if code[1] != "000000" else "111111"
    page.get_by_label(f"Code sent to {PHONE}").fill(wrong)
    page.get_by_role("button", name="Verify").click()
    wait_until(
        page,
        "document.querySelector('#contact-list form.verify [role=alert]')?.textContent.includes('not right')",
    )
    page.get_by_label(f"Code sent to {PHONE}").fill(code[1])
    page.get_by_role("button", name="Verify").click()
    wait_until(
        page,
        "document.querySelector('#contact-list')?.textContent.includes('verified')"
        " && !document.querySelector('#contact-list form.verify')",
    )
    assert "waiting for its code" not in page.locator(f"#contact-list li:has-text('{PHONE}')").inner_text()
