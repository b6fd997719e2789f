"""The user service's bulk load (services/user/seed.py, for benchmarks and load tests) on
PostgreSQL: a seeded profile reads back as the one the service would have stored."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from services.kit.config.settings import MeshSettings
from services.kit.db import migrations
from services.kit.db.bulk import libpq_dsn
from services.kit.db.engine import Database
from services.kit.domain.ids import new_id
from services.user import storage
from services.user.domain import ProfileRules
from services.user.seed import seed_profiles
from services.user.settings import UserSettings
from tests.infra import fresh_postgres_database

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


async def test_seeded_profiles_read_back_as_stored(tmp_path: Path) -> None:
    user = UserSettings()
    rules = ProfileRules(tuple(user.notification_channels), user.defaults)
    profiles = [rules.new_profile(new_id(), f"user{n}@bench.example.com", f"User {n}", NOW) for n in range(3)]
    with fresh_postgres_database() as url:
        await asyncio.to_thread(migrations.upgrade, "user", MeshSettings(database_url=url, data_dir=tmp_path))
        rows = await asyncio.to_thread(seed_profiles, libpq_dsn(url), profiles)
        database = Database(url, schema="user", pool_size=2)
        try:
            async with database.transaction() as session:
                found = [await storage.find_profile(session, profile.user_id) for profile in profiles]
        finally:
            await database.dispose()

    assert rows == {"user.profiles": 3}
    assert found == profiles
