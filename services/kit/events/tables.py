"""The event tables every service keeps in its own schema: the outbox it
publishes from and the inbox its consumers record applied events in."""

from __future__ import annotations

from sqlalchemy import MetaData, Table

from services.kit.events.consumer import inbox_table
from services.kit.events.outbox import outbox_table


def add_event_tables(metadata: MetaData) -> tuple[Table, Table]:
    """The outbox and inbox tables, part of each service's own schema."""
    return outbox_table(metadata), inbox_table(metadata)
