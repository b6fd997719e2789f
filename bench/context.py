"""Everything a scenario needs (the mesh, the seeded users, clients, the profile),
and the steps scenarios are made of: a wrk run, a closed-loop or open-loop run in
this process, each measured, checked against its target and compared with the
baseline."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import nats
import psycopg
import redis.asyncio as aioredis
from nats.aio.client import Client as NatsClient
from nats.js.errors import NotFoundError

from bench import wrk
from bench.api import Addresses, RestClients, TokenPool
from bench.cpu import LOAD_GENERATOR, STEAL, CpuMeter, CpuPlan, ProcessMeter
from bench.load import LATE_SEND_WARNING_MS, Call, closed_loop, open_loop
from bench.mesh import NATS_URL, REDIS_URL, BenchMesh
from bench.seed import SeedResult
from bench.settings import MeasuredMeshSettings, Profile, Targets
from bench.stats import OK, ScenarioResult
from services.kit.db.bulk import libpq_dsn
from services.launcher.up import tool

Check = Callable[[ScenarioResult], bool]
# Source address blocks (127.0.<block>.x): token logins, login load, throttling checks,
# password reset requests.
TOKEN_BLOCK, LOGIN_BLOCK, THROTTLE_BLOCK, RESET_BLOCK = 2, 1, 3, 4
SETTLE_POLL_SECONDS = 0.25
# pg_stat_database counters recorded per step: transactions, new connections, rows.
DATABASE_COUNTERS = (
    "xact_commit",
    "xact_rollback",
    "sessions",
    "tup_returned",
    "tup_fetched",
    "tup_inserted",
    "tup_updated",
    "tup_deleted",
    "blks_read",
    "blks_hit",
)
STATS_FLUSH_SECONDS = 1.5
TABLES_REPORTED = 6
# Reporting's durable consumer of ledger expense events (services/reporting/server.py).
EXPENSE_CONSUMER = "reporting_expenses"


@dataclass(frozen=True)
class Target:
    text: str
    check: Check


def p99_at_most(limit_ms: float) -> Target:
    return Target(f"p99 ≤ {limit_ms:g} ms", lambda result: result.latency.p99 <= limit_ms)


@dataclass
class Bench:
    mesh: BenchMesh
    settings: MeasuredMeshSettings
    seed: SeedResult
    profile: Profile
    targets: Targets
    cpu: CpuPlan
    nonce: str
    results: list[ScenarioResult] = field(default_factory=list)
    baselines: dict[str, float] = field(default_factory=dict)
    py_spy: list[str] = field(default_factory=list)
    profile_dir: Path | None = None
    # The heavy user's expenses span this many years up to today (UTC, as seeded).
    seed_years: int = 5
    today: date = field(default_factory=lambda: datetime.now(UTC).date())

    async def __aenter__(self) -> Bench:
        self.rest = RestClients(self.mesh.base_url)
        self.tokens = TokenPool(self.rest, self.seed.password, Addresses(TOKEN_BLOCK))
        self.redis = aioredis.Redis.from_url(REDIS_URL)
        self.nats: NatsClient = await nats.connect(NATS_URL, connect_timeout=2)
        self.db = await psycopg.AsyncConnection.connect(libpq_dsn(self.mesh.database_url), autocommit=True)
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.rest.close()
        await self.redis.aclose()
        await self.nats.close()
        await self.db.close()

    # ------------------------------------------------------------------ steps

    def ran_since_baseline(self, baseline_scenario: str) -> bool:
        """Whether a step of another scenario ran after the last baseline row."""
        for result in reversed(self.results):
            if result.baseline:
                return False
            if result.scenario != baseline_scenario:
                return True
        return True

    def _finish(
        self, result: ScenarioResult, target: Target | None, usage: dict[str, dict[str, float]] | None = None
    ) -> ScenarioResult:
        if usage:
            result.extra["cpu_steal_percent"] = usage["cores"].pop(STEAL)
            result.cpu_percent = usage["cores"]
            result.extra["cpu_by_component"] = usage["components"]
            # Busy time (% of one core) no process of this run accounts for: other work on
            # the machine, and kernel time such as interrupts. High values flag a noisy step.
            others = sum(usage["cores"].values()) - sum(usage["components"].values())
            result.extra["cpu_unaccounted"] = round(max(0.0, others), 1)
            if "database" in usage:
                result.extra["database"] = _database_summary(usage["database"])
            result.cpu_ms_per_request = _ms_per_request(usage["components"], result)
            result.extra["cpu_wait_by_component"] = usage["waiting"]
            # What the mesh logged during the step (a collection pausing a loop, a slow call)
            # explains a tail the figures alone do not.
            result.extra["mesh_warnings"] = usage["warnings"]
            result.cpu_wait_ms_per_request = _ms_per_request(usage["waiting"], result)
        # Ratios compare like with like: closed-loop rows, same path, same load generator.
        kind = f"{result.path} {result.load.split(',')[0]}"
        baseline = self.baselines.get(kind)
        if result.baseline:
            self.baselines[kind] = result.throughput
        elif result.load.startswith("closed-loop") and baseline:
            # The latest baseline row of the kind: measured just before (baseline_again).
            result.ratio = result.throughput / baseline
            result.extra["baseline_throughput"] = round(baseline, 1)
        if target is not None:
            result.target = target.text
            result.passed = result.requests > 0 and result.errors == 0 and target.check(result)
        self.results.append(result)
        print(_progress(result), flush=True)
        return result

    async def wrk_step(
        self,
        scenario: str,
        variant: str,
        variants: list[wrk.Variant],
        connections: int,
        target: Target | None = None,
        baseline: bool = False,
    ) -> ScenarioResult:
        """Closed-loop REST load through the gateway."""
        seconds = self.profile.duration_seconds
        if self.profile.warmup_seconds >= 1:
            await asyncio.to_thread(
                wrk.run,
                self.mesh.base_url,
                variants,
                connections,
                self.profile.warmup_seconds,
                self.nonce + "w",
            )
        async with self.measuring(scenario, variant, seconds) as usage:
            nonce = f"{self.nonce}-{len(self.results)}"
            result = await asyncio.to_thread(
                wrk.run, self.mesh.base_url, variants, connections, seconds, nonce
            )
        outcomes = {OK: result.requests - result.errors.get("status", 0), **result.errors}
        row = ScenarioResult(
            scenario=scenario,
            variant=variant,
            load=f"closed-loop wrk, {connections} conn",
            requests=result.requests,
            errors=result.error_count,
            seconds=result.seconds,
            throughput=result.requests / result.seconds if result.seconds else 0.0,
            latency=result.latency,
            baseline=baseline,
            outcomes=outcomes,
        )
        # Every unique request id the step sent starts with this (see bench/wrk.py).
        row.extra["request_id_prefix"] = f"{nonce}-"
        return self._finish(row, target, usage)

    async def closed_step(
        self,
        scenario: str,
        variant: str,
        call: Call,
        connections: int,
        *,
        path: str = "gRPC",
        tool: str = "grpc.aio",
        target: Target | None = None,
        baseline: bool = False,
    ) -> ScenarioResult:
        seconds = self.profile.duration_seconds
        if self.profile.warmup_seconds:
            await closed_loop(call, connections, 0, self.profile.warmup_seconds)
        async with self.measuring(scenario, variant, seconds) as usage:
            measurement = await closed_loop(call, connections, 0, seconds)
        row = ScenarioResult.from_measurement(
            scenario,
            variant,
            f"closed-loop {tool}, {connections} conn",
            measurement,
            path=path,
            baseline=baseline,
        )
        return self._finish(row, target, usage)

    async def open_step(
        self,
        scenario: str,
        variant: str,
        call: Call,
        rate: float,
        *,
        path: str = "REST",
        tool: str = "h11",
        target: Target | None = None,
        seconds: float | None = None,
        warmup: bool = True,
    ) -> ScenarioResult:
        seconds = seconds or self.profile.open_loop_seconds(rate, judged=target is not None)
        warmup_seconds = self.profile.warmup_seconds if warmup else 0.0
        async with self.measuring(scenario, variant, seconds + warmup_seconds) as usage:
            report = await open_loop(call, rate, seconds, warmup_seconds)
        row = ScenarioResult.from_measurement(
            scenario, variant, f"open-loop {tool}, {rate:g}/s", report, path=path
        )
        row.extra["rate"] = rate
        row.extra["max_send_delay_ms"] = round(report.max_send_delay_ms, 2)
        if report.max_send_delay_ms > LATE_SEND_WARNING_MS:
            row.notes.append(f"generator fell behind its schedule by up to {report.max_send_delay_ms:.1f} ms")
        return self._finish(row, target, usage)

    def record(
        self,
        result: ScenarioResult,
        target: Target | None = None,
        usage: dict[str, dict[str, float]] | None = None,
    ) -> ScenarioResult:
        """A row measured by a scenario's own means (event lag, import, throttling)."""
        return self._finish(result, target, usage)

    # ------------------------------------------------------------- profiling

    @contextlib.asynccontextmanager
    async def measuring(
        self, scenario: str, variant: str, seconds: float
    ) -> AsyncIterator[dict[str, dict[str, float]]]:
        """CPU per core, and CPU and waits for a core per component (% of one core), while
        a step runs; what the mesh logged meanwhile; py-spy."""
        assert self.mesh.process is not None
        pids = {name: [pid] for name, pid in self.mesh.service_pids().items()}
        pids["launcher (log relay)"] = [self.mesh.process.pid]
        cores, components = CpuMeter(), ProcessMeter(pids, self.mesh.database_name)
        usage: dict[str, dict[str, float]] = {}
        counting = self.profile.database_counters
        async with self._profiling(scenario, variant, seconds):
            before = await self._database_counters() if counting else {}
            log_start = self.mesh.log_size()
            cores.start()
            components.start()
            yield usage
            usage["cores"] = cores.stop()
            usage["components"] = components.stop()
            usage["waiting"] = components.waiting
            usage["warnings"] = self.mesh.warnings(since=log_start)
            if counting:
                # A backend publishes its counters about a second after its transactions.
                await asyncio.sleep(STATS_FLUSH_SECONDS)
                after = await self._database_counters()
                usage["database"] = {name: after[name] - before.get(name, 0) for name in after}

    async def _database_counters(self) -> dict[str, float]:
        columns = ", ".join(DATABASE_COUNTERS)
        cursor = await self.db.execute(
            f"SELECT {columns} FROM pg_stat_database WHERE datname = %s", (self.mesh.database_name,)
        )
        row = await cursor.fetchone()
        assert row is not None
        counters = dict(zip(DATABASE_COUNTERS, (float(value or 0) for value in row), strict=True))
        # Rows read per table (sequential + index fetches): which table a step really reads.
        cursor = await self.db.execute(
            "SELECT schemaname || '.' || relname, seq_tup_read + coalesce(idx_tup_fetch, 0) "
            "FROM pg_stat_user_tables"
        )
        for table, rows_read in await cursor.fetchall():
            counters[f"rows read: {table}"] = float(rows_read or 0)
        return counters

    @contextlib.asynccontextmanager
    async def _profiling(self, scenario: str, variant: str, seconds: float) -> AsyncIterator[None]:
        """py-spy samples (collapsed stacks: `python -m bench.profiles FILE`, or load them
        in speedscope.app) of the chosen services while a step runs (--py-spy)."""
        if not self.py_spy or self.profile_dir is None:
            yield
            return
        pids = self.mesh.service_pids()
        slug = "-".join(part for part in f"{scenario}-{variant}".replace("/", " ").split())
        recorders = [
            await asyncio.create_subprocess_exec(
                tool("py-spy"),
                "record",
                "--pid",
                str(pids[name]),
                "--duration",
                # An upper bound: the step interrupts it when done.
                str(round(seconds) + 120),
                "--rate",
                "200",
                "--nonblocking",
                "--format",
                "raw",
                "--output",
                str(self.profile_dir / f"{slug}-{name}.txt"),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            for name in self.py_spy
            if name in pids
        ]
        try:
            yield
        finally:
            # py-spy writes what it has sampled when interrupted.
            for recorder in recorders:
                with contextlib.suppress(ProcessLookupError):
                    recorder.send_signal(signal.SIGINT)
                await recorder.wait()

    # ---------------------------------------------------------------- settle

    async def pending_events(self) -> tuple[int, int]:
        """(ledger outbox rows not yet published, events reporting has not applied yet)."""
        cursor = await self.db.execute("SELECT count(*) FROM ledger.outbox WHERE published_at IS NULL")
        row = await cursor.fetchone()
        unpublished = int(row[0]) if row else 0
        durable = f"{self.mesh.event_prefix}_{EXPENSE_CONSUMER}"
        try:
            info = await self.nats.jetstream().consumer_info(
                f"{self.mesh.event_prefix.upper()}_EVENTS", durable
            )
        except NotFoundError:
            return unpublished, 0
        return unpublished, int(info.num_pending or 0) + int(info.num_ack_pending or 0)

    async def settle(self) -> float:
        """Waits until every ledger event is published and applied by reporting; seconds waited."""
        started = time.perf_counter()
        deadline = started + self.profile.settle_timeout_seconds
        while time.perf_counter() < deadline:
            if await self.pending_events() == (0, 0):
                return time.perf_counter() - started
            await asyncio.sleep(SETTLE_POLL_SECONDS)
        raise TimeoutError(f"events still pending after {self.profile.settle_timeout_seconds:g} s")


def _database_summary(deltas: dict[str, float]) -> dict[str, float]:
    """The database-wide counters, then the tables the step read most from."""
    counters = {name: deltas[name] for name in DATABASE_COUNTERS if deltas.get(name)}
    tables = sorted(
        ((name, rows) for name, rows in deltas.items() if name not in DATABASE_COUNTERS and rows > 0),
        key=lambda item: -item[1],
    )
    return counters | dict(tables[:TABLES_REPORTED])


def _ms_per_request(shares: dict[str, float], result: ScenarioResult) -> float | None:
    """Per-component shares of a core (CPU time, or waits for a core) as milliseconds per
    request of the system under test (everything but the load generator). CPU per request
    is steadier than throughput when the machine is shared."""
    if not result.requests or not result.seconds:
        return None
    busy = sum(share for name, share in shares.items() if not name.startswith(LOAD_GENERATOR))
    return busy / 100 * result.seconds * 1000 / result.requests


def _progress(result: ScenarioResult) -> str:
    verdict = {True: "pass", False: "FAIL", None: ""}[result.passed]
    logged = result.extra.get("mesh_warnings")
    return (
        f"  {result.scenario:<22} {result.variant:<26} {result.throughput:>9.1f} {result.unit:<10} "
        f"p99 {result.latency.p99:>8.2f} ms  errors {result.errors:<5} {verdict}"
        + (f"  (mesh warnings: {logged})" if logged else "")
    )
