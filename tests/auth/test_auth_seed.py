"""The auth service's bulk load (services/auth/seed.py, for benchmarks and load tests) on
PostgreSQL: seeded accounts sign in with the one password, and never ask for a rehash."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from services.auth import storage
from services.auth.domain import Account
from services.auth.passwords import Passwords, Verification
from services.auth.seed import seed_accounts
from services.auth.settings import AuthSettings
from services.kit.config.settings import MeshSettings
from services.kit.db import migrations
from services.kit.db.bulk import libpq_dsn
from services.kit.db.engine import Database
from services.kit.domain.ids import new_id
from tests.infra import fresh_postgres_database

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


async def test_seeded_accounts_sign_in_with_the_password(tmp_path: Path) -> None:
    settings = AuthSettings()
    accounts = [Account(new_id(), f"user{n}@bench.example.com", f"User {n}") for n in range(3)]
    with fresh_postgres_database() as url:
        await asyncio.to_thread(migrations.upgrade, "auth", MeshSettings(database_url=url, data_dir=tmp_path))
        rows = await asyncio.to_thread(
            seed_accounts, libpq_dsn(url), accounts, "correct horse", settings, NOW
        )
        database = Database(url, schema="auth", pool_size=2)
        try:
            async with database.transaction() as session:
                found = [await storage.credentials_by_email(session, a.email) for a in accounts]
        finally:
            await database.dispose()

    assert rows == {"auth.users": 3}
    assert [credentials[0] for credentials in found if credentials] == accounts
    passwords = Passwords(settings)
    for credentials in found:
        assert credentials is not None
        assert await passwords.verify(credentials[1], "correct horse") == Verification(ok=True)
        assert not (await passwords.verify(credentials[1], "wrong horse")).ok
