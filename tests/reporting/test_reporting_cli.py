"""The operator commands as subprocesses: `export` writes the period's CSV to a
file (the user's own week start applies), and `rebuild` refuses cleanly, changing
nothing, when the ledger does not answer."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

from services.kit.config.settings import REPO_ROOT
from services.kit.domain.ids import new_id
from services.user.client import Preferences
from tests.infra import free_port
from tests.reporting import reference
from tests.reporting.harness import Reporting, profile_event
from tests.reporting.reference import Category, Expense, LedgerModel
from tests.reporting.test_reporting_rebuild import stored_rollups


def command_environment(reporting: Reporting) -> dict[str, str]:
    """The reporting settings of the fixture, as a fresh process would read them."""
    settings = reporting.settings
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("EM_") and k not in ("DATABASE_URL", "REDIS_URL")
    }
    env["EM_DATA_DIR"] = str(settings.data_dir)
    env["EM_EVENT_PREFIX"] = settings.event_prefix
    env["EM_PORTS__LEDGER"] = str(free_port())  # nothing listens there
    if settings.database_url and settings.database_url.startswith("postgresql"):
        env["DATABASE_URL"] = settings.database_url
    if settings.redis_url:
        env["REDIS_URL"] = settings.redis_url
    return env


async def run(reporting: Reporting, *arguments: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "services.reporting", *arguments]
    return await asyncio.to_thread(
        subprocess.run,
        command,
        env=command_environment(reporting),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def spending_user(reporting: Reporting) -> LedgerModel:
    model = LedgerModel(new_id())
    await reporting.apply(
        profile_event(model.user_id, Preferences("INR", "UTC", "saturday", "en")),
        model.add_category(Category("c-home", "Home")),
        model.create(Expense(new_id(), 1999, "INR", date(2024, 3, 1), "c-home", 'Lamp, "big"')),
        model.create(Expense(new_id(), 500, "BHD", date(2024, 3, 2), "c-home", "@shop")),
        model.create(Expense(new_id(), 700, "INR", date(2024, 3, 3), "c-home", "Outside the week")),
    )
    return model


async def test_export_writes_the_periods_csv_to_a_file(reporting: Reporting, tmp_path: Path) -> None:
    model = await spending_user(reporting)
    target = tmp_path / "march-week.csv"
    done = await run(
        reporting,
        "export",
        "--user-id",
        model.user_id,
        "--period",
        "week",
        "--date",
        "2024-03-02",
        "--output",
        str(target),
    )
    assert done.returncode == 0, done.stderr
    assert f"wrote 2 expense(s) to {target}" in done.stdout
    # This user's weeks start on Saturday: 2024-03-02 .. 03-08 (Monday weeks would hold all three).
    expected, rows = reference.export_csv(model, "week", date(2024, 3, 2), "saturday")
    assert rows == 2
    assert target.read_bytes().decode("utf-8") == expected  # RFC 4180 CRLF line ends kept


async def test_export_rejects_a_bad_date(reporting: Reporting) -> None:
    done = await run(reporting, "export", "--user-id", new_id(), "--date", "2024-02-30")
    assert done.returncode == 2 and "ISO 8601 date" in done.stderr


async def test_rebuild_without_a_ledger_fails_cleanly_and_changes_nothing(reporting: Reporting) -> None:
    model = await spending_user(reporting)
    before = await stored_rollups(reporting.db, model.user_id)
    done = await run(reporting, "rebuild", "--user-id", model.user_id)
    assert done.returncode == 1
    # Neither auth (reporting's service token) nor the ledger runs: the first one asked is named.
    assert "the auth service at 127.0.0.1:" in done.stderr and "did not answer (UNAVAILABLE)" in done.stderr
    assert "Traceback" not in done.stderr
    assert await stored_rollups(reporting.db, model.user_id) == before
