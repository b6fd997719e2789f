"""The benchmark's data: users (a heavy one, an event-lag probe, a bulk-import target
and light ones), their categories and expenses, generated from a seeded random source
and handed to each service's own bulk load (services/<name>/seed.py), after the
services' migrations. Reporting's copy and rollups come from reporting's own rebuild
(see bench/run.py), so the reports really reflect this data."""

from __future__ import annotations

import random
import secrets
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import psycopg

from bench.settings import DataShape, MeasuredMeshSettings
from services.auth.domain import Account
from services.auth.seed import seed_accounts
from services.kit.db.bulk import libpq_dsn, vacuum_analyze
from services.kit.domain.ids import new_id
from services.kit.domain.money import currencies
from services.ledger.domain import Category, Expense, load_default_categories
from services.ledger.seed import seed_categories, seed_expenses
from services.user.domain import Profile, ProfileRules
from services.user.seed import seed_profiles

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
        accounts = [Account(user.user_id, user.email, display_name=user.email) for user in result.users]
        result.rows |= seed_accounts(self.dsn, accounts, password, self.settings.auth, self.now)
        result.rows |= seed_profiles(self.dsn, self._profiles(accounts))
        result.rows |= seed_categories(self.dsn, self._categories(result.users))
        result.rows |= seed_expenses(self.dsn, self._expenses(result.users, population))
        result.expenses = result.rows["ledger.expenses"]
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

    def _profiles(self, accounts: Sequence[Account]) -> Iterator[Profile]:
        """The profile each account's signup would have made: the configured defaults."""
        user = self.settings.user
        rules = ProfileRules(tuple(user.notification_channels), user.defaults)
        for account in accounts:
            yield rules.new_profile(account.user_id, account.email, account.display_name, self.now)

    def _categories(self, users: Sequence[SeededUser]) -> Iterator[Category]:
        style = {default.name: default for default in self.defaults}
        parents = {extra.name: extra.parent for extra in self.shape.heavy_extra_categories}
        for user in users:
            for name, category_id in user.categories.items():
                default = style.get(name)
                parent = parents.get(name, "")
                yield Category(
                    category_id=category_id,
                    user_id=user.user_id,
                    name=name,
                    parent_id=user.categories[parent] if parent else None,
                    color=default.color if default else "",
                    icon=default.icon if default else "",
                    create_time=self.now,
                    update_time=self.now,
                )

    def _expenses(self, users: Sequence[SeededUser], population: Population) -> Iterator[Expense]:
        """The heavy user's years of history, then each light user's year."""
        heavy_days = (self.today - _years_before(self.today, self.shape.heavy_years)).days
        for user in users:
            if user.role == "heavy":
                count, days = population.heavy_expenses, heavy_days
            elif user.role == "light":
                count, days = population.expenses_per_user, self.shape.light_history_days
            else:
                continue
            yield from self.factory.expenses(user.user_id, list(user.categories.values()), count, days)


def settle(database_url: str, schema: str) -> None:
    """After a bulk load into this schema (reporting's rebuild): VACUUM ANALYZE its tables
    and CHECKPOINT, so that the first steps measure the mesh rather than autovacuum and
    the checkpoint that the load left for later."""
    with psycopg.connect(libpq_dsn(database_url), autocommit=True) as connection:
        rows = connection.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,))
        for (table,) in rows.fetchall():
            vacuum_analyze(connection, schema, table)
        connection.execute("CHECKPOINT")
