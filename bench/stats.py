"""What one load step measured, and the figures the report shows."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

OK = "ok"


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values (0 when there are none)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass
class Measurement:
    """Latencies (ms) of every completed request and how each one ended."""

    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)

    def add(self, latency_ms: float, outcome: str) -> None:
        self.latencies_ms.append(latency_ms)
        self.outcomes[outcome] += 1

    @property
    def requests(self) -> int:
        return sum(self.outcomes.values())

    def errors(self, expected: frozenset[str] = frozenset()) -> int:
        return sum(n for outcome, n in self.outcomes.items() if outcome != OK and outcome not in expected)


@dataclass(frozen=True)
class LatencySummary:
    p50: float
    p90: float
    p99: float
    max: float

    @classmethod
    def of(cls, latencies_ms: Sequence[float]) -> LatencySummary:
        ordered = sorted(latencies_ms)
        return cls(
            p50=percentile(ordered, 0.50),
            p90=percentile(ordered, 0.90),
            p99=percentile(ordered, 0.99),
            max=ordered[-1] if ordered else 0.0,
        )


@dataclass
class ScenarioResult:
    """One row of the table and of the JSON file."""

    scenario: str
    variant: str  # what differs between rows of one scenario: path, cache, rate
    load: str  # how the load was made, e.g. "closed-loop wrk, 32 conn"
    requests: int
    errors: int
    seconds: float
    throughput: float
    latency: LatencySummary
    unit: str = "req/s"
    target: str = ""
    passed: bool | None = None
    # Throughput over the baseline of the same path (closed-loop rows only).
    ratio: float | None = None
    # CPU time of the system under test per request (ms), from /proc: see bench/cpu.py.
    cpu_ms_per_request: float | None = None
    # Time its threads spent runnable, waiting for a busy core, per request (ms): schedstat.
    cpu_wait_ms_per_request: float | None = None
    baseline: bool = False
    path: str = "REST"
    outcomes: dict[str, int] = field(default_factory=dict)
    cpu_percent: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_measurement(
        cls,
        scenario: str,
        variant: str,
        load: str,
        measurement: Measurement,
        *,
        expected: frozenset[str] = frozenset(),
        path: str = "REST",
        **fields: Any,
    ) -> ScenarioResult:
        seconds = measurement.seconds
        return cls(
            scenario=scenario,
            variant=variant,
            load=load,
            requests=measurement.requests,
            errors=measurement.errors(expected),
            seconds=seconds,
            throughput=measurement.requests / seconds if seconds > 0 else 0.0,
            latency=LatencySummary.of(measurement.latencies_ms),
            path=path,
            outcomes=dict(measurement.outcomes),
            **fields,
        )
