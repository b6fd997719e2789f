"""Bulk load for benchmarks and load tests: accounts written by COPY straight into the
auth schema (after its migrations), all with one password hashed once at the configured
cost, so that logins verify as they would for real accounts and never ask for a rehash."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from services.auth.domain import Account
from services.auth.passwords import argon2_hasher
from services.auth.settings import AuthSettings
from services.auth.storage import users
from services.kit.db.bulk import analyze_and_count, copy_streams

SCHEMA = "auth"


def seed_accounts(
    dsn: str, accounts: Iterable[Account], password: str, settings: AuthSettings, now: datetime
) -> dict[str, int]:
    """Loads the accounts into an empty schema; returns the rows per table."""
    password_hash = argon2_hasher(settings).hash(password)
    with copy_streams(dsn, SCHEMA, users) as (rows,):
        for account in accounts:
            rows.write(
                {
                    "id": account.user_id,
                    "email": account.email,
                    "display_name": account.display_name,
                    "password_hash": password_hash,
                    "created_at": now,
                    "password_changed_at": now,
                    "email_verified_at": now if account.email_verified else None,
                }
            )
    return analyze_and_count(dsn, SCHEMA, [users])
