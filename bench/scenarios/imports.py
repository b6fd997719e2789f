"""The bulk import: ImportExpenses in batches, then how long until reporting has
applied every imported expense."""

from __future__ import annotations

import asyncio
import random
import time
from datetime import date, timedelta

import grpc

from bench.api import bearer, channel, grpc_bearer, grpc_outcome
from bench.context import Bench, Target
from bench.scenarios.common import summary_path
from bench.seed import SeededUser
from bench.settings import Profile
from bench.stats import OK, Measurement, ScenarioResult
from expense.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from services.kit.domain.ids import new_id

IMPORT_TIMEOUT_SECONDS = 300.0
MERCHANTS = ("Amazon", "Swiggy", "Uber", "DMart", "Airtel")

Batch = list[ledger_pb2.ImportRow]


async def bulk_import(bench: Bench) -> None:
    """ImportExpenses (gRPC, straight to the ledger) in batches, a few in flight; then
    how long until reporting has applied every imported expense."""
    profile = bench.profile
    user = bench.seed.of_role("import")[0]
    token = await bench.tokens.token(user)
    batches = _batches(_import_rows(bench, user), profile.import_batch_rows)
    async with channel(bench.mesh.address("ledger")) as ledger_channel:
        importer = Importer(ledger_pb2_grpc.LedgerServiceStub(ledger_channel), grpc_bearer(token), batches)
        async with bench.measuring("bulk import", "gRPC", 60.0) as usage:
            await importer.run(profile.import_concurrency)
    row = _import_row(profile, importer)
    await _check_reports(bench, row, importer, user, token)
    target = Target(
        f"≤ {bench.targets.import_max_seconds:g} s", lambda r: r.seconds <= bench.targets.import_max_seconds
    )
    bench.record(row, target, usage)


def _import_rows(bench: Bench, user: SeededUser) -> Batch:
    """Random expenses over the heavy history's span, in the user's categories."""
    categories = list(user.categories.values())
    chooser = random.Random(bench.profile.import_rows)
    span = (bench.today - date(bench.today.year - bench.seed_years, 1, 1)).days
    return [
        ledger_pb2.ImportRow(
            request_id=f"{bench.nonce}-imp-{index}",
            amount=f"{chooser.randint(10, 5000)}.{chooser.randint(0, 99):02d}",
            currency="INR",
            spent_on=(bench.today - timedelta(days=chooser.randrange(span))).isoformat(),
            category_id=chooser.choice(categories),
            merchant=chooser.choice(MERCHANTS),
        )
        for index in range(bench.profile.import_rows)
    ]


def _batches(rows: Batch, size: int) -> list[Batch]:
    return [rows[start : start + size] for start in range(0, len(rows), size)]


class Importer:
    """Sends the batches with a few calls in flight; notes each call's latency and outcome."""

    def __init__(
        self,
        stub: ledger_pb2_grpc.LedgerServiceStub,
        metadata: tuple[tuple[str, str], ...],
        batches: list[Batch],
    ) -> None:
        self.stub = stub
        self.metadata = metadata
        self.batches = batches
        self.calls = Measurement()
        self.created = 0
        self.seconds = 0.0

    async def run(self, concurrency: int) -> None:
        queue: asyncio.Queue[Batch] = asyncio.Queue()
        for batch in self.batches:
            queue.put_nowait(batch)
        started = time.perf_counter()
        await asyncio.gather(*(self._worker(queue) for _ in range(concurrency)))
        self.seconds = time.perf_counter() - started
        self.calls.seconds = self.seconds

    async def _worker(self, queue: asyncio.Queue[Batch]) -> None:
        while not queue.empty():
            batch = queue.get_nowait()
            sent = time.perf_counter()
            try:
                answer = await self.stub.ImportExpenses(
                    ledger_pb2.ImportExpensesRequest(rows=batch),
                    metadata=self.metadata,
                    timeout=IMPORT_TIMEOUT_SECONDS,
                )
            except grpc.aio.AioRpcError as error:
                self.calls.add((time.perf_counter() - sent) * 1000, grpc_outcome(error))
                continue
            self.created += answer.created_count
            outcome = OK if answer.created_count == len(batch) else "rows not created"
            self.calls.add((time.perf_counter() - sent) * 1000, outcome)


def _import_row(profile: Profile, importer: Importer) -> ScenarioResult:
    row = ScenarioResult.from_measurement(
        "bulk import",
        f"{profile.import_rows} rows (gRPC)",
        f"{profile.import_concurrency} calls in flight, {profile.import_batch_rows} rows/call",
        importer.calls,
        path="gRPC",
        unit="rows/s",
    )
    row.requests = importer.created
    row.throughput = importer.created / importer.seconds if importer.seconds else 0.0
    row.extra.update(calls=len(importer.batches), created=importer.created)
    row.notes.append("latency columns are per ImportExpenses call")
    return row


async def _check_reports(
    bench: Bench, row: ScenarioResult, importer: Importer, user: SeededUser, token: str
) -> None:
    """How long until reporting had applied every imported expense, and that it counts them all."""
    caught_up = await bench.settle()
    row.extra["reports_caught_up_seconds"] = round(importer.seconds + caught_up, 1)
    row.notes.append(
        f"reporting had applied every imported expense {importer.seconds + caught_up:.1f} s after the start"
    )
    counted = await _imported_in_reports(bench, user, token)
    row.extra["counted_in_reports"] = counted
    if counted != importer.created:
        row.notes.append(f"reports count {counted} imported expenses, {importer.created} were created")
        row.errors += abs(importer.created - counted)


async def _imported_in_reports(bench: Bench, user: SeededUser, token: str) -> int:
    """The user's expenses counted by the yearly summaries (cache bypassed)."""
    version_key = f"{bench.mesh.redis_prefix}:reporting:report-version:{user.user_id}"
    await bench.redis.set(version_key, new_id(), ex=86_400)
    client = bench.rest.get()
    total = 0
    for year in range(bench.today.year - bench.seed_years, bench.today.year + 1):
        response = await client.get(summary_path("year", date(year, 6, 15)), headers=bearer(token))
        response.raise_for_status()
        total += sum(int(block["count"]) for block in response.json()["currencies"])
    return total
