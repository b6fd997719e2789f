"""The SMS review queue in a real browser against a whole mesh (ds on PostgreSQL, NATS,
Redis): hidden until the profile lets ds read the bank's SMS; then one message accepted
with corrections (amount, merchant, category) and one rejected."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

from tests.mesh import Mesh
from tests.web.browser import ARTIFACTS, browser
from tests.web.screens import PASSWORD, check_screen, sign_up, wait_until

__all__ = ["browser"]

pytestmark = pytest.mark.e2e
SENDER = "VM-RNDBNK-S"


def sms(body: str) -> dict[str, str]:
    return {"sender": SENDER, "body": body, "received_time": "2026-12-01T10:00:00Z"}


def consent_reaches_ds(base: str, headers: dict[str, str]) -> None:
    """ds hears of the profile's consent through user.profile_updated: ingest answers 200
    (an OTP, which stores nothing) once it has."""
    probe = sms("123456 is your OTP for a txn of Rs.1 on HDFC Bank Card 5678.")
    deadline = time.monotonic() + 30
    while httpx.post(f"{base}/v1/sms:ingest", headers=headers, json={"messages": [probe]}).status_code != 200:
        assert time.monotonic() < deadline, "ds never heard of the consent"
        time.sleep(0.3)


def test_sms_review_accept_with_corrections_and_reject(browser, mesh_postgres: Mesh) -> None:
    base = mesh_postgres.base_url
    email = f"ravi-{uuid.uuid4().hex[:8]}@example.com"
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    try:
        sign_up(page, base, email)
        assert page.locator("#sms-nav").is_hidden()
        token = httpx.post(f"{base}/v1/auth/login", json={"email": email, "password": PASSWORD}).json()
        headers = {"authorization": f"Bearer {token['access_token']}"}
        consent = httpx.patch(
            f"{base}/v1/users/me",
            headers=headers,
            json={
                "profile": {"sms_auto_import": True, "sms_allowed_senders": ["RNDBNK"]},
                "update_mask": "sms_auto_import,sms_allowed_senders",
            },
        )
        assert consent.status_code == 200, consent.text
        consent_reaches_ds(base, headers)
        ingested = httpx.post(
            f"{base}/v1/sms:ingest",
            headers=headers,
            json={
                "messages": [
                    sms("You paid Rs 1,200 to ZED MART via UPI. Ref 630911112222."),
                    sms("Rs 75 debited at some kiosk"),
                ]
            },
        ).json()
        assert [r["action"] for r in ingested["results"]] == ["INGEST_ACTION_QUEUED_FOR_REVIEW"] * 2

        page.reload()
        page.get_by_role("link", name="SMS review").click()
        page.wait_for_selector("#review-list li")
        wait_until(page, "document.querySelectorAll('#review-list li').length === 2")
        assert page.locator("#review-status").inner_text() == "2 to review"
        check_screen(page, "sms-review")

        first = page.locator("#review-list li", has_text="ZED MART")
        assert first.locator("input[name=amount]").input_value() == "1200"
        first.get_by_label("Amount").fill("1250.00")
        first.get_by_label("Merchant").fill("Zed Mart")
        first.get_by_label("Category").select_option(label="Shopping")
        first.get_by_role("button", name="Accept").click()
        wait_until(page, "document.querySelectorAll('#review-list li').length === 1")
        page.locator("#review-list li", has_text="kiosk").get_by_role("button", name="Reject").click()
        wait_until(page, "document.getElementById('review-status').textContent === 'Nothing to review.'")
    except Exception:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "failure-sms-review.png"), full_page=True)
        raise
    assert problems == []
    context.close()

    assert httpx.get(f"{base}/v1/sms/reviews", headers=headers).json().get("reviews", []) == []
    categories = httpx.get(f"{base}/v1/categories", headers=headers).json()["categories"]
    shopping = next(c["category_id"] for c in categories if c["name"] == "Shopping")
    (expense,) = httpx.get(f"{base}/v1/expenses", headers=headers).json()["expenses"]
    assert (expense["amount"], expense["merchant"], expense["category_id"]) == (
        "1250.00",
        "Zed Mart",
        shopping,
    )
