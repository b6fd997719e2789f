"""Step lengths of the benchmark's profiles (bench/config.toml)."""

from __future__ import annotations

import pytest

from bench.settings import load_config


@pytest.mark.parametrize("profile", ["full", "dev", "quick"])
def test_open_loop_steps_judged_by_a_p99_last_for_enough_requests(profile: str) -> None:
    settings = load_config().profiles[profile]
    minimum = settings.judged_open_loop_min_requests
    assert minimum >= 1000  # a p99 among at least 1,000 requests: the tenth-slowest, not one stall
    for rate in (25.0, 50.0, 200.0):
        judged = settings.open_loop_seconds(rate, judged=True)
        assert judged * rate >= minimum
        assert judged >= settings.duration_seconds
        # Steps no target judges keep the profile's length (login at 10/s would take 100 s).
        assert settings.open_loop_seconds(rate, judged=False) == settings.duration_seconds


def test_the_smoke_profile_stays_short() -> None:
    smoke = load_config().profiles["smoke"]
    assert smoke.open_loop_seconds(10.0, judged=True) == smoke.duration_seconds
