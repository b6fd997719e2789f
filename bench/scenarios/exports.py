"""Issue 18's user-facing paths: the CSV export of a date range (a streamed
google.api.HttpBody download) and the summary of a custom range of days."""

from __future__ import annotations

from datetime import timedelta
from itertools import cycle

from bench import wrk
from bench.api import bearer, rest_outcome
from bench.context import Bench, p99_at_most
from bench.scenarios.common import heavy_months, month_end

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
