"""Issue 18's user-facing paths: the CSV export of a date range (a streamed
google.api.HttpBody download) and the summary of a custom range of days; and the
account export (data portability, one JSON document of everything)."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta
from itertools import cycle
from pathlib import Path

import httpx

from bench import wrk
from bench.api import bearer, rest_outcome
from bench.context import Bench, p99_at_most
from bench.scenarios.common import heavy_months, month_end
from bench.stats import OK, Measurement, ScenarioResult

# A custom range spans up to a year: 90 days is a quarter that does not follow the calendar.
CUSTOM_RANGE_DAYS = 90
EXPORT_CONNECTIONS = 2


async def custom_range_summary(bench: Bench) -> None:
    """The heavy user's summary of 90 days starting mid-month, the start rotating over the
    seeded months: answered from the daily rollups (cached after the first request of each
    range, like every summary)."""
    token = await bench.tokens.token(bench.seed.heavy)
    starts = [month + timedelta(days=14) for month in heavy_months(bench)]
    paths = [
        f"/v1/reports/summary?period=custom&from={start}&to={start + timedelta(days=CUSTOM_RANGE_DAYS - 1)}"
        for start in starts
    ]
    target = p99_at_most(bench.targets.summary_uncached_max_p99_ms)
    variants = [wrk.Variant("GET", path, token=token) for path in paths]
    await bench.wrk_step("summary custom 90 days", "REST", variants, bench.profile.read_connections, target)


async def export_month(bench: Bench) -> None:
    """`GET /v1/expenses:export` of one month of the heavy user (a few thousand rows in a
    full profile), months rotating; the whole CSV is read. Two connections: an export is a
    rare, large answer, not a hot path."""
    token = await bench.tokens.token(bench.seed.heavy)
    client = bench.rest.get()
    paths = cycle(f"/v1/expenses:export?from={m}&to={month_end(m)}" for m in heavy_months(bench))

    async def export() -> str:
        response = await client.get(next(paths), headers={**bearer(token), "accept": "text/csv"})
        return rest_outcome(response)

    await bench.closed_step("export month CSV", "REST", export, EXPORT_CONNECTIONS, path="REST", tool="httpx")


# An account export is rare: a few downloads one after another, each read to the end.
ACCOUNT_EXPORTS = 2
ACCOUNT_EXPORT_TIMEOUT_SECONDS = 600.0
RSS_SAMPLE_SECONDS = 0.1


async def account_export(bench: Bench) -> None:
    """`GET /v1/users/me:export` of the heavy user (100,000 expenses in the full and dev
    profiles), read to the end and parsed: time, bytes, whether the document says it is
    complete, and the user service's resident memory sampled meanwhile (its peak over
    the step, and before it)."""
    token = await bench.tokens.token(bench.seed.heavy)
    user_pid = bench.mesh.service_pids()["user"]
    rss_before = _rss_kib(user_pid)
    peak = [rss_before]
    sizes: list[int] = []
    checks: list[str] = []
    measurement = Measurement()
    sampler = asyncio.create_task(_sample_rss(user_pid, peak))
    started = time.perf_counter()
    try:
        async with (
            httpx.AsyncClient(base_url=bench.mesh.base_url, timeout=ACCOUNT_EXPORT_TIMEOUT_SECONDS) as client,
            bench.measuring("account export", "REST", ACCOUNT_EXPORTS) as usage,
        ):
            for _ in range(ACCOUNT_EXPORTS):
                begin = time.perf_counter()
                body, outcome = await _download(client, token)
                measurement.add((time.perf_counter() - begin) * 1000, outcome)
                sizes.append(len(body))
                checks.append(_document_check(body))
    finally:
        sampler.cancel()
    measurement.seconds = time.perf_counter() - started
    row = ScenarioResult.from_measurement(
        "account export", "REST", f"sequential httpx, {ACCOUNT_EXPORTS} downloads", measurement
    )
    row.extra.update(bytes=sizes, user_rss_kib_before=rss_before, user_rss_kib_peak=peak[0], checks=checks)
    # A download that is not a complete document is an error, whatever its status line said.
    row.errors += sum(1 for check in checks if not check.startswith("complete"))
    row.notes.append(
        f"{max(sizes, default=0) / 1e6:.1f} MB per export; user service RSS "
        f"{rss_before / 1024:.0f} MiB before, {peak[0] / 1024:.0f} MiB peak; {', '.join(checks)}"
    )
    bench.record(row, None, usage)


async def _download(client: httpx.AsyncClient, token: str) -> tuple[bytes, str]:
    chunks: list[bytes] = []
    async with client.stream("GET", "/v1/users/me:export", headers=bearer(token)) as response:
        async for chunk in response.aiter_bytes():
            chunks.append(chunk)
    return b"".join(chunks), OK if response.is_success else str(response.status_code)


def _document_check(body: bytes) -> str:
    """ "complete, N expenses", or what is wrong with the document."""
    try:
        document = json.loads(body)
    except ValueError:
        return "not JSON"
    status = document.get("export_status", {})
    if not status.get("complete"):
        return f"incomplete: {status.get('error')}"
    return f"complete, {len(document.get('expenses', [])):,} expenses"


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def _sample_rss(pid: int, peak: list[int]) -> None:
    while True:
        peak[0] = max(peak[0], _rss_kib(pid))
        await asyncio.sleep(RSS_SAMPLE_SECONDS)
