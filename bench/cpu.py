"""Which cores the load generator and the system under test run on, how busy each
core was during a step (from /proc/stat), and how long each component's threads
waited for a core (schedstat)."""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path

PROC_STAT = Path("/proc/stat")
PIN_MODES = ("auto", "split", "off")
# With fewer cores, pinning would halve the system under test: `auto` leaves them shared.
AUTO_SPLIT_MIN_CORES = 4


@dataclass(frozen=True)
class CpuPlan:
    loadgen: list[int]
    sut: list[int]

    @property
    def pinned(self) -> bool:
        return bool(self.loadgen)

    @property
    def sut_list(self) -> str | None:
        return ",".join(map(str, self.sut)) if self.pinned else None

    def describe(self) -> str:
        if not self.pinned:
            return (
                f"not pinned: load generator and system under test share all {len(self.sut)} cores "
                "(use --pin split to pin them apart)"
            )
        return (
            f"pinned with taskset: load generator (this process, wrk) on core(s) {_cores(self.loadgen)}; "
            f"mesh (launcher, services, Envoy) on core(s) {_cores(self.sut)}; PostgreSQL, Redis and NATS "
            "are this machine's own daemons and run unpinned"
        )


def _cores(cores: list[int]) -> str:
    return ",".join(map(str, cores))


def plan(mode: str) -> CpuPlan:
    cores = sorted(os.sched_getaffinity(0))
    split = mode == "split" or (mode == "auto" and len(cores) >= AUTO_SPLIT_MIN_CORES)
    if not split or len(cores) < 2:
        return CpuPlan(loadgen=[], sut=cores)
    # One core generates load (wrk and this process need less than one).
    return CpuPlan(loadgen=cores[-1:], sut=cores[:-1])


def pin_self(plan_: CpuPlan) -> None:
    """This process (the open-loop generator, wrk's parent) onto the load generator cores."""
    if plan_.pinned:
        os.sched_setaffinity(0, plan_.loadgen)


STEAL = "steal"


def _read_times() -> dict[str, tuple[int, int, int]]:
    """{cpuN: (busy, total, steal)} jiffies; "cpu" sums every core."""
    times = {}
    for line in PROC_STAT.read_text().splitlines():
        name, *fields = line.split()
        if not name.startswith("cpu"):
            continue
        values = [int(value) for value in fields[:8]]
        idle = values[3] + values[4]  # idle + iowait
        times[name] = (sum(values) - idle, sum(values), values[7])
    return times


class CpuMeter:
    """Busy percentage per core between start() and stop(), and "steal": the share of
    all cores' time the hypervisor gave to other machines (counted as busy above). On a
    shared host it comes in bursts, and with it latency tails and slower steps."""

    def __init__(self) -> None:
        self._start: dict[str, tuple[int, int, int]] = {}

    def start(self) -> None:
        self._start = _read_times()

    def stop(self) -> dict[str, float]:
        end = _read_times()
        usage = {}
        for name, (busy, total, steal) in end.items():
            busy0, total0, steal0 = self._start.get(name, (busy, total, steal))
            elapsed = total - total0
            if name == "cpu":
                usage[STEAL] = round(100.0 * (steal - steal0) / elapsed, 1) if elapsed else 0.0
            else:
                usage[name] = round(100.0 * (busy - busy0) / elapsed, 1) if elapsed else 0.0
        return usage


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")
LOAD_GENERATOR = "load generator (this process, wrk)"
POSTGRES_SHARED = ("walwriter", "checkpointer", "background writer", "autovacuum", "logical replication")


def _process_ticks(pid: int) -> int:
    """utime + stime of one process, in clock ticks (0 once it is gone)."""
    try:
        fields = (PROC / str(pid) / "stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def _engine_pids(database: str) -> dict[str, list[int]]:
    """This machine's PostgreSQL (the run's own backends, and the shared writers), Redis, NATS."""
    found: dict[str, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if command.startswith("postgres:"):
            if database in command:
                label = "postgres (this run)"
            elif any(word in command for word in POSTGRES_SHARED):
                label = "postgres (wal, checkpoints)"
            else:
                continue
        elif "redis-server" in command:
            label = "redis"
        elif "nats-server" in command:
            label = "nats"
        else:
            continue
        found.setdefault(label, []).append(int(entry.name))
    return found


def _thread_waits(pid: int) -> dict[int, int]:
    """Nanoseconds each thread of a process spent runnable but waiting for a core
    (the second field of its schedstat); empty once the process is gone."""
    waits = {}
    try:
        tasks = list((PROC / str(pid) / "task").iterdir())
    except OSError:
        return waits
    for task in tasks:
        try:
            waits[int(task.name)] = int((task / "schedstat").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue  # the thread ended meanwhile
    return waits


class ProcessMeter:
    """Per component between start() and stop(), as % of one core: CPU time, and
    time its threads waited for a core (a thread runnable but not running: with
    every core busy, this queueing is where latency tails come from)."""

    def __init__(self, pids: dict[str, list[int]], database: str) -> None:
        self.pids = pids
        self.database = database
        self._start: dict[int, int] = {}
        self._waits: dict[int, int] = {}
        self._began = 0.0
        self._own = (0.0, 0.0)
        self.waiting: dict[str, float] = {}

    def _all(self) -> dict[str, list[int]]:
        return {**self.pids, **_engine_pids(self.database)}

    def start(self) -> None:
        every = [pid for pids in self._all().values() for pid in pids]
        self._start = {pid: _process_ticks(pid) for pid in every}
        self._waits = {tid: waited for pid in every for tid, waited in _thread_waits(pid).items()}
        own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        self._own = (own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime)
        self._began = time.perf_counter()

    def stop(self) -> dict[str, float]:
        elapsed = time.perf_counter() - self._began
        usage: dict[str, float] = {}
        waiting: dict[str, float] = {}
        for label, pids in self._all().items():
            ticks = sum(_process_ticks(pid) - self._start.get(pid, 0) for pid in pids)
            usage[label] = round(100 * ticks / CLOCK_TICKS / elapsed, 1)
            # A thread started during the step waited only during the step.
            waited = sum(
                ns - self._waits.get(tid, 0) for pid in pids for tid, ns in _thread_waits(pid).items()
            )
            waiting[label] = round(100 * waited / 1e9 / elapsed, 1)
        self.waiting = _largest_first(waiting)
        own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        spent = (own.ru_utime + own.ru_stime - self._own[0]) + (
            children.ru_utime + children.ru_stime - self._own[1]
        )
        usage[LOAD_GENERATOR] = round(100 * spent / elapsed, 1)
        return _largest_first(usage)


def _largest_first(shares: dict[str, float]) -> dict[str, float]:
    return dict(sorted(shares.items(), key=lambda item: -item[1]))
