"""Bulk seeding with PostgreSQL COPY, straight into each service's schema (after the
services' own migrations): auth users with one precomputed argon2id hash, profiles,
each user's default categories (and the ledger's category_owners row, so the ledger
does not seed them again), expenses with their tag rows and their append-only
"create" ledger entry. Reporting's copy and rollups come from reporting's own
rebuild (see rebuild_reports), so the reports really reflect this data.

Rows are built with the ledger's own domain types and row mapping, so a seeded
expense is exactly what the ledger would have written for it."""

from __future__ import annotations

import json
import random
import secrets
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
from argon2 import PasswordHasher, Type
from psycopg import sql
from sqlalchemy import Table

from bench.settings import DataShape, MeasuredMeshSettings
from services.auth import storage as auth_storage
from services.kit.domain.ids import new_id
from services.kit.domain.money import currencies
from services.ledger import storage as ledger_storage
from services.ledger.domain import Expense, entry, load_default_categories, name_key
from services.user import storage as user_storage

# Deterministic data (ids aside): two runs seed the same amounts, dates and merchants.
RANDOM_SEED = 20261121
AMOUNT_RANGE_MAJOR = (10, 5000)
SECOND_CURRENCY = "USD"
SOURCES = (("manual", 0.7), ("sms", 0.2), ("import", 0.1))


@dataclass(frozen=True)
class SeededUser:
    role: str  # "heavy", "light", "lag" (event lag probe) or "import" (bulk import target)
    user_id: str
    email: str
    categories: dict[str, str]  # name -> category id


@dataclass
class SeedResult:
    password: str
    users: list[SeededUser]
    expenses: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def of_role(self, role: str) -> list[SeededUser]:
        return [user for user in self.users if user.role == role]

    @property
    def heavy(self) -> SeededUser:
        return self.of_role("heavy")[0]


def libpq_dsn(database_url: str) -> str:
    """SQLAlchemy's postgresql+psycopg:// URL as a libpq one."""
    return database_url.replace("postgresql+psycopg://", "postgresql://", 1)


def _columns(table: Table) -> list[str]:
    """The columns a COPY fills: all but a serial primary key (the database numbers it)."""
    return [
        column.name for column in table.columns if not (column.primary_key and column.autoincrement is True)
    ]


def _copy_statement(schema: str, table: Table) -> sql.Composed:
    columns = sql.SQL(", ").join(sql.Identifier(name) for name in _columns(table))
    return sql.SQL("COPY {}.{} ({}) FROM STDIN").format(
        sql.Identifier(schema), sql.Identifier(table.name), columns
    )


class CopyStream:
    """One COPY ... FROM STDIN on its own connection, rows given as {column: value}."""

    def __init__(self, dsn: str, schema: str, table: Table) -> None:
        self.columns = _columns(table)
        self.connection = psycopg.connect(dsn)
        self._cursor = self.connection.cursor()
        self._copy_manager = self._cursor.copy(_copy_statement(schema, table))
        self._copy = self._copy_manager.__enter__()
        self.count = 0

    def write(self, row: dict[str, Any]) -> None:
        self._copy.write_row(tuple(row[name] for name in self.columns))
        self.count += 1

    def finish(self) -> None:
        self._copy_manager.__exit__(None, None, None)
        self.connection.commit()
        self.connection.close()


def password_hash(settings: MeasuredMeshSettings, password: str) -> str:
    """One argon2id hash with the configured cost, so logins never ask for a rehash."""
    auth = settings.auth
    hasher = PasswordHasher(
        time_cost=auth.argon2_time_cost,
        memory_cost=auth.argon2_memory_kib,
        parallelism=auth.argon2_parallelism,
        type=Type.ID,
    )
    return hasher.hash(password)


def _years_before(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


class ExpenseFactory:
    """Random but plausible expenses, from a seeded generator."""

    def __init__(self, shape: DataShape, today: date, now: datetime) -> None:
        self.shape = shape
        self.today = today
        self.now = now
        self.random = random.Random(RANDOM_SEED)
        self.sources = [name for name, _ in SOURCES]
        self.source_weights = [weight for _, weight in SOURCES]

    def _amount(self, currency: str) -> int:
        exponent = currencies().exponent(currency)
        low, high = AMOUNT_RANGE_MAJOR
        scale = 10 if currency == SECOND_CURRENCY else 1
        return self.random.randint(low * 10**exponent, high * 10**exponent) // scale or 1

    def expenses(self, user_id: str, category_ids: Sequence[str], count: int, days: int) -> Iterator[Expense]:
        draw = self.random.random
        for _ in range(count):
            spent_on = self.today - timedelta(days=self.random.randrange(days))
            created = min(self.now, datetime(spent_on.year, spent_on.month, spent_on.day, 12, tzinfo=UTC))
            currency = SECOND_CURRENCY if draw() < self.shape.usd_share else "INR"
            tags = (self.random.choice(self.shape.tags),) if draw() < self.shape.tagged_share else ()
            uncategorized = draw() < self.shape.uncategorized_share
            yield Expense(
                expense_id=new_id(),
                user_id=user_id,
                amount_minor=self._amount(currency),
                currency=currency,
                spent_on=spent_on,
                category_id=None if uncategorized else self.random.choice(category_ids),
                merchant=self.random.choice(self.shape.merchants),
                note="",
                tags=tags,
                source=self.random.choices(self.sources, self.source_weights)[0],
                version=1,
                create_time=created,
                update_time=created,
            )


@dataclass(frozen=True)
class Population:
    light_users: int
    expenses_per_user: int
    heavy_expenses: int


class Seeder:
    def __init__(self, database_url: str, settings: MeasuredMeshSettings, shape: DataShape) -> None:
        self.dsn = libpq_dsn(database_url)
        self.settings = settings
        self.shape = shape
        self.now = datetime.now(UTC)
        self.today = self.now.date()
        self.defaults = load_default_categories(settings.ledger.default_categories_file)
        self.factory = ExpenseFactory(shape, self.today, self.now)

    def seed(self, population: Population) -> SeedResult:
        started = time.perf_counter()
        password = secrets.token_urlsafe(18)
        result = SeedResult(password=password, users=self._users(population))
        self._write_accounts(result.users, password_hash(self.settings, password))
        self._write_categories(result.users)
        result.expenses = self._write_expenses(result.users, population)
        result.rows = self._analyze()
        result.seconds = time.perf_counter() - started
        return result

    def _users(self, population: Population) -> list[SeededUser]:
        roles = ["heavy", "lag", "import", *(["light"] * population.light_users)]
        users = []
        for index, role in enumerate(roles):
            email = f"{role}{index:05d}@bench.example.com"
            users.append(SeededUser(role, new_id(), email, self._category_ids(role)))
        return users

    def _category_ids(self, role: str) -> dict[str, str]:
        names = [default.name for default in self.defaults]
        if role == "heavy":
            names += [extra.name for extra in self.shape.heavy_extra_categories]
        return {name: new_id() for name in names}

    def _write_accounts(self, users: Sequence[SeededUser], hashed: str) -> None:
        defaults = self.settings.user.defaults
        accounts = CopyStream(self.dsn, "auth", auth_storage.users)
        profiles = CopyStream(self.dsn, "user", user_storage.profiles)
        profile = {
            "default_currency": defaults.default_currency,
            "time_zone": defaults.time_zone,
            "locale": defaults.locale,
            "first_day_of_week": defaults.first_day_of_week,
            "notification_channels": json.dumps(defaults.notification_channels),
            "quiet_hours_start": None,
            "quiet_hours_end": None,
            "sms_auto_import": defaults.sms_auto_import,
            "create_time": self.now,
            "update_time": self.now,
        }
        for user in users:
            accounts.write(
                {
                    "id": user.user_id,
                    "email": user.email,
                    "display_name": user.email,
                    "password_hash": hashed,
                    "created_at": self.now,
                    "password_changed_at": self.now,
                }
            )
            profiles.write(
                {"user_id": user.user_id, "email": user.email, "display_name": user.email, **profile}
            )
        accounts.finish()
        profiles.finish()

    def _write_categories(self, users: Sequence[SeededUser]) -> None:
        style = {default.name: default for default in self.defaults}
        parents = {extra.name: extra.parent for extra in self.shape.heavy_extra_categories}
        owners = CopyStream(self.dsn, "ledger", ledger_storage.category_owners)
        categories = CopyStream(self.dsn, "ledger", ledger_storage.categories)
        for user in users:
            owners.write({"user_id": user.user_id, "seed_time": self.now})
            for name, category_id in user.categories.items():
                default = style.get(name)
                parent = parents.get(name, "")
                categories.write(
                    {
                        "id": category_id,
                        "user_id": user.user_id,
                        "name": name,
                        "name_key": name_key(name),
                        "parent_id": user.categories[parent] if parent else None,
                        "color": default.color if default else "",
                        "icon": default.icon if default else "",
                        "create_time": self.now,
                        "update_time": self.now,
                    }
                )
        owners.finish()
        categories.finish()

    def _write_expenses(self, users: Sequence[SeededUser], population: Population) -> int:
        expenses = CopyStream(self.dsn, "ledger", ledger_storage.expenses)
        entries = CopyStream(self.dsn, "ledger", ledger_storage.ledger_entries)
        tags = CopyStream(self.dsn, "ledger", ledger_storage.expense_tags)
        heavy_days = (self.today - _years_before(self.today, self.shape.heavy_years)).days
        for user in users:
            if user.role == "heavy":
                count, days = population.heavy_expenses, heavy_days
            elif user.role == "light":
                count, days = population.expenses_per_user, self.shape.light_history_days
            else:
                continue
            for expense in self.factory.expenses(user.user_id, list(user.categories.values()), count, days):
                # The ledger's own row mapping: seeded rows are what the service writes.
                expenses.write(ledger_storage._expense_columns(expense) | {"tags": json.dumps(expense.tags)})
                for tag_row in ledger_storage._tag_rows(expense):
                    tags.write(tag_row)
                audit = entry("create", user.user_id, expense.create_time, None, expense)
                entries.write(
                    {
                        "expense_id": audit.expense_id,
                        "user_id": audit.user_id,
                        "version": audit.version,
                        "action": audit.action,
                        "actor": audit.actor,
                        "time": audit.time,
                        "before": None,
                        "after": json.dumps(audit.after),
                    }
                )
        for stream in (expenses, entries, tags):
            stream.finish()
        return expenses.count

    def _analyze(self) -> dict[str, int]:
        """Planner statistics, as autovacuum would gather after a load; row counts."""
        tables = [("auth", "users"), ("user", "profiles")] + [
            ("ledger", name) for name in ("expenses", "expense_tags", "ledger_entries", "categories")
        ]
        counts = {}
        with psycopg.connect(self.dsn, autocommit=True) as connection:
            for schema, table in tables:
                name = _vacuum_analyze(connection, schema, table)
                row = connection.execute(sql.SQL("SELECT count(*) FROM {}").format(name)).fetchone()
                counts[f"{schema}.{table}"] = int(row[0]) if row else 0
        return counts


def _vacuum_analyze(connection: psycopg.Connection[Any], schema: str, table: str) -> sql.Composed:
    name = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))
    connection.execute(sql.SQL("VACUUM ANALYZE {}").format(name))
    return name


def settle(database_url: str, schema: str) -> None:
    """After a bulk load into this schema (reporting's rebuild): VACUUM ANALYZE its tables
    and CHECKPOINT, so that the first steps measure the mesh rather than autovacuum and
    the checkpoint that the load left for later."""
    with psycopg.connect(libpq_dsn(database_url), autocommit=True) as connection:
        rows = connection.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,))
        for (table,) in rows.fetchall():
            _vacuum_analyze(connection, schema, table)
        connection.execute("CHECKPOINT")
