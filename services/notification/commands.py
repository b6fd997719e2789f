"""Operator commands: `python -m services.notification dlq list|show SEQ|replay SEQ`,
the dead letters of the delivery queue (NotificationInternalService does the same
over gRPC with an operator token)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click

from services.kit.config.secrets import nats_password
from services.kit.db.engine import Database
from services.kit.domain.errors import NotFound
from services.kit.domain.timestamps import rfc3339
from services.kit.events.bus import EventBus
from services.kit.logs import configure_logging
from services.notification.queue import DeadLetterRecord, DeliveryQueue
from services.notification.settings import NotificationMeshSettings
from services.notification.usecases import DeadLetters

SERVICE = "notification"
CONNECT_TIMEOUT_SECONDS = 10.0
T = TypeVar("T")


@click.group()
def dlq() -> None:
    """The delivery jobs that failed every try (the dead-letter stream)."""


@dlq.command("list")
@click.option("--limit", default=50, show_default=True, help="Dead letters shown, oldest first.")
@click.option("--after", default=0, help="Only those after this sequence number.")
def list_dead_letters(limit: int, after: int) -> None:
    records, total = _run(lambda letters: letters.list(after, limit))
    for record in records:
        click.echo(_line(record))
    click.echo(f"{len(records)} shown, {total} held")


@dlq.command("show")
@click.argument("sequence", type=int)
def show(sequence: int) -> None:
    record = _run(lambda letters: letters.get(sequence))
    for name, value in (
        ("sequence", record.sequence),
        ("delivery", record.delivery_id),
        ("channel", record.channel),
        ("attempts", record.attempts),
        ("dead since", rfc3339(record.dead_at)),
        ("reason", record.reason),
    ):
        click.echo(f"{name:>10}: {value}")


@dlq.command("replay")
@click.argument("sequence", type=int)
def replay(sequence: int) -> None:
    delivery_id = _run(lambda letters: letters.replay(sequence))
    click.echo(f"delivery {delivery_id} queued again")


def _line(record: DeadLetterRecord) -> str:
    return (
        f"{record.sequence}\t{rfc3339(record.dead_at)}\t{record.channel}\t{record.delivery_id}\t"
        f"{record.attempts}\t{record.reason}"
    )


def _run(work: Callable[[DeadLetters], Awaitable[T]]) -> T:
    settings = NotificationMeshSettings()
    configure_logging(SERVICE, settings.log_level)
    try:
        return asyncio.run(_with_dead_letters(settings, work))
    except NotFound as error:
        raise click.ClickException(error.message) from None
    except TimeoutError:
        raise click.ClickException(f"NATS at {settings.resolved_nats_url} did not answer") from None


async def _with_dead_letters(
    settings: NotificationMeshSettings, work: Callable[[DeadLetters], Awaitable[T]]
) -> T:
    password = nats_password(settings, SERVICE)
    bus = EventBus(
        settings.resolved_nats_url,
        settings.event_prefix,
        f"{SERVICE}-dlq",
        SERVICE if password is not None else None,
        password,
    )
    db = Database.for_service(settings, SERVICE)
    bus.start()
    try:
        await asyncio.wait_for(bus.wait_ready(), CONNECT_TIMEOUT_SECONDS)
        return await work(DeadLetters(db, DeliveryQueue(bus, settings.notification.delivery)))
    finally:
        await bus.close()
        await db.dispose()
