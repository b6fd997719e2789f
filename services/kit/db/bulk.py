"""Bulk load with PostgreSQL COPY, for the services' seed modules (benchmarks and load
tests): rows go straight into a service's tables, given as {column: value} in the
service's own row mapping, then the tables are vacuumed, analyzed and counted."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy import JSON, Table


def libpq_dsn(database_url: str) -> str:
    """SQLAlchemy's postgresql+psycopg:// URL as a libpq one."""
    return database_url.replace("postgresql+psycopg://", "postgresql://", 1)


def _copied_columns(table: Table) -> list[str]:
    """All but a serial primary key (the database numbers it)."""
    return [
        column.name for column in table.columns if not (column.primary_key and column.autoincrement is True)
    ]


class CopyStream:
    """One COPY ... FROM STDIN on its own connection, so that several tables load at once.
    JSON columns take the Python value and are serialised here; None stays NULL."""

    def __init__(self, dsn: str, schema: str, table: Table) -> None:
        self.columns = _copied_columns(table)
        self._json_at = [at for at, name in enumerate(self.columns) if isinstance(table.c[name].type, JSON)]
        names = sql.SQL(", ").join(sql.Identifier(name) for name in self.columns)
        statement = sql.SQL("COPY {}.{} ({}) FROM STDIN").format(
            sql.Identifier(schema), sql.Identifier(table.name), names
        )
        self._connection = psycopg.connect(dsn)
        self._copy_manager = self._connection.cursor().copy(statement)
        self._copy = self._copy_manager.__enter__()
        self.count = 0

    def write(self, row: Mapping[str, Any]) -> None:
        values = [row[name] for name in self.columns]
        for at in self._json_at:
            if values[at] is not None:
                values[at] = json.dumps(values[at])
        self._copy.write_row(values)
        self.count += 1

    def finish(self) -> None:
        self._copy_manager.__exit__(None, None, None)
        self._connection.commit()
        self._connection.close()

    def abandon(self) -> None:
        self._connection.close()


@contextmanager
def copy_streams(dsn: str, schema: str, *tables: Table) -> Iterator[tuple[CopyStream, ...]]:
    """One stream per table, all committed when the block ends, none if it raises."""
    streams: list[CopyStream] = []
    try:
        for table in tables:
            streams.append(CopyStream(dsn, schema, table))
        yield tuple(streams)
    except BaseException:
        for stream in streams:
            stream.abandon()
        raise
    for stream in streams:
        stream.finish()


def vacuum_analyze(connection: psycopg.Connection[Any], schema: str, table: str) -> sql.Composed:
    """VACUUM ANALYZE one table (autocommit connection); returns its qualified name."""
    name = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))
    connection.execute(sql.SQL("VACUUM ANALYZE {}").format(name))
    return name


def analyze_and_count(dsn: str, schema: str, tables: Sequence[Table]) -> dict[str, int]:
    """Planner statistics, as autovacuum would gather after a load; rows per "schema.table"."""
    counts = {}
    with psycopg.connect(dsn, autocommit=True) as connection:
        for table in tables:
            name = vacuum_analyze(connection, schema, table.name)
            row = connection.execute(sql.SQL("SELECT count(*) FROM {}").format(name)).fetchone()
            counts[f"{schema}.{table.name}"] = int(row[0]) if row else 0
    return counts
