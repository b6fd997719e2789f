"""Event delivery on real NATS JetStream (a unique stream prefix per test):
duplicates published past JetStream's own dedupe change nothing, and a
reporting process killed mid-stream catches up after a restart to exactly the
numbers of the ledger."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.json_format import MessageToDict
from sqlalchemy import func, select

from expense.events.v1 import events_pb2
from services.kit.config.settings import REPO_ROOT
from services.kit.db.engine import Database
from services.kit.domain.ids import new_id
from services.kit.domain.periods import period_containing
from services.kit.events.bus import EventBus, subject_for
from services.kit.events.consumer import EventConsumer, per_event
from services.kit.events.permissions import ADMIN
from services.kit.events.subscription import Event
from services.kit.tasks import cancel_and_wait
from services.reporting import storage
from services.reporting.api import currency_summary
from services.reporting.server import CATEGORY_CHANGES, EXPENSE_CHANGES
from services.reporting.settings import ReportingSettings
from services.reporting.usecases import Reports, Viewer
from tests.infra import NATS_URL, SecuredNats, free_port, fresh_postgres_database, require, unique_prefix
from tests.reporting import reference
from tests.reporting.harness import Reporting
from tests.reporting.reference import Category, Expense, LedgerModel, Viewpoint

APPLY_TIMEOUT_SECONDS = 90.0
CURRENCIES = ["INR", "JPY", "BHD"]


@pytest.fixture
async def bus() -> AsyncIterator[EventBus]:
    require("NATS", "127.0.0.1", 4222)
    bus = EventBus(NATS_URL, unique_prefix("rt"), "reporting-test")
    bus.start()
    await asyncio.wait_for(bus.wait_ready(), 10)
    yield bus
    with contextlib.suppress(Exception):
        await bus.js.delete_stream(bus.stream)
    await bus.close()


@pytest.fixture
async def secured(tmp_path: Path) -> AsyncIterator[tuple[EventBus, SecuredNats]]:
    """A NATS that requires reporting's credentials (as compose and k8s run it), and a bus
    on it as `admin`: the test publishes the ledger's and the user service's events."""
    with SecuredNats(tmp_path / "nats", unique_prefix("rt"), ["reporting"]) as server:
        bus = EventBus(server.url, server.prefix, "reporting-test", ADMIN, server.passwords[ADMIN])
        bus.start()
        await asyncio.wait_for(bus.wait_ready(), 10)
        yield bus, server
        await bus.close()


async def publish(bus: EventBus, envelope: events_pb2.EventEnvelope, msg_id: str | None = None) -> None:
    subject = subject_for(bus.prefix, envelope.type)
    await bus.publish(subject, envelope.SerializeToString(), msg_id or envelope.event_id)


def random_history(model: LedgerModel, rng: random.Random, steps: int) -> list[events_pb2.EventEnvelope]:
    categories = [model.add_category(Category(new_id(), name)) for name in ("Food", "Rent", "Travel")]
    ids = list(model.categories)
    events = list(categories)
    for _ in range(steps):
        roll = rng.random()
        if roll < 0.6 or not model.expenses:
            day = date(2024, 12, 1) + timedelta(days=rng.randrange(62))
            expense = Expense(
                new_id(),
                rng.randrange(1, 10**6),
                rng.choice(CURRENCIES),
                day,
                rng.choice(ids),
                rng.choice("ABC"),
            )
            events.append(model.create(expense))
        elif roll < 0.85:
            expense_id = rng.choice(list(model.expenses))
            day = date(2024, 12, 1) + timedelta(days=rng.randrange(62))
            events.append(model.update(expense_id, amount_minor=rng.randrange(1, 10**6), spent_on=day))
        else:
            events.append(model.delete(rng.choice(list(model.expenses))))
    return events


async def summaries(db: Database, model: LedgerModel) -> list[tuple[dict, dict]]:
    """(got, expected) month and year summaries around the history's dates."""
    reports = Reports(db, ReportingSettings())
    view = Viewpoint(date(2025, 6, 1), "monday", "INR")
    viewer = Viewer(model.user_id, view.today, view.first_day_of_week, view.default_currency)
    pairs = []
    for kind, day in (
        ("month", date(2024, 12, 15)),
        ("month", date(2025, 1, 15)),
        ("year", date(2025, 1, 1)),
    ):
        got = await reports.summary(viewer, period_containing(kind, day, "monday"))
        expected = reference.summary(model, kind, day, view)
        pairs.append(
            (
                [MessageToDict(currency_summary(block)) for block in got],
                [MessageToDict(block) for block in expected.currencies],
            )
        )
    return pairs


async def test_duplicates_past_jetstream_dedupe_change_nothing(reporting: Reporting, bus: EventBus) -> None:
    consumer = EventConsumer(
        bus,
        reporting.db,
        storage.inbox_table,
        EXPENSE_CHANGES,
        reporting.handlers.on_expense_events,
    )
    categories = EventConsumer(
        bus,
        reporting.db,
        storage.inbox_table,
        CATEGORY_CHANGES,
        per_event(reporting.handlers.on_category_event),
    )
    tasks = [asyncio.create_task(consumer.run()), asyncio.create_task(categories.run())]
    try:
        model = LedgerModel(new_id())
        events = random_history(model, random.Random(7), 60)
        for envelope in events:
            await publish(bus, envelope)
            # The same event again under the same id (JetStream drops it) and under
            # another id (as after the duplicate window): only the inbox can stop that one.
            await publish(bus, envelope)
            await publish(bus, envelope, msg_id=new_id())
        await wait_drained(bus, [consumer.durable, categories.durable])
        for got, expected in await summaries(reporting.db, model):
            assert got == expected
        assert consumer.applied == 2 * sum(e.type.startswith("expense.") for e in events)
    finally:
        await cancel_and_wait(tasks)


async def wait_drained(bus: EventBus, durables: list[str], timeout: float = APPLY_TIMEOUT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        infos = []
        for durable in durables:
            with contextlib.suppress(Exception):
                infos.append(await bus.js.consumer_info(bus.stream, durable))
        if len(infos) == len(durables) and all(i.num_pending == 0 and i.num_ack_pending == 0 for i in infos):
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"consumers {durables} did not drain in {timeout} s")


class ReportingProcess:
    """`python -m services.reporting serve` on its own database and event prefix."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None

    async def run(self, verb: str) -> asyncio.subprocess.Process:
        with self.log_path.open("ab") as log:
            return await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "services.reporting",
                verb,
                env=self.env,
                cwd=REPO_ROOT,
                stdout=log,
                stderr=log,
            )

    async def start(self) -> None:
        self.process = await self.run("serve")

    async def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(self.process.wait(), 20)


async def inbox_size(db: Database) -> int:
    async with db.transaction() as session:
        return int(
            (await session.execute(select(func.count()).select_from(storage.inbox_table))).scalar_one()
        )


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_killed_mid_stream_then_restarted_converges(
    backend: str, secured: tuple[EventBus, SecuredNats], tmp_path: Path
) -> None:
    bus, nats_server = secured
    with contextlib.ExitStack() as stack:
        database_url = (
            stack.enter_context(fresh_postgres_database())
            if backend == "postgresql"
            else f"sqlite+aiosqlite:///{tmp_path / 'reporting.sqlite3'}"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("EM_") and k not in ("REDIS_URL",)}
        env.update(
            DATABASE_URL=database_url if backend == "postgresql" else "",
            EM_DATA_DIR=str(tmp_path),
            NATS_URL=nats_server.url,
            **nats_server.password_env("reporting"),
            EM_EVENT_PREFIX=bus.prefix,
            EM_PORTS__REPORTING=str(free_port()),
        )
        if backend == "sqlite":
            env.pop("DATABASE_URL")
        service = ReportingProcess(env, tmp_path / "reporting.log")
        migrate = await service.run("migrate")
        assert await migrate.wait() == 0, (tmp_path / "reporting.log").read_text()

        rng = random.Random(11)
        models = [LedgerModel(new_id()) for _ in range(3)]
        histories = [random_history(model, rng, 1000) for model in models]
        events = [envelope for history in histories for envelope in history]
        for envelope in events:
            await publish(bus, envelope)
        for envelope in rng.sample(events, 100):
            await publish(bus, envelope, msg_id=new_id())

        db = Database(database_url, schema="reporting")
        try:
            await service.start()
            deadline = time.monotonic() + APPLY_TIMEOUT_SECONDS
            # Killed as soon as the first batch has committed.
            while await inbox_size(db) == 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            await service.kill()
            applied_before_restart = await inbox_size(db)
            assert 0 < applied_before_restart < len(events), "the kill must land mid-stream"

            await service.start()
            durables = [f"{bus.prefix}_reporting_expenses", f"{bus.prefix}_reporting_categories"]
            await wait_drained(bus, durables)
            assert await inbox_size(db) == len(events)
            for model in models:
                for got, expected in await summaries(db, model):
                    assert got == expected
                assert await rollup_rows(db, model.user_id) == expected_rollups(model)
        finally:
            await service.stop()
            await db.dispose()


async def rollup_rows(db: Database, user_id: str) -> dict[tuple, tuple[int, int]]:
    """The daily category rollup as stored."""
    table = storage.category_totals
    query = select(table).where(table.c.user_id == user_id, table.c.grain == "day")
    async with db.transaction() as session:
        rows = (await session.execute(query)).all()
    return {(r.period_start, r.category_id, r.currency): (int(r.sum_minor), int(r.count)) for r in rows}


def expected_rollups(model: LedgerModel) -> dict[tuple, tuple[int, int]]:
    sums: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    for expense in model.expenses.values():
        entry = sums[(expense.spent_on, expense.category_id, expense.currency)]
        entry[0] += expense.amount_minor
        entry[1] += 1
    return {key: (total, count) for key, (total, count) in sums.items()}


async def test_a_failing_event_neither_blocks_nor_doubles_its_batch(
    reporting: Reporting, bus: EventBus
) -> None:
    """The kit applies a fetched batch in one transaction; when one event fails, the
    batch is rolled back and its events applied one by one: the others once, the
    failing one again on redelivery (it fails in the batch and in its own transaction)."""
    model = LedgerModel(new_id())
    events = random_history(model, random.Random(5), 40)
    poison = next(e for e in events if e.type == "expense.created").event_id
    failures = []

    async def fails_once(session, events: Sequence[Event[Any]]) -> None:  # type: ignore[no-untyped-def]
        if any(event.event_id == poison for event in events) and len(failures) < 2:
            failures.append(poison)
            raise RuntimeError("a transient failure")
        await reporting.handlers.on_expense_events(session, events)

    consumers = [
        EventConsumer(bus, reporting.db, storage.inbox_table, EXPENSE_CHANGES, fails_once),
        EventConsumer(
            bus,
            reporting.db,
            storage.inbox_table,
            CATEGORY_CHANGES,
            per_event(reporting.handlers.on_category_event),
        ),
    ]
    for envelope in events:  # all in the stream before the consumers start: one big batch
        await publish(bus, envelope)
    tasks = [asyncio.create_task(consumer.run()) for consumer in consumers]
    try:
        await wait_drained(bus, [consumer.durable for consumer in consumers])
    finally:
        await cancel_and_wait(tasks)
    assert failures == [poison, poison]
    for got, expected in await summaries(reporting.db, model):
        assert got == expected
