"""The review queue lists a user's pending messages oldest first, and the messages of one
ingest call (worked concurrently, `ingest_concurrency` at a time) in the call's order: on a
migrated SQLite file and a fresh PostgreSQL database, through the real use case and parser.
Messages queued for review never reach the ledger, so its client dials nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.ds import storage
from services.ds.categories import MerchantRules
from services.ds.domain import Consent
from services.ds.parser import SmsParser
from services.ds.server import repo_path
from services.ds.settings import DsMeshSettings
from services.ds.storage import Calendar
from services.ds.templates import ParserConfig
from services.ds.usecases import Sms, SmsInput
from services.kit.db import migrations
from services.kit.db.engine import Database
from services.kit.db.unit_of_work import UnitsOfWork
from services.kit.events.outbox import Outbox
from services.kit.identity.service_tokens import ServiceTokens
from services.ledger.client import LedgerClient

USER = "u-reviews"
RECEIVED = datetime(2026, 12, 1, 6, 30, tzinfo=UTC)


@pytest.fixture
async def sms(database_url: str, tmp_path: Path) -> AsyncIterator[Sms]:
    settings = DsMeshSettings(database_url=database_url, data_dir=tmp_path)
    await asyncio.to_thread(migrations.upgrade, "ds", settings)
    db = Database.for_service(settings, "ds")
    config = settings.ds
    parser = SmsParser(ParserConfig.load(repo_path(config.parsers_dir)))
    rules = MerchantRules.load(repo_path(config.merchant_rules_file), config.fuzzy_min_score)
    units = UnitsOfWork(db, Outbox(storage.outbox_table, "t", "ds"))
    ledger = LedgerClient("127.0.0.1:9", 1.0, ServiceTokens("ds", "", "", 1.0), wait_for_ready=False)
    async with db.transaction() as session:
        consent = Consent(True, frozenset({"RNDBNK"}))
        await storage.save_profile(session, USER, consent, Calendar("UTC", "monday", "en"), 1)
    yield Sms(db, units, parser, rules, ledger, config)
    await ledger.close()
    await db.dispose()


async def test_the_reviews_of_one_call_are_listed_in_its_order(sms: Sms) -> None:
    # Doubtful debits (no merchant, no reference): each waits for review, one key per amount.
    messages = [
        SmsInput("VM-RNDBNK-S", f"Rs {amount} debited at some kiosk", RECEIVED) for amount in range(11, 51)
    ]
    results = await sms.ingest(USER, messages)
    assert [result.action for result in results] == ["pending"] * len(messages)
    async with sms.db.read() as connection:
        listed = await storage.pending_reviews(connection, USER, "", 100)
    assert [message.message_id for message in listed] == [result.review_id for result in results]
