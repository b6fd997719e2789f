"""Operator commands: `python -m services.ds rebuild [--user-id X]`."""

from __future__ import annotations

import asyncio

import click
import grpc

from services.ds.rebuild import rebuild as rebuild_from_ledger
from services.ds.settings import DsMeshSettings
from services.kit.db.engine import Database
from services.kit.domain.errors import Unavailable
from services.kit.identity.service_tokens import ServiceTokens
from services.kit.logs import configure_logging
from services.ledger.client import LedgerClient

SERVICE = "ds"
STREAM_TIMEOUT_SECONDS = 600.0


@click.command()
@click.option("--user-id", default=None, help="Rebuild only this user (default: everyone).")
def rebuild(user_id: str | None) -> None:
    """Recompute ds's copies of expenses and categories, and its daily rollup, from the ledger."""
    settings = DsMeshSettings()
    configure_logging(SERVICE, settings.log_level)
    try:
        counts = asyncio.run(_rebuild(settings, user_id))
    except grpc.aio.AioRpcError as error:
        address = settings.service_address("ledger")
        raise click.ClickException(f"the ledger at {address} did not answer ({error.code().name})") from None
    except Unavailable as error:
        # Auth refused ds's service credential (logged with the details).
        raise click.ClickException(error.message) from None
    click.echo(f"{SERVICE}: rebuilt {len(counts)} user(s), {sum(counts.values())} expense(s)")


async def _rebuild(settings: DsMeshSettings, user_id: str | None) -> dict[str, int]:
    db = Database.for_service(settings, SERVICE)
    # ds's own identity: the ledger's streams are mesh-internal.
    tokens = ServiceTokens.for_service(settings, SERVICE, wait_for_ready=False)
    ledger = LedgerClient(
        settings.service_address("ledger"), STREAM_TIMEOUT_SECONDS, tokens, wait_for_ready=False
    )
    try:
        return await rebuild_from_ledger(db, ledger, user_id)
    finally:
        await ledger.close()
        await tokens.close()
        await db.dispose()
