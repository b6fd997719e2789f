"""Bulk load for benchmarks and load tests: profiles written by COPY straight into the
user schema (after its migrations), in the service's own row mapping."""

from __future__ import annotations

from collections.abc import Iterable

from services.kit.db.bulk import analyze_and_count, copy_streams
from services.user.domain import Profile
from services.user.storage import _columns, profiles

SCHEMA = "user"


def seed_profiles(dsn: str, new_profiles: Iterable[Profile]) -> dict[str, int]:
    """Loads the profiles into an empty schema; returns the rows per table."""
    with copy_streams(dsn, SCHEMA, profiles) as (rows,):
        for profile in new_profiles:
            rows.write({"user_id": profile.user_id, **_columns(profile)})
    return analyze_and_count(dsn, SCHEMA, [profiles])
