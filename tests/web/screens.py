"""Shared steps of the browser tests: signing up through the page, waiting without
page-side eval (the strict CSP), and the per-screen checks (screenshots, axe, 360 px)."""

from __future__ import annotations

import re
import time

from tests.web.browser import axe_violations, screenshot

PASSWORD = "correct horse battery staple"


def wait_until(page, expression: str, seconds: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    """page.wait_for_function compiles its predicate in the page, which the strict CSP
    forbids (no eval); page.evaluate goes through the DevTools protocol instead."""
    deadline = time.monotonic() + seconds
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"never true: {expression}")
        page.wait_for_timeout(100)


def wait_for_text(page, selector: str, pattern: str, seconds: float = 20.0) -> str:  # type: ignore[no-untyped-def]
    """Redraws the screen until `selector` shows `pattern` (events reach the services a
    moment after the write)."""
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


def check_screen(page, name: str) -> None:  # type: ignore[no-untyped-def]
    screenshot(page, name)
    assert axe_violations(page) == [], f"accessibility violations on {name}"
    # 360 px, the narrowest phone: nothing scrolls sideways but tables in their own box.
    page.set_viewport_size({"width": 360, "height": 780})
    page.wait_for_timeout(150)
    overflow = page.evaluate("document.documentElement.scrollWidth")
    page.set_viewport_size({"width": 1280, "height": 900})
    assert overflow <= 360, f"{name} is {overflow} px wide at 360 px"


def sign_up(page, base: str, email: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{base}/#/signup")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    page.wait_for_selector("#totals h2")
