"""Three things exploratory testing found on the dashboard, each in the browser against a
whole mesh: an export imported again adds nothing whatever its file is called; a rollover
budget carried below zero says how far over it is, not "1000.0% of -₹294.77"; the 12-month
trend charts one currency at a time, on an axis of that currency."""

from __future__ import annotations

import time
import uuid
from datetime import date, timedelta

import httpx
import pytest

from tests.mesh import Mesh
from tests.web.browser import browser
from tests.web.screens import PASSWORD, check_screen, sign_up, wait_for_text, wait_until

__all__ = ["browser"]

pytestmark = pytest.mark.e2e
RESULT = "document.getElementById('import-result').textContent"


def signed_up(browser, base: str, name: str):  # type: ignore[no-untyped-def]
    """A new person's page on the dashboard, and a REST client with their token."""
    email = f"{name}-{uuid.uuid4().hex[:8]}@example.com"
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    sign_up(page, base, email)
    login = httpx.post(f"{base}/v1/auth/login", json={"email": email, "password": PASSWORD})
    token = login.json()["access_token"]
    return context, page, httpx.Client(base_url=base, headers={"authorization": f"Bearer {token}"})


def spend(api: httpx.Client, amount: str, currency: str = "INR", spent_on: str = "", **fields: str) -> None:
    body = {"request_id": str(uuid.uuid4()), "amount": amount, "currency": currency, **fields}
    if spent_on:
        body["spent_on"] = spent_on
    answer = api.post("/v1/expenses", json=body)
    assert answer.status_code == 200, answer.text


def import_file(page, path) -> str:  # type: ignore[no-untyped-def]
    page.get_by_label("CSV file to import").set_input_files(str(path))
    page.evaluate("document.getElementById('import-result').textContent = ''")
    page.get_by_role("button", name="Import", exact=True).click()
    wait_until(page, f"{RESULT}.startsWith('Imported') || {RESULT}.includes('stopped')")
    return page.locator("#import-result").inner_text()


def test_an_export_imported_again_under_another_name_adds_nothing(
    browser, mesh_postgres: Mesh, tmp_path
) -> None:
    base = mesh_postgres.base_url
    context, page, api = signed_up(browser, base, "reimport")
    food = next(c for c in api.get("/v1/categories").json()["categories"] if c["name"] == "Food & dining")
    spend(api, "120.00", merchant="Chai Point", category_id=food["category_id"], note='says "hi", twice')
    spend(api, "80.50", merchant="=cmd|calc", tags=["work", "cab"])
    page.goto(f"{base}/#/expenses")
    page.locator("details summary", has_text="Import and export").click()

    # The ledger's export (GET /v1/expenses:export), saved under a name of its own.
    ledger_export = tmp_path / "my-expenses-copy.csv"
    ledger_export.write_bytes(api.get("/v1/expenses:export").content)
    assert "expense_id" in ledger_export.read_text().splitlines()[0]
    assert import_file(page, ledger_export) == "Imported 0, already there 2, invalid 0."

    # The dashboard's own export button (reporting's month export), renamed, imported back.
    deadline = time.monotonic() + 20
    while api.get("/v1/reports/export", params={"period": "month"}).json().get("row_count", 0) < 2:
        assert time.monotonic() < deadline, "reporting never saw the expenses"
        page.wait_for_timeout(300)
    with page.expect_download() as download:
        page.locator("#export").click()
    renamed = tmp_path / "december-again.csv"
    download.value.save_as(renamed)
    assert import_file(page, renamed) == "Imported 0, already there 2, invalid 0."
    assert len(api.get("/v1/expenses").json()["expenses"]) == 2
    context.close()


def test_a_budget_carried_below_zero_says_how_far_over_it_is(browser, mesh_postgres: Mesh) -> None:
    """100 a month with rollover from last month, 500 spent then: -300 budgeted now."""
    base = mesh_postgres.base_url
    context, page, api = signed_up(browser, base, "rollover")
    this_month = date.today().replace(day=1)
    last_month = (this_month - timedelta(days=1)).replace(day=1)
    created = api.post(
        "/v1/budgets",
        json={"request_id": str(uuid.uuid4()), "period": "month", "amount": "100", "currency": "INR",
              "rollover": True, "start_date": last_month.isoformat()},
    )  # fmt: skip
    assert created.status_code == 200, created.text
    spend(api, "500.00", spent_on=last_month.replace(day=2).isoformat(), merchant="Last month")
    spend(api, "50.00", merchant="This month")
    page.goto(f"{base}/#/dashboard")
    card = wait_for_text(page, "#budget-progress", r"over by ₹350\.00")
    assert "%" not in card and "1000" not in card, card
    assert "₹50.00 spent" in card and "-₹400.00 carried" in card, card
    status = api.get("/v1/budgets").json()["budgets"][0]["status"]
    assert (status["budgeted"], status["remaining"], status.get("percent", "")) == ("-300.00", "-350.00", "")
    check_screen(page, "dashboard-budget-carried-below-zero")
    context.close()


def test_the_trend_charts_one_currency_at_a_time(browser, mesh_postgres: Mesh) -> None:
    base = mesh_postgres.base_url
    context, page, api = signed_up(browser, base, "trend")
    spend(api, "900.00", merchant="Rent share")
    spend(api, "12.00", currency="USD", merchant="App store")
    page.goto(f"{base}/#/dashboard")
    # The choice appears once reporting has both currencies' months.
    wait_for_text(page, "#trend", r"USD")
    table = "document.querySelector('#trend table[data-chart]')"
    assert page.evaluate(f"{table}.dataset.chart") == "Monthly trend (INR)"
    shown = page.evaluate(f"{table}.textContent")
    assert "₹900.00" in shown and "12.00" not in shown, f"another currency on the INR chart: {shown}"
    choice = page.get_by_label("Trend currency")
    assert choice.input_value() == "INR"
    choice.select_option("USD")
    wait_until(page, f"{table}.dataset.chart === 'Monthly trend (USD)'")
    shown = page.evaluate(f"{table}.textContent")
    assert "12.00" in shown and "900" not in shown, shown
    assert page.locator("#trend canvas").count() == 1
    check_screen(page, "dashboard-trend-usd")
    context.close()
