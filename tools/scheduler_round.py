"""Measures billing's scheduler round on a fresh PostgreSQL database: SQL statements and
wall time per round over N bills and N budgets of M users (a few of them erased).

    PYTHONPATH=$PWD:$PWD/gen .venv/bin/python tools/scheduler_round.py --users 500 --bills 1000 --budgets 1000

The first round raises the alerts; the later ones find every dedupe key taken (the steady
state of a round every interval). Statements are counted as the driver receives them
(psycopg's, so the kit's raw-driver statements count too; BEGIN and COMMIT not)."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import random
import statistics
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date, timedelta
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import psycopg
from sqlalchemy import select, text

from services.billing import storage
from services.billing.domain import Bill, Budget, Settlement
from services.billing.rules import AlertSink, RuleChecks
from services.billing.scheduler import Scheduler
from services.billing.settings import BillingMeshSettings
from services.billing.storage import Calendar
from services.billing.usecases import Calendars
from services.kit.db import migrations
from services.kit.db.engine import Database
from services.kit.db.erasure import ErasedUsers
from services.kit.db.unit_of_work import UnitsOfWork
from services.kit.domain.timestamps import utcnow
from services.kit.events.outbox import Outbox
from services.ledger.replica import CategoryInfo
from tests.infra import fresh_postgres_database

ZONES = ("Asia/Kolkata", "Europe/London", "America/New_York", "Pacific/Auckland")
RECURRENCES = ("FREQ=MONTHLY", "FREQ=WEEKLY", "FREQ=YEARLY")
ERASED_EVERY = 50  # one user in 50 is erased


class StatementCounter:
    """Statements as psycopg sends them (SQLAlchemy's and the kit's raw-driver ones alike):
    an execute or a COPY one each, an executemany one per parameter set."""

    def __init__(self) -> None:
        self.count = 0
        cursor = psycopg.AsyncCursor
        execute, executemany, copy = cursor.execute, cursor.executemany, cursor.copy

        async def counted_execute(this: Any, query: Any, params: Any = None, **kwargs: Any) -> Any:
            self.count += 1
            return await execute(this, query, params, **kwargs)

        async def counted_executemany(this: Any, query: Any, params_seq: Any, **kwargs: Any) -> Any:
            params_seq = list(params_seq)
            self.count += len(params_seq)
            return await executemany(this, query, params_seq, **kwargs)

        @asynccontextmanager
        async def counted_copy(this: Any, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            self.count += 1
            async with copy(this, *args, **kwargs) as copying:
                yield copying

        cursor.execute = counted_execute  # type: ignore[method-assign]
        cursor.executemany = counted_executemany  # type: ignore[method-assign]
        cursor.copy = counted_copy  # type: ignore[assignment,method-assign]


async def seed(db: Database, users: int, bills: int, budgets: int) -> None:
    rng = random.Random(7)
    today, now = date.today(), utcnow()
    month_start = today.replace(day=1)
    user_ids = [f"user-{number:04d}" for number in range(users)]
    async with db.transaction() as session:
        for number, user_id in enumerate(user_ids):
            await storage.save_calendar(session, user_id, Calendar(ZONES[number % len(ZONES)], "monday"), 1)
            infos = [
                CategoryInfo(f"{user_id}-c{n}", f"Category {n}", f"{user_id}-c0" if n > 3 else "")
                for n in range(6)
            ]
            await storage.save_categories(session, user_id, infos)
            if number % ERASED_EVERY == 0:
                await session.execute(
                    storage.erased_users.insert().values(erased_user_id=user_id, erased_at=now)
                )
        for number in range(bills):
            first_due = today - timedelta(days=rng.randint(0, 90))
            bill = Bill(
                f"bill-{number:05d}",
                user_ids[number % users],
                f"Payee {number}",
                150000,
                "INR",
                "",
                RECURRENCES[number % len(RECURRENCES)],
                first_due,
                3,
                False,
                1,
                now,
                now,
            )
            await storage.save_bill(session, bill, bill.payee.lower(), new=True)
            if number % 3 == 0:
                await storage.settle(
                    session, bill.bill_id, Settlement(first_due, "paid", f"expense-{number:05d}", 150000), now
                )
        for number in range(budgets):
            user_id = user_ids[number % users]
            category = "" if number % 2 else f"{user_id}-c0"
            budget = Budget(
                f"budget-{number:05d}",
                user_id,
                category,
                "month",
                "INR",
                number % 4 == 0,
                (80, 100),
                month_start - timedelta(days=70),
                ((month_start - timedelta(days=70), 1_000_000),),
                0,
                1,
                now,
                now,
            )
            await storage.save_budget(session, budget, new=True)
            spent = 500_000 if number % 2 else 100_000  # half project past their amount
            await storage.replace_budget_spending(
                session, budget.budget_id, {(month_start, "INR"): (spent, 10)}
            )


async def alerts_digest(db: Database) -> str:
    """How many alerts are stored and a digest of what they say (ids aside), to compare runs."""
    columns = storage.alerts.c
    query = select(
        columns.user_id, columns.type, columns.severity, columns.title, columns.details, columns.dedupe_key
    )
    async with db.transaction() as session:
        rows = sorted(tuple(row) for row in await session.execute(query))
    return f"{len(rows)} (digest {hashlib.sha256(repr(rows).encode()).hexdigest()[:16]})"


async def measure(users: int, bills: int, budgets: int, rounds: int) -> None:
    with fresh_postgres_database() as url, TemporaryDirectory() as data_dir:
        settings = BillingMeshSettings(database_url=url, data_dir=Path(data_dir))
        await asyncio.to_thread(migrations.upgrade, "billing", settings)
        db = Database.for_service(settings, "billing")
        try:
            await seed(db, users, bills, budgets)
            async with db.engine.connect() as connection:
                await connection.execution_options(isolation_level="AUTOCOMMIT")
                await connection.execute(text("ANALYZE"))
            config = settings.billing
            units = UnitsOfWork(
                db, Outbox(storage.outbox_table, "bench", "billing"), storage.idempotency_keys
            )
            scheduler = Scheduler(
                units,
                config,
                Calendars(settings.user.defaults),
                RuleChecks(config, AlertSink(config)),
                ErasedUsers(storage.erased_users),
            )
            counter = StatementCounter()
            times = []
            for number in range(rounds):
                counter.count = 0
                started, cpu = time.perf_counter(), time.process_time()
                raised = await scheduler.round()
                elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
                label = "first (raises)" if number == 0 else "steady"
                print(
                    f"round {number + 1} [{label}]: {raised} alerts, {counter.count} statements, "
                    f"{elapsed * 1000:.0f} ms ({cpu * 1000:.0f} ms of this process's CPU)"
                )
                if number:
                    times.append(elapsed)
            median = statistics.median(times) * 1000
            print(f"alerts stored: {await alerts_digest(db)}; steady round median {median:.0f} ms")
        finally:
            await db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--bills", type=int, default=1000)
    parser.add_argument("--budgets", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    asyncio.run(measure(args.users, args.bills, args.budgets, args.rounds))


if __name__ == "__main__":
    main()
