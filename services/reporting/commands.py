"""Operator commands: `python -m services.reporting rebuild [--user-id X]` and
`python -m services.reporting export --user-id X --period month --date 2026-11-01`."""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path

import click
import grpc

from services.kit.domain.errors import Unavailable
from services.kit.domain.periods import PERIOD_KINDS, period_containing, today_in
from services.kit.domain.timestamps import utcnow
from services.kit.identity.service_tokens import ServiceTokens
from services.kit.logs import configure_logging
from services.kit.responses import ResponseCache
from services.kit.runtime import Runtime
from services.ledger.client import LedgerClient
from services.reporting.preferences import StoredPreferences
from services.reporting.rebuild import rebuild as rebuild_from_ledger
from services.reporting.settings import ReportingMeshSettings
from services.reporting.usecases import Reports

SERVICE = "reporting"


def _settings() -> ReportingMeshSettings:
    settings = ReportingMeshSettings()
    configure_logging(SERVICE, settings.log_level)
    return settings


@click.command()
@click.option("--user-id", default=None, help="Rebuild only this user (default: everyone).")
def rebuild(user_id: str | None) -> None:
    """Recompute expense copies and rollups from the ledger, one transaction per user."""
    settings = _settings()
    try:
        counts = asyncio.run(_rebuild(settings, user_id))
    except grpc.aio.AioRpcError as error:
        # Nothing was changed: each user's rebuild is one transaction, rolled back.
        address = settings.service_address("ledger")
        raise click.ClickException(f"the ledger at {address} did not answer ({error.code().name})") from None
    except Unavailable as error:
        # Auth refused reporting's service credential (logged with the details).
        raise click.ClickException(error.message) from None
    click.echo(f"{SERVICE}: rebuilt {len(counts)} user(s), {sum(counts.values())} expense(s)")


async def _rebuild(settings: ReportingMeshSettings, user_id: str | None) -> dict[str, int]:
    runtime = Runtime(SERVICE, settings)
    # Reporting's own identity: the ledger's streams are mesh-internal.
    tokens = ServiceTokens.for_service(settings, SERVICE, wait_for_ready=False)
    ledger = LedgerClient(
        settings.service_address("ledger"),
        settings.reporting.rebuild_stream_timeout_seconds,
        tokens,
        wait_for_ready=False,
    )
    cache = ResponseCache(runtime.cache, settings.reporting.cache_ttl_seconds, "report")
    try:
        await _service_token(settings, tokens)
        return await rebuild_from_ledger(runtime.db, ledger, cache, user_id)
    finally:
        await ledger.close()
        await tokens.close()
        await runtime.cache.close()
        await runtime.db.dispose()


async def _service_token(settings: ReportingMeshSettings, tokens: ServiceTokens) -> None:
    try:
        await tokens.token()
    except grpc.aio.AioRpcError as error:
        address = settings.service_address("auth")
        raise click.ClickException(
            f"the auth service at {address} did not answer ({error.code().name})"
        ) from None


def _iso_date(_ctx: click.Context, _param: click.Parameter, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter("must be an ISO 8601 date such as 2026-11-21") from None


@click.command()
@click.option("--user-id", required=True, help="Whose expenses.")
@click.option("--period", type=click.Choice(PERIOD_KINDS), default="month", show_default=True)
@click.option(
    "--date", "day", callback=_iso_date, help="A date inside the period (default: the user's today)."
)
@click.option(
    "--output", type=click.Path(dir_okay=False, path_type=Path), help="Default: expenses-<period>-<start>.csv"
)
def export(user_id: str, period: str, day: date | None, output: Path | None) -> None:
    """Write the expenses of a period as CSV (no row limit, unlike the RPC)."""
    settings = _settings()
    path, rows = asyncio.run(_export(settings, user_id, period, day, output))
    click.echo(f"{SERVICE}: wrote {rows} expense(s) to {path}")


async def _export(
    settings: ReportingMeshSettings, user_id: str, kind: str, day: date | None, output: Path | None
) -> tuple[Path, int]:
    runtime = Runtime(SERVICE, settings)
    try:
        preferences = await StoredPreferences(runtime.db, settings.user.defaults).for_user(user_id)
        target = day or today_in(preferences.time_zone, utcnow())
        period = period_containing(kind, target, preferences.first_day_of_week)
        result = await Reports(runtime.db, settings.reporting).export(user_id, period, max_rows=None)
    finally:
        await runtime.cache.close()
        await runtime.db.dispose()
    path = output or Path(result.filename)
    path.write_text(result.csv, encoding="utf-8", newline="")
    return path, result.row_count
