"""Reporting's summaries, answered from Redis or rebuilt on a miss; and the check,
before any scenario, that the reports reflect the seeded ledger."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import date, timedelta
from itertools import cycle

from bench import wrk
from bench.api import bearer, channel, grpc_bearer, rest_outcome
from bench.context import Bench, p99_at_most
from bench.load import Call
from bench.scenarios.baseline import baseline_again
from bench.scenarios.common import RPC_TIMEOUT_SECONDS, heavy_months, rpc_outcome, summary_path
from expense.reporting.v1 import reporting_pb2, reporting_pb2_grpc
from services.kit.domain.ids import new_id
from services.kit.domain.money import format_amount


async def summaries_cached(bench: Bench) -> None:
    """This month's and this year's summary of the heavy user, answered from Redis
    (the warm-up fills the cache; nothing invalidates it meanwhile)."""
    profile = bench.profile
    token = await bench.tokens.token(bench.seed.heavy)
    target = p99_at_most(bench.targets.summary_cached_max_p99_ms)
    await baseline_again(bench, "summaries cached")
    async with channel(bench.mesh.address("reporting")) as reporting_channel:
        stub = reporting_pb2_grpc.ReportingServiceStub(reporting_channel)
        metadata = grpc_bearer(token)
        for period in ("month", "year"):
            variants = [wrk.Variant("GET", summary_path(period, bench.today), token=token)]
            await bench.wrk_step(
                f"summary {period} cached", "REST", variants, profile.read_connections, target
            )
            request = reporting_pb2.GetSummaryRequest(period=period, date=bench.today.isoformat())

            def summary(request: reporting_pb2.GetSummaryRequest = request) -> Awaitable[str]:
                return rpc_outcome(stub.GetSummary(request, metadata=metadata, timeout=RPC_TIMEOUT_SECONDS))

            await bench.closed_step(
                f"summary {period} cached", "gRPC", summary, profile.read_connections, target=target
            )


async def summaries_uncached(bench: Bench) -> None:
    """Every request misses the cache: just before it is sent, the user's report
    version in Redis is replaced (what reporting does when an event for the user is
    applied), and the period rotates over the 5 years. The step counts the cache
    entries written meanwhile: one per miss."""
    profile = bench.profile
    heavy = bench.seed.heavy
    token = await bench.tokens.token(heavy)
    target = p99_at_most(bench.targets.summary_uncached_max_p99_ms)
    entries = f"{bench.mesh.redis_prefix}:reporting:report:{heavy.user_id}:*"
    for period in ("month", "year"):
        summary = _missing_summaries(bench, period, token)
        for rate in profile.uncached_rates:
            before = await _count_keys(bench, entries)
            row = await bench.open_step(
                f"summary {period} uncached", f"REST {rate:g}/s", summary, rate, target=target
            )
            written = await _count_keys(bench, entries) - before
            row.extra["cache_entries_written"] = written
            total = row.requests + int(profile.warmup_seconds * rate)
            row.notes.append(f"{written} cache entries written for {total} requests (one per miss)")


def _missing_summaries(bench: Bench, period: str, token: str) -> Call:
    """A REST summary of the heavy user that misses the cache, periods rotating."""
    heavy = bench.seed.heavy
    client = bench.rest.get()
    version_key = f"{bench.mesh.redis_prefix}:reporting:report-version:{heavy.user_id}"
    days = [m + timedelta(days=14) for m in heavy_months(bench)]
    if period == "year":
        days = sorted({date(day.year, 6, 15) for day in days})
    paths = cycle([summary_path(period, day) for day in days])

    async def summary() -> str:
        await bench.redis.set(version_key, new_id(), ex=86_400)
        return rest_outcome(await client.get(next(paths), headers=bearer(token)))

    return summary


async def _count_keys(bench: Bench, pattern: str) -> int:
    return len([key async for key in bench.redis.scan_iter(pattern, count=1000)])


async def verify_reports(bench: Bench) -> dict[str, object]:
    """One number, two ways: the heavy user's INR total and count of last year from
    the ledger's table and from the yearly summary."""
    heavy = bench.seed.heavy
    year = bench.today.year - 1
    cursor = await bench.db.execute(
        "SELECT count(*), coalesce(sum(amount_minor), 0) FROM ledger.expenses WHERE user_id = %s "
        "AND currency = 'INR' AND delete_time IS NULL AND spent_on BETWEEN %s AND %s",
        (heavy.user_id, date(year, 1, 1), date(year, 12, 31)),
    )
    row = await cursor.fetchone()
    assert row is not None
    expected = {"count": int(row[0]), "total": format_amount(int(row[1]), "INR")}
    token = await bench.tokens.token(heavy)
    response = await bench.rest.get().get(summary_path("year", date(year, 6, 15)), headers=bearer(token))
    response.raise_for_status()
    block = next((b for b in response.json()["currencies"] if b["currency"] == "INR"), {})
    reported = {"count": int(block.get("count", 0)), "total": block.get("total", "")}
    return {"year": year, "ledger": expected, "summary": reported, "match": expected == reported}
