"""The results: one table on stdout and bench/results/<timestamp>.json, with the
machine, the versions of every moving part and the commit."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import platform
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import click
import grpc
import nats
import psycopg
import redis
from tabulate import tabulate

from bench.mesh import NATS_URL, POSTGRES_ADMIN_DSN, REDIS_URL
from bench.stats import LatencySummary, ScenarioResult
from services.kit.config.settings import REPO_ROOT
from services.launcher.up import tool

RESULTS_DIR = Path(__file__).with_name("results")
POSTGRES_SETTINGS = ("synchronous_commit", "fsync", "wal_sync_method", "shared_buffers", "max_connections")


def _command_output(*argv: str) -> str:
    try:
        completed = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (completed.stdout or completed.stderr).strip()


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return platform.processor()


def _postgres() -> dict[str, str]:
    with psycopg.connect(POSTGRES_ADMIN_DSN) as connection:
        info = {"version": str(connection.execute("SHOW server_version").fetchone()[0])}  # type: ignore[index]
        for name in POSTGRES_SETTINGS:
            info[name] = str(connection.execute(f"SHOW {name}").fetchone()[0])  # type: ignore[index]
    return info


async def _nats_version_async() -> str:
    client = await nats.connect(NATS_URL, connect_timeout=2, max_reconnect_attempts=0)
    found = client.connected_server_version
    version = f"{found.major}.{found.minor}.{found.patch}"
    await client.close()
    return version


def _commit() -> dict[str, Any]:
    head = _command_output("git", "-C", str(REPO_ROOT), "rev-parse", "HEAD")
    dirty = bool(_command_output("git", "-C", str(REPO_ROOT), "status", "--porcelain"))
    return {"commit": head, "dirty": dirty}


def machine_info() -> dict[str, Any]:
    nats_version = asyncio.run(_nats_version_async())
    with redis.Redis.from_url(REDIS_URL) as client:
        redis_version = str(client.info("server")["redis_version"])
    return {
        "cores": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "kernel": platform.release(),
        "load_average_at_start": [round(value, 2) for value in os.getloadavg()],
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "postgresql": _postgres(),
        "redis": redis_version,
        "nats": nats_version,
        "envoy": _command_output(tool("envoy"), "--version").split("version:")[-1].strip(),
        "wrk": _command_output("wrk", "-v").splitlines()[0] if _command_output("wrk", "-v") else "",
        **_commit(),
    }


def _steal(result: ScenarioResult) -> str:
    steal = result.extra.get("cpu_steal_percent")
    return f"{steal:.1f}" if steal is not None else ""


def _row(result: ScenarioResult) -> list[Any]:
    latency = result.latency
    verdict = {True: "pass", False: "FAIL", None: ""}[result.passed]
    return [
        result.scenario,
        result.variant,
        result.load,
        result.requests,
        result.errors,
        f"{result.throughput:,.0f} {result.unit}",
        f"{latency.p50:.1f}",
        f"{latency.p90:.1f}",
        f"{latency.p99:.1f}",
        f"{latency.max:.1f}",
        f"{result.ratio:.2f}" if result.ratio is not None else "",
        f"{result.cpu_ms_per_request:.2f}" if result.cpu_ms_per_request is not None else "",
        f"{result.cpu_wait_ms_per_request:.2f}" if result.cpu_wait_ms_per_request is not None else "",
        _steal(result),
        result.target,
        verdict,
    ]


HEADERS = [
    "scenario",
    "variant",
    "load",
    "requests",
    "errors",
    "throughput",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "max ms",
    "× baseline",
    "CPU ms/req",
    "wait ms/req",
    "steal %",
    "target",
    "",
]


def table(results: list[ScenarioResult], fmt: str = "simple") -> str:
    return tabulate(
        [_row(result) for result in results], headers=HEADERS, tablefmt=fmt, disable_numparse=True
    )


def write(results: list[ScenarioResult], run: dict[str, Any], directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.fromisoformat(run["date"]).strftime("%Y%m%dT%H%M%SZ")
    suffix = "" if run["profile"] == "full" else f"-{run['profile']}"
    path = directory / f"{stamp}{suffix}.json"
    document = {**run, "scenarios": [dataclasses.asdict(result) for result in results]}
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    return path


def load(path: Path) -> tuple[dict[str, Any], list[ScenarioResult]]:
    """A results file back as (run information, rows)."""
    document = json.loads(path.read_text())
    rows = []
    for row in document.pop("scenarios"):
        row["latency"] = LatencySummary(**row["latency"])
        rows.append(ScenarioResult(**row))
    return document, rows


@click.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "fmt", default="github", show_default=True, help="A tabulate table format.")
def main(path: Path, fmt: str) -> None:
    """Prints the table of a results file (`python -m bench.report bench/results/X.json`)."""
    run, rows = load(path)
    machine = run["machine"]
    click.echo(
        f"{run['date'][:19]}Z, commit {machine['commit'][:10]}{' (dirty)' if machine['dirty'] else ''}, "
        f"{machine['cores']} × {machine['cpu_model']}, load average at start "
        f"{machine['load_average_at_start']}; {run['pinning']}\n"
    )
    click.echo(table(rows, fmt))


if __name__ == "__main__":
    main()
