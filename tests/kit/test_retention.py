"""Retention on real SQLite and PostgreSQL: the purge deletes only rows past their
window, chunk by chunk; every service's migrations index what it reads by; the
settings refuse an inbox window shorter than events can come again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import MetaData, inspect, select

from services.kit.config.settings import MeshSettings
from services.kit.db.engine import Database
from services.kit.db.idempotency import idempotency_table
from services.kit.db.retention import Purger
from services.kit.domain.timestamps import utcnow
from services.kit.events.consumer import inbox_table
from services.kit.events.outbox import outbox_table
from services.kit.grpc.server import ServiceApp
from services.ledger.server import build_app as ledger_app
from services.ledger.settings import LedgerMeshSettings
from services.reporting.server import build_app as reporting_app
from services.reporting.settings import ReportingMeshSettings
from tests.kit.conftest import database_with, migrated_connection

metadata = MetaData()
outbox = outbox_table(metadata)
inbox = inbox_table(metadata)
idempotency_keys = idempotency_table(metadata)
WINDOW = timedelta(hours=1)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    async with database_with(database_url, metadata, "retention") as database:
        yield database


async def test_the_purge_deletes_rows_past_their_window_chunk_by_chunk(db: Database) -> None:
    now = utcnow()
    old, young = now - WINDOW - timedelta(minutes=1), now - WINDOW + timedelta(minutes=1)
    async with db.transaction() as session:
        await session.execute(
            inbox.insert(),
            [{"consumer": "c", "event_id": f"old{i}", "processed_at": old} for i in range(7)]
            + [{"consumer": "c", "event_id": "young", "processed_at": young}],
        )
        await session.execute(
            outbox.insert(),
            [
                {
                    "event_id": event_id,
                    "subject": "s",
                    "body": b"",
                    "created_at": old,
                    "published_at": published,
                }
                for event_id, published in (("published", old), ("unpublished", None), ("recent", young))
            ],
        )
    purger = Purger(db, every=timedelta(minutes=10), chunk_rows=3)
    purger.keep(inbox, "processed_at", WINDOW)
    purger.keep(outbox, "published_at", WINDOW)
    purger.keep(idempotency_keys, "created_at", WINDOW)
    assert await purger.purge() == {"inbox": 7, "outbox": 1, "idempotency_keys": 0}
    async with db.read() as connection:
        assert list((await connection.execute(select(inbox.c.event_id))).scalars()) == ["young"]
        kept = set((await connection.execute(select(outbox.c.event_id))).scalars())
    assert kept == {"unpublished", "recent"}  # never published: never purged
    assert await purger.purge() == {"inbox": 0, "outbox": 0, "idempotency_keys": 0}


async def test_only_rows_matching_the_condition_are_purged(db: Database) -> None:
    old = utcnow() - WINDOW - timedelta(minutes=1)
    async with db.transaction() as session:
        await session.execute(
            inbox.insert(),
            [{"consumer": consumer, "event_id": "e", "processed_at": old} for consumer in ("gone", "kept")],
        )
    purger = Purger(db, every=timedelta(minutes=10), chunk_rows=10)
    purger.keep(inbox, "processed_at", WINDOW, only=inbox.c.consumer == "gone")
    assert await purger.purge() == {"inbox": 1}
    async with db.read() as connection:
        assert list((await connection.execute(select(inbox.c.consumer))).scalars()) == ["kept"]


@pytest.mark.parametrize("service", ["auth", "user", "ledger", "reporting"])
async def test_every_services_migrations_index_what_the_purge_reads(
    service: str, database_url: str, tmp_path: Path
) -> None:
    async with migrated_connection(service, database_url, tmp_path) as connection:
        indexes = await connection.run_sync(
            lambda sync: {
                table: {index["name"] for index in inspect(sync).get_indexes(table)}
                for table in inspect(sync).get_table_names()
            }
        )
    assert "ix_inbox_processed_at" in indexes["inbox"]
    if "idempotency_keys" in indexes:
        assert "ix_idempotency_keys_created_at" in indexes["idempotency_keys"]
    if service == "reporting":
        assert "ix_expenses_tombstones" in indexes["expenses"]


def purged_by(app: ServiceApp) -> dict[tuple[str, str, timedelta], str | None]:
    [purger] = [task.__self__ for task in app.background if getattr(task, "__func__", None) is Purger.run]
    return {
        (kept.table.name, kept.column, kept.window): None if kept.only is None else str(kept.only)
        for kept in purger.kept
    }


def test_the_ledger_purges_its_outbox_inbox_and_idempotency_keys(tmp_path: Path) -> None:
    settings = LedgerMeshSettings(data_dir=tmp_path)
    assert purged_by(ledger_app(settings)) == {
        ("outbox", "published_at", timedelta(hours=settings.outbox.replay_window_hours)): None,
        ("inbox", "processed_at", timedelta(hours=settings.retention.inbox_hours)): None,
        ("idempotency_keys", "created_at", timedelta(hours=settings.retention.idempotency_hours)): None,
    }


def test_reporting_purges_tombstones_as_long_kept_as_inbox_records(tmp_path: Path) -> None:
    settings = ReportingMeshSettings(data_dir=tmp_path)
    inbox_window = timedelta(hours=settings.retention.inbox_hours)
    assert purged_by(reporting_app(settings)) == {
        ("outbox", "published_at", timedelta(hours=settings.outbox.replay_window_hours)): None,
        ("inbox", "processed_at", inbox_window): None,
        ("expenses", "updated_at", inbox_window): "expenses.deleted",
        # An erased user's late events are skipped for as long as they could arrive.
        ("erased_users", "erased_at", inbox_window): None,
    }


def test_an_inbox_window_shorter_than_redeliveries_is_refused() -> None:
    with pytest.raises(ValidationError, match="inbox_hours"):
        MeshSettings.model_validate({"retention": {"inbox_hours": 7 * 24}})
    with pytest.raises(ValidationError, match="inbox_hours"):
        MeshSettings.model_validate(
            {"retention": {"inbox_hours": 200}, "outbox": {"replay_window_hours": 200}}
        )
    assert (
        MeshSettings.model_validate({"retention": {"inbox_hours": 7 * 24 + 1}}).retention.inbox_hours == 169
    )


def test_a_table_kept_twice_by_one_rule_is_kept_once_and_by_two_rules_refused(db: Database) -> None:
    purger = Purger(db, timedelta(minutes=10), 100)
    purger.keep(inbox, "processed_at", WINDOW)
    purger.keep(inbox, "processed_at", WINDOW)  # a second consumer sharing the inbox
    assert len(purger.kept) == 1
    with pytest.raises(ValueError, match="inbox is already kept"):
        purger.keep(inbox, "processed_at", WINDOW * 2)
    with pytest.raises(ValueError, match="inbox is already kept"):
        purger.keep(inbox, "processed_at", WINDOW, inbox.c.consumer == "other")
    assert len(purger.kept) == 1
