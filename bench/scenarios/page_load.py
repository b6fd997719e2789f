"""The dashboard's page load in Debian's chromium (PyPI playwright, no browser download),
signed in as the heavy user (100,000 expenses): first contentful paint, the time until
every card of the dashboard has rendered, and the page's JS + CSS gzipped.

Each load is a fresh page in the signed-in browser context (the refresh cookie kept, the
HTTP cache cleared), so it pays what a returning visitor's first visit of the day pays."""

from __future__ import annotations

import asyncio
import gzip
import shutil
import time
import urllib.request

from bench.context import Bench, Target
from bench.stats import LatencySummary, ScenarioResult

LOADS = 10
# Every card of the dashboard, each loaded on its own (services/web/static/js/app.js).
CARDS = [
    "totals",
    "by-category",
    "daily",
    "trend",
    "budget-progress",
    "upcoming-bills",
    "latest-alerts",
    "insights",
]
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
# True once no card shows "Loading…" and each has its heading (its data arrived).
RENDERED = (
    "() => " + str(CARDS).replace("'", '"') + ".every(id => { const el = document.getElementById(id);"
    " return el && el.querySelector('h2') && !el.querySelector('.loading'); })"
)


async def page_load(bench: Bench) -> None:
    executable = shutil.which("chromium")
    if executable is None:
        print("page-load: Debian's chromium is not installed (apt-get install chromium): skipped", flush=True)
        return
    heavy = bench.seed.heavy
    paints, rendered, size = await asyncio.to_thread(
        _measure, bench.mesh.base_url, executable, heavy.email, bench.seed.password
    )
    targets = bench.targets
    for variant, samples, limit in (
        ("first contentful paint", paints, targets.page_first_paint_max_ms),
        ("dashboard rendered", rendered, targets.page_rendered_max_ms),
    ):
        result = ScenarioResult(
            scenario="page-load",
            variant=variant,
            load=f"chromium, {LOADS} loads one after another",
            requests=len(samples),
            errors=0,
            seconds=sum(samples) / 1000,
            throughput=len(samples) / max(sum(samples) / 1000, 1e-9),
            latency=LatencySummary.of(samples),
            unit="loads/s",
            path="browser",
        )
        result.extra["js_css_gzip_bytes"] = size
        bench.record(result, Target(f"p90 ≤ {limit:g} ms", lambda r, limit=limit: r.latency.p90 <= limit))
    bundle = ScenarioResult(
        scenario="page-load",
        variant="JS + CSS gzipped",
        load="one page",
        requests=1,
        errors=0,
        seconds=0.0,
        throughput=0.0,
        latency=LatencySummary.of([0.0]),
        unit="-",
        path="browser",
    )
    bundle.notes.append(f"{size / 1024:.1f} KiB")
    bundle.extra["js_css_gzip_bytes"] = size
    limit_kib = targets.page_assets_max_gzip_kib
    bench.record(bundle, Target(f"≤ {limit_kib:g} KiB", lambda _: size <= limit_kib * 1024))


def _measure(
    base_url: str, executable: str, email: str, password: str
) -> tuple[list[float], list[float], int]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.goto(f"{base_url}/#/login")
        page.get_by_label("Email").fill(email)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_selector("#totals h2", timeout=30_000)
        assets = page.evaluate(
            "performance.getEntriesByType('resource').map(e => e.name)"
            ".filter(n => n.endsWith('.js') || n.endsWith('.css'))"
        )
        size = sum(len(gzip.compress(urllib.request.urlopen(url).read())) for url in assets)
        page.close()
        paints, rendered = [], []
        for _ in range(LOADS):
            page = context.new_page()
            cdp = context.new_cdp_session(page)
            cdp.send("Network.clearBrowserCache")
            started = time.perf_counter()
            page.goto(f"{base_url}/#/dashboard")
            _wait_rendered(page)
            rendered.append((time.perf_counter() - started) * 1000)
            paints.append(
                page.evaluate("performance.getEntriesByName('first-contentful-paint')[0].startTime")
            )
            page.close()
        browser.close()
    return paints, rendered, size


def _wait_rendered(page, seconds: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    """Polled through the DevTools protocol: the page's CSP forbids what wait_for_function
    compiles in the page."""
    deadline = time.perf_counter() + seconds
    while not page.evaluate(RENDERED):
        if time.perf_counter() > deadline:
            raise TimeoutError("the dashboard did not render")
        page.wait_for_timeout(10)
