"""Debian's chromium driven by PyPI playwright (no browser download): fixtures, and
the screenshots and accessibility checks every screen gets."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.kit.config.settings import REPO_ROOT

# Flags this machine's chromium needs (no sandbox as root, no GPU, nothing fetched).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
WIDTHS = {"phone": (390, 844), "desktop": (1280, 900)}
# Screenshots of every screen at both widths: CI keeps this folder as its artifacts.
ARTIFACTS = Path(os.environ.get("EM_ARTIFACTS_DIR", REPO_ROOT / "build" / "artifacts")) / "screens"
AXE = REPO_ROOT / "node_modules" / "axe-core" / "axe.min.js"
# axe-core impacts that fail a screen.
BLOCKING_IMPACTS = {"serious", "critical"}


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        message = "Debian's chromium is not installed (apt-get install chromium; .ci/run does)"
        if os.environ.get("EM_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def screenshot(page, name: str) -> list[Path]:  # type: ignore[no-untyped-def]
    """The screen at phone and desktop width; the viewport is left as it was."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    before = page.viewport_size
    paths = []
    for label, (width, height) in WIDTHS.items():
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(150)  # charts follow the width (ResizeObserver)
        path = ARTIFACTS / f"{name}-{width}.png"
        page.screenshot(path=str(path), full_page=True)
        paths.append(path)
        assert path.stat().st_size > 1000, f"{label} screenshot of {name} is empty"
    page.set_viewport_size(before)
    return paths


def axe_violations(page) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    """axe-core (vendored from npm, node_modules) on the page as it is: the serious and
    critical violations. Evaluated through the DevTools protocol, which the page's CSP
    does not govern, so the page keeps its strict policy while it is checked."""
    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: npm install")
    page.evaluate(AXE.read_text() + "\n;0")
    results = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:3]}
        for v in results["violations"]
        if v["impact"] in BLOCKING_IMPACTS
    ]
