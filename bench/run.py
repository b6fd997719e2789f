"""One benchmark run: a fresh database, the services' migrations, the seed, the mesh
(pinned), reporting's rebuild (then VACUUM and CHECKPOINT) and its check, the scenarios, the report; then
everything it created is removed (unless kept)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import secrets
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import report, wrk
from bench.context import Bench
from bench.cpu import CpuPlan, pin_self, plan
from bench.mesh import OUTER_SETTINGS, BenchMesh, fresh_database
from bench.report import RESULTS_DIR
from bench.scenarios import SCENARIOS
from bench.scenarios.reports import verify_reports
from bench.seed import Population, Seeder, SeedResult, settle
from bench.settings import BenchConfig, MeasuredMeshSettings, load_config
from bench.stats import LatencySummary, ScenarioResult

ENGINES = {"PostgreSQL": 5432, "Redis": 6379, "NATS": 4222}


class Prerequisite(RuntimeError):
    """Something this machine must provide is missing."""


@dataclass(frozen=True)
class Options:
    profile: str = "full"
    keep: bool = False
    pin: str = "auto"
    only: Sequence[str] = ()
    results_dir: Path = RESULTS_DIR
    py_spy: Sequence[str] = ()


def check_prerequisites() -> None:
    if not wrk.available():
        raise Prerequisite("wrk is not installed (Debian/Ubuntu: apt-get install -y wrk)")
    for name, port in ENGINES.items():
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                raise Prerequisite(f"{name} is not running on 127.0.0.1:{port}")


def adopt_environment(mesh: BenchMesh) -> MeasuredMeshSettings:
    """This process reads the same settings as the mesh it measures."""
    for key in list(os.environ):
        if key.startswith("EM_") or key in OUTER_SETTINGS:
            del os.environ[key]
    os.environ.update(mesh.env)
    return MeasuredMeshSettings()


@contextlib.contextmanager
def data_directory(keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="em-bench-"))
    try:
        yield path
    finally:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)


def say(text: str) -> None:
    print(f"bench | {text}", flush=True)


def run(options: Options) -> Path:
    check_prerequisites()
    config = load_config()
    if options.profile not in config.profiles:
        raise Prerequisite(
            f"no profile {options.profile!r} in bench/config.toml ({', '.join(config.profiles)})"
        )
    cpu = plan(options.pin)
    started = datetime.now(UTC)
    run_info: dict[str, Any] = {
        "date": started.isoformat(),
        "profile": options.profile,
        "pinning": cpu.describe(),
    }
    with data_directory(options.keep) as data_dir, fresh_database(options.keep) as (database, url):
        mesh = BenchMesh(data_dir, url, config.mesh, sut_cpus=cpu.sut_list)
        settings = adopt_environment(mesh)
        run_info["machine"] = report.machine_info()
        say(f"database {database}, data dir {data_dir}, event prefix {mesh.event_prefix}")
        say(cpu.describe())
        mesh.write_config()
        seed = _prepare(mesh, settings, config, options.profile, run_info)
        results = _run_mesh(MeshRun(mesh, settings, seed, config, cpu, options, run_info))
        if options.keep:
            say(
                f"kept database {database}, data dir {data_dir}, "
                f"NATS stream and Redis keys {mesh.event_prefix}*"
            )
    run_info["duration_seconds"] = round((datetime.now(UTC) - started).total_seconds(), 1)
    return _write_results(results, run_info, options.results_dir)


@dataclass(frozen=True)
class MeshRun:
    """A seeded run, ready for its mesh; run_info collects what the JSON records."""

    mesh: BenchMesh
    settings: MeasuredMeshSettings
    seed: SeedResult
    config: BenchConfig
    cpu: CpuPlan
    options: Options
    run_info: dict[str, Any]


def _run_mesh(run: MeshRun) -> list[ScenarioResult]:
    """Starts the mesh, rebuilds the reports, runs the scenarios; stops the mesh whatever happens."""
    mesh, run_info = run.mesh, run.run_info
    try:
        started_mesh = time.perf_counter()
        mesh.start()
        run_info["mesh_start_seconds"] = round(time.perf_counter() - started_mesh, 1)
        say(f"mesh ready in {run_info['mesh_start_seconds']} s: {mesh.base_url}, services {mesh.ports}")
        _rebuild_reports(mesh, run_info)
        # The generator's own full collections would be measured as the mesh's latency.
        gc.collect()
        gc.freeze()
        return asyncio.run(_measure(run))
    finally:
        mesh.stop()
        run_info["mesh_warnings"] = mesh.warnings()
        if not run.options.keep:
            mesh.forget()


def _write_results(results: list[ScenarioResult], run_info: dict[str, Any], results_dir: Path) -> Path:
    if run_info["mesh_warnings"]:
        say(f"the mesh logged warnings (counted in the JSON): {run_info['mesh_warnings']}")
    path = report.write(results, run_info, results_dir)
    print()
    print(report.table(results))
    print()
    say(f"results written to {path}")
    return path


def _prepare(
    mesh: BenchMesh,
    settings: MeasuredMeshSettings,
    config: BenchConfig,
    profile_name: str,
    run_info: dict[str, Any],
) -> SeedResult:
    profile = config.profiles[profile_name]
    started = time.perf_counter()
    mesh.migrate()
    run_info["migrate_seconds"] = round(time.perf_counter() - started, 1)
    say(f"migrations done in {run_info['migrate_seconds']} s; seeding")
    population = Population(profile.users, profile.expenses_per_user, profile.heavy_expenses)
    seed = Seeder(mesh.database_url, settings, config.data).seed(population)
    run_info["seed"] = {"expenses": seed.expenses, "rows": seed.rows, "seconds": round(seed.seconds, 1)}
    say(f"seeded {seed.expenses:,} expenses ({seed.rows}) in {seed.seconds:.1f} s")
    return seed


def _rebuild_reports(mesh: BenchMesh, run_info: dict[str, Any]) -> None:
    """Reporting's rollups, billing's spend view and ds's copies, from the seeded ledger."""
    for service in ("reporting", "billing", "ds"):
        started = time.perf_counter()
        output = mesh.run_command("-m", f"services.{service}", "rebuild")
        run_info[f"{service}_rebuild"] = {
            "seconds": round(time.perf_counter() - started, 1),
            "output": output.strip(),
        }
        say(f"{output.strip()} in {run_info[f'{service}_rebuild']['seconds']} s")
        started = time.perf_counter()
        settle(mesh.database_url, service)
        seconds = run_info[f"{service}_settle_seconds"] = round(time.perf_counter() - started, 1)
        say(f"{service}'s tables vacuumed and analyzed, checkpoint done, in {seconds} s")


async def _measure(run: MeshRun) -> list[ScenarioResult]:
    options, config = run.options, run.config
    pin_self(run.cpu)
    profile_dir = options.results_dir / f"profiles-{run.run_info['date'][:19].replace(':', '')}"
    if options.py_spy:
        profile_dir.mkdir(parents=True, exist_ok=True)
    bench = Bench(
        mesh=run.mesh,
        settings=run.settings,
        seed=run.seed,
        profile=config.profiles[options.profile],
        targets=config.targets,
        cpu=run.cpu,
        nonce=secrets.token_hex(4),
        py_spy=list(options.py_spy),
        profile_dir=profile_dir,
        seed_years=config.data.heavy_years,
    )
    async with bench:
        verification = await verify_reports(bench)
        run.run_info["verification"] = verification
        say(f"reports reflect the seed: {verification}")
        if not verification["match"]:
            raise RuntimeError(f"the yearly summary does not match the ledger: {verification}")
        await _run_scenarios(bench, _chosen_scenarios(options.only))
    return bench.results


def _chosen_scenarios(only: Sequence[str]) -> list[str]:
    """All of them, or the baseline and those asked for, in the registry's order."""
    if not only:
        return list(SCENARIOS)
    return list(dict.fromkeys(["baseline", *(name for name in SCENARIOS if name in only)]))


async def _run_scenarios(bench: Bench, names: Sequence[str]) -> None:
    for name in names:
        say(f"scenario {name}")
        try:
            await SCENARIOS[name](bench)
        except Exception as error:
            # One broken scenario must not cost the figures of the others.
            say(f"scenario {name} failed: {error!r}")
            bench.results.append(failed_scenario(name, error))


def failed_scenario(name: str, error: Exception) -> ScenarioResult:
    return ScenarioResult(
        scenario=name,
        variant="failed",
        load="",
        requests=0,
        errors=1,
        seconds=0.0,
        throughput=0.0,
        latency=LatencySummary(0.0, 0.0, 0.0, 0.0),
        passed=False,
        notes=[f"the scenario raised {error!r}"],
    )
