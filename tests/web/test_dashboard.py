"""The dashboard in a real browser (Debian's chromium, PyPI playwright) against a whole
mesh on PostgreSQL, Redis and NATS: one person's story from sign-up to log-out, each
screen screenshotted at 390 and 1280 px and checked with axe-core."""

from __future__ import annotations

import json
import re
import time
import uuid

import httpx
import pytest

from tests.mesh import Mesh
from tests.web.browser import ARTIFACTS, axe_violations, browser, screenshot

__all__ = ["browser"]

pytestmark = pytest.mark.e2e
PASSWORD = "correct horse battery staple"
# Page-load figures of this run, written beside the screenshots.
TIMINGS: dict[str, float] = {}


def wait_for_text(page, selector: str, pattern: str, seconds: float = 20.0) -> str:  # type: ignore[no-untyped-def]
    """Reloads the screen until `selector` shows `pattern` (events reach reporting and
    billing a moment after the write)."""
    deadline = time.monotonic() + seconds
    while True:
        text = page.locator(selector).inner_text() if page.locator(selector).count() else ""
        if re.search(pattern, text, re.IGNORECASE):
            return text
        if time.monotonic() > deadline:
            raise AssertionError(f"{selector} never showed {pattern!r}; last: {text!r}")
        page.wait_for_timeout(500)
        page.evaluate("window.dispatchEvent(new HashChangeEvent('hashchange'))")
        page.wait_for_timeout(300)


def wait_until(page, expression: str, seconds: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    """page.wait_for_function compiles its predicate in the page, which the strict CSP
    forbids (no eval); page.evaluate goes through the DevTools protocol instead."""
    deadline = time.monotonic() + seconds
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"never true: {expression}")
        page.wait_for_timeout(100)


def check_screen(page, name: str) -> None:  # type: ignore[no-untyped-def]
    screenshot(page, name)
    assert axe_violations(page) == [], f"accessibility violations on {name}"
    # 360 px, the narrowest phone: nothing scrolls sideways but tables in their own box.
    page.set_viewport_size({"width": 360, "height": 780})
    page.wait_for_timeout(150)
    overflow = page.evaluate("document.documentElement.scrollWidth")
    page.set_viewport_size({"width": 1280, "height": 900})
    assert overflow <= 360, f"{name} is {overflow} px wide at 360 px"


def test_a_person_signs_up_spends_is_alerted_exports_and_logs_out(
    browser, mesh_postgres: Mesh, tmp_path
) -> None:
    base = mesh_postgres.base_url
    email = f"asha-{uuid.uuid4().hex[:8]}@example.com"
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))

    try:
        strict_policy_everywhere(base)
        sign_up(page, context, base, email)
        set_budget(page, base)
        add_expenses(page, base)
        edit_then_conflict(page, base, email)
        dashboard_follows(page, base)
        threshold_alert_seen(page, base)
        csv_round_trip(page, base, tmp_path)
        sessions_then_log_out(page, context, base)
    except Exception:
        # What the screen showed when the story broke, beside the other screenshots.
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "failure.png"), full_page=True)
        raise
    assert problems == []
    context.close()


def strict_policy_everywhere(base: str) -> None:
    """The page and its assets carry the strict policy; nothing inline is allowed."""
    policy = httpx.get(f"{base}/").headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert httpx.get(f"{base}/assets/js/app.js").headers["content-security-policy"] == policy


def sign_up(page, context, base: str, email: str) -> None:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    page.goto(f"{base}/#/signup")
    page.get_by_label("Your name").fill("Asha")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    check_screen(page, "signup")
    page.get_by_role("button", name="Create account").click()
    page.wait_for_selector("#totals h2")
    TIMINGS["signup_to_dashboard_s"] = round(time.perf_counter() - started, 3)
    assert "No expenses this month" in page.locator("#totals").inner_text()
    # The refresh token is only in the HttpOnly cookie; the page's storage holds nothing.
    cookie = next(c for c in context.cookies() if c["name"] == "em_refresh")
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("localStorage.length + sessionStorage.length") == 0


def set_budget(page, base: str) -> None:  # type: ignore[no-untyped-def]
    """1,000 a month, alerts at 80 % and 100 %."""
    page.goto(f"{base}/#/budgets")
    page.locator("#budget-form input[name=amount]").fill("2000")
    page.locator("#budget-form button[type=submit]").click()
    page.wait_for_selector("#budgets .budget")
    check_screen(page, "budgets")
    # Edited down to 1,000 (sent with the budget's etag).
    page.locator("#budgets .budget-item").get_by_role("button", name="Edit").click()
    page.locator("#budgets .budget-item input[name=amount]").fill("1000")
    page.locator("#budgets .budget-item").get_by_role("button", name="Save").click()
    wait_until(page, "document.querySelector('#budgets .budget')?.textContent.includes('of ₹1,000.00')")
    # A monthly bill from today; its first occurrence skipped (paying would add an expense).
    bill = page.locator("#bill-form")
    bill.get_by_label("Payee").fill("BESCOM")
    bill.get_by_label("Amount").fill("1850")
    bill.get_by_role("button", name="Add bill").click()
    page.wait_for_selector("#bill-list li:has-text('BESCOM')")
    # Its rule in the words the form offered, not the RRULE the API stores.
    rule = page.locator("#bill-list li:has-text('BESCOM') .rule").inner_text()
    assert rule.startswith("monthly · next") and "FREQ" not in rule, rule
    page.get_by_role("button", name="Occurrences").click()
    page.locator("#bill-list .occurrences").get_by_role("button", name="Skip").first.click()
    # The list is drawn again, its occurrences folded: then unfold them anew.
    wait_until(page, "document.querySelector('#bill-list .occurrences')?.childElementCount === 0")
    page.get_by_role("button", name="Occurrences").click()
    wait_until(page, "document.querySelector('#bill-list .occurrences')?.textContent.includes('skipped')")


EXPENSES = [
    ("450", "Chai Point", "Food & dining"),
    ("300", "Metro", "Transport"),
    ("150", "Bakery", "Food & dining"),
]


def add_expenses(page, base: str) -> None:  # type: ignore[no-untyped-def]
    """450 + 300 + 150 = 900: 90 % of the budget."""
    page.goto(f"{base}/#/expenses")
    page.wait_for_selector("#add-expense")
    form = page.locator("#add-expense")
    for amount, merchant, category in EXPENSES:
        form.locator("input[name=amount]").fill(amount)
        form.locator("input[name=merchant]").fill(merchant)
        form.locator("select[name=category_id]").select_option(label=category)
        form.locator("button[type=submit]").click()
        page.wait_for_selector(f"#expense-rows tr:has-text('{merchant}')")
    check_screen(page, "expenses")


def edit_then_conflict(page, base: str, email: str) -> None:  # type: ignore[no-untyped-def]
    """An inline edit; then the same expense changes elsewhere before the next save."""
    page.locator("#expense-rows tr", has_text="Metro").get_by_role("button", name="Edit").click()
    page.locator("#expense-rows tr.editing input[aria-label=Merchant]").fill("Metro card")
    page.locator("#expense-rows tr.editing").get_by_role("button", name="Save").click()
    page.wait_for_selector("#expense-rows tr:has-text('Metro card')")
    expense_id = page.locator("#expense-rows tr", has_text="Metro card").get_attribute("data-id")
    login = httpx.post(f"{base}/v1/auth/login", json={"email": email, "password": PASSWORD})
    elsewhere = httpx.patch(
        f"{base}/v1/expenses/{expense_id}",
        headers={"authorization": f"Bearer {login.json()['access_token']}"},
        json={"expense": {"note": "edited on the phone"}, "update_mask": "note"},
    )
    assert elsewhere.status_code == 200, elsewhere.text
    page.locator("#expense-rows tr", has_text="Metro card").get_by_role("button", name="Edit").click()
    page.locator("#expense-rows tr.editing input[aria-label=Amount]").fill("310")
    page.locator("#expense-rows tr.editing").get_by_role("button", name="Save").click()
    assert "Changed elsewhere, reload" in page.locator(".conflict").inner_text()
    page.get_by_role("button", name="Reload").click()
    page.wait_for_selector("#expense-rows tr:has-text('Metro card')")
    assert "₹300.00" in page.locator("#expense-rows tr", has_text="Metro card").inner_text()


def dashboard_follows(page, base: str) -> None:  # type: ignore[no-untyped-def]
    """This month's total, by category and day by day; clicking a category filters."""
    page.goto(f"{base}/#/dashboard")
    assert "INR" in wait_for_text(page, "#month-totals", r"₹900\.00")
    by_category = page.locator("#by-category").inner_text()
    assert "Food & dining" in by_category and "₹600.00" in by_category and "₹300.00" in by_category
    spent_days = page.evaluate(
        "[...document.querySelectorAll('table[data-chart^=\"Daily spending\"] tbody tr')]"
        ".map(r => r.cells[1].textContent).filter(v => v !== '₹0.00')"
    )
    assert spent_days == ["₹900.00"]
    assert page.locator("#trend canvas").count() == 1 and page.locator("#daily canvas").count() == 1
    wait_for_text(page, "#budget-progress", r"90(\.0)?% spent")
    # ds's insights: this month's projection, its sentence and the numbers behind it.
    insights = wait_for_text(page, "#insights", r"Spent so far\s+₹900")
    assert "Projection" in insights and "Days left" in insights
    assert page.locator("#insight-list li[data-type=projection] p").first.inner_text().strip()
    check_screen(page, "dashboard")
    page.locator("#by-category button", has_text="Transport").click()
    wait_until(page, "document.querySelector('#expense-rows')?.rows.length === 1")
    assert "Metro card" in page.locator("#expense-rows").inner_text()
    assert "category_id=" in page.url


def threshold_alert_seen(page, base: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{base}/#/alerts")
    alert = wait_for_text(page, "main", r"80% threshold")
    assert "warning" in alert.lower()
    wait_until(page, "!document.getElementById('unread').hidden")
    check_screen(page, "alerts")


def csv_round_trip(page, base: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Import twice (the second adds nothing: row-derived request ids), then export."""
    page.goto(f"{base}/#/expenses")
    page.locator("details summary", has_text="Import and export").click()
    bank = tmp_path / "bank.csv"
    # "Date", as the ledger's export and banks name it: the rows keep their January days, so
    # this month's export below has none of them.
    bank.write_text("amount,currency,Date,merchant\n20.00,INR,2026-01-05,Tea\n35.50,INR,2026-01-06,Bus\n")
    page.get_by_label("CSV file to import").set_input_files(str(bank))
    page.get_by_role("button", name="Import", exact=True).click()
    wait_until(
        page, "document.getElementById('import-result').textContent.includes('Imported 2, already there 0')"
    )
    assert page.locator("#import-progress").evaluate("p => p.value === p.max")
    page.get_by_role("button", name="Import", exact=True).click()
    wait_until(page, "document.getElementById('import-result').textContent.includes('already there 2')")
    with page.expect_download() as download:
        page.locator("#export").click()
    exported = tmp_path / "out.csv"
    download.value.save_as(exported)
    lines = exported.read_text().strip().splitlines()
    assert len(lines) == 4 and "Chai Point" in lines[1] + lines[2] + lines[3]


def sessions_then_log_out(page, context, base: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{base}/#/settings")
    page.wait_for_selector("#session-list li")
    assert "(this one)" in page.locator("#session-list").inner_text()
    check_screen(page, "settings")
    # A new password ends the other session (the REST login of the conflict step), not this one.
    page.get_by_label("Current password").fill(PASSWORD)
    page.get_by_label("New password").fill("a different horse battery staple")
    page.get_by_role("button", name="Change password").click()
    status = "document.querySelector('#password [role=status]').textContent"
    wait_until(page, f"{status}.includes('1 other sessions signed out')")
    page.get_by_role("button", name="Log out").click()
    page.wait_for_selector("form button:has-text('Log in')")
    page.reload()
    page.wait_for_selector("form button:has-text('Log in')")
    check_screen(page, "login")
    assert not any(c["name"] == "em_refresh" for c in context.cookies())


def test_the_dashboard_renders_fast_and_small(browser, mesh_postgres: Mesh) -> None:
    """First contentful paint and the page's JS + CSS, gzipped, for a signed-in person."""
    import gzip

    base = mesh_postgres.base_url
    email = f"speed-{uuid.uuid4().hex[:8]}@example.com"
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{base}/#/signup")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    page.wait_for_selector("#totals h2")
    started = time.perf_counter()
    page.reload()
    page.wait_for_selector("#trend h2")
    page.wait_for_selector("#latest-alerts h2")
    rendered = time.perf_counter() - started
    paint = page.evaluate("performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? -1")
    assets = page.evaluate(
        "performance.getEntriesByType('resource').map(e => e.name)"
        ".filter(n => n.endsWith('.js') || n.endsWith('.css'))"
    )
    size = sum(len(gzip.compress(httpx.get(url).content)) for url in assets)
    TIMINGS.update(first_contentful_paint_ms=paint, dashboard_rendered_s=rendered, js_css_gzip_bytes=size)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "timings.json").write_text(json.dumps(TIMINGS, indent=2))
    print(f"dashboard: {json.dumps(TIMINGS)}")
    assert 0 < paint <= 1000
    assert rendered <= 1.5
    assert size <= 250 * 1024
    context.close()


def test_two_tabs_reloading_at_once_keep_the_session(browser, mesh_postgres: Mesh) -> None:
    """Both tabs refresh with the one cookie at the same moment; auth would end the session
    on a rotated-out token coming back, so the tabs take turns (a Web Lock)."""
    base = mesh_postgres.base_url
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    first = context.new_page()
    first.goto(f"{base}/#/signup")
    first.get_by_label("Email").fill(f"tabs-{uuid.uuid4().hex[:8]}@example.com")
    first.get_by_label("Password").fill(PASSWORD)
    first.get_by_role("button", name="Create account").click()
    first.wait_for_selector("#totals h2")
    second = context.new_page()
    second.goto(f"{base}/#/dashboard")
    second.wait_for_selector("#totals h2")
    for _ in range(3):
        first.evaluate("setTimeout(() => location.reload(), 0)")
        second.evaluate("setTimeout(() => location.reload(), 0)")
        first.wait_for_selector("#totals h2")
        second.wait_for_selector("#totals h2")
    third = context.new_page()
    third.goto(f"{base}/#/dashboard")
    third.wait_for_selector("#totals h2")
    context.close()


def test_password_reset_screens(browser, mesh_postgres: Mesh) -> None:
    """Asking for the link answers alike for any email; a link whose token is not valid
    says so (the mailed token's whole path is tests/auth's)."""
    base = mesh_postgres.base_url
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{base}/#/login")
    page.get_by_role("link", name="Forgot your password?").click()
    page.get_by_label("Email").fill(f"nobody-{uuid.uuid4().hex[:8]}@example.com")
    page.get_by_role("button", name="Send the link").click()
    wait_until(page, "document.getElementById('reset-status').textContent.includes('is on its way')")
    assert page.locator("#bar").is_hidden()
    check_screen(page, "forgot-password")
    page.goto(f"{base}/#/reset-password?token=not-a-real-token")
    page.get_by_label("New password").fill("a brand new horse battery staple")
    page.get_by_role("button", name="Set the new password").click()
    wait_until(page, "document.getElementById('reset-status').textContent.length > 0")
    assert "no longer valid" in page.locator("#reset-status").inner_text()
    assert page.locator("#bar").is_hidden()
    check_screen(page, "reset-password")
    context.close()
