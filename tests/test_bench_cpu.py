"""The benchmark's per-component meter: CPU time, and time spent waiting for a core."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from bench.cpu import ProcessMeter

BURN = "while True: pass"


@pytest.fixture
def two_burners_on_one_core() -> Iterator[list[int]]:
    """Two busy processes sharing one core: each is runnable all the time, so
    each runs about half of it and waits for the core the other half."""
    core = min(os.sched_getaffinity(0))
    burners = [subprocess.Popen([sys.executable, "-c", BURN]) for _ in range(2)]
    try:
        for burner in burners:
            os.sched_setaffinity(burner.pid, {core})
        yield [burner.pid for burner in burners]
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()


def test_busy_processes_sharing_a_core_are_seen_waiting_for_it(two_burners_on_one_core: list[int]) -> None:
    meter = ProcessMeter({"burners": two_burners_on_one_core}, database="no database of this test")
    meter.start()
    time.sleep(1.0)
    cpu = meter.stop()
    # One core between them (less if the machine's other work took some of it).
    assert 30 <= cpu["burners"] <= 110, cpu
    # Whenever one ran, the other waited: together about a core's worth of waiting.
    assert meter.waiting["burners"] >= 40, meter.waiting
    assert meter.waiting["burners"] + cpu["burners"] >= 150, (cpu, meter.waiting)
