"""Reads on PostgreSQL straight through psycopg, for Database.read().

SQLAlchemy's Core execution costs ~0.4 ms of CPU per statement beyond psycopg's own
(cache lookup, execution context, result metadata) and its pool checkout another
~0.13 ms: more than a 50-row page costs the driver. Here statements are still
SQLAlchemy Core, compiled by SQLAlchemy once per cache key, their parameters built and
processed as SQLAlchemy's execution would (extracted literals, expanding IN lists,
bind and result processors); only the execution machinery is skipped. Connections
come from a psycopg_pool pool in autocommit."""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from opentelemetry.trace import SpanKind
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, MultipleResultsFound, NoResultFound
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.cache_key import CacheKey
from sqlalchemy.sql.compiler import SQLCompiler

from services.kit import tracing

# The execution option by which a statement opts out of psycopg's server-side prepared
# statements: a prepared statement soon runs PostgreSQL's generic plan, made for no
# parameter values in particular; without, each execution is planned for its own values
# (the ledger's text search: a generic plan walked a 100,000-expense user's every row).
PLAN_EACH_TIME = "plan_each_time"

# Compiled statements kept per pool; statements are built once per shape in storage
# modules, so this bounds memory only against a bug.
MAX_PLANS = 2_000

Processor = Callable[[Any], Any]


class Rows:
    """The part of SQLAlchemy's Result that reads use; rows are named tuples."""

    __slots__ = ("_rows",)

    def __init__(self, rows: list[Any]) -> None:
        self._rows = rows

    def all(self) -> list[Any]:
        return self._rows

    def first(self) -> Any | None:
        return self._rows[0] if self._rows else None

    def scalar(self) -> Any | None:
        """The first column of the first row; None without rows (as Result.scalar)."""
        return self._rows[0][0] if self._rows else None

    def scalar_one(self) -> Any:
        if not self._rows:
            raise NoResultFound("No row was found when one was required")
        if len(self._rows) > 1:
            raise MultipleResultsFound("Multiple rows were found when exactly one was required")
        return self._rows[0][0]

    def scalars(self) -> list[Any]:
        return [row[0] for row in self._rows]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows)


@dataclass
class _Plan:
    compiled: SQLCompiler
    expanding: bool
    # (column position, processor) of the result columns that have one.
    result_processors: tuple[tuple[int, Processor], ...]
    # The row type, made from the first result's column names.
    row: Callable[[Sequence[Any]], Any] | None = field(default=None)


def _plan(statement: ClauseElement, dialect: Dialect, key: CacheKey | None) -> _Plan:
    # With its cache key, the compiled form takes later statements' extracted literals.
    compiled = statement.compile(dialect=dialect, cache_key=key)
    assert isinstance(compiled, SQLCompiler)
    processors = tuple(
        (index, processor)
        for index, column in enumerate(compiled._result_columns)
        if (processor := column.type._cached_result_processor(dialect, None)) is not None
    )
    return _Plan(
        compiled=compiled,
        expanding=bool(compiled.post_compile_params or compiled.literal_execute_params),
        result_processors=processors,
    )


class ReadConnection:
    """A psycopg connection in autocommit that runs SQLAlchemy Core statements."""

    def __init__(self, connection: psycopg.AsyncConnection[Any], dialect: Dialect, plans: dict[Any, _Plan]):
        self.connection = connection
        self.dialect = dialect
        self._plans = plans

    async def execute(self, statement: ClauseElement, parameters: Mapping[str, Any] | None = None) -> Rows:
        key = statement._generate_cache_key()
        plan = self._plans.get(key.key) if key is not None else None
        if plan is None:
            plan = _plan(statement, self.dialect, key)
            if key is not None:
                if len(self._plans) >= MAX_PLANS:
                    self._plans.clear()
                self._plans[key.key] = plan
        sql, values = self._sql_and_values(plan, parameters, key.bindparams if key is not None else None)
        prepare = False if statement.get_execution_options().get(PLAN_EACH_TIME) else None
        try:
            if tracing.enabled():
                cursor, rows = await self._traced(sql, values, prepare)
            else:
                cursor = await self.connection.execute(sql, values, prepare=prepare)
                rows = await cursor.fetchall()
        except psycopg.Error as error:
            # SQLAlchemy's exception types, as from any other statement.
            raise DBAPIError.instance(sql, values, error, psycopg.Error) from error
        if not rows:
            return Rows([])
        if plan.row is None:
            names = [column.name for column in cursor.description or ()]
            plan.row = namedtuple("Row", names, rename=True)._make  # type: ignore[misc]
        return Rows(self._rows(plan, rows))

    async def _traced(
        self, sql: str, values: Any, prepare: bool | None
    ) -> tuple[psycopg.AsyncCursor[Any], list[Any]]:
        """The statement as a CLIENT span, as the SQLAlchemy instrumentation names the others."""
        attributes = {"db.system": "postgresql", "db.statement": sql}
        with tracing.span(sql.split(None, 1)[0], SpanKind.CLIENT, attributes=attributes):
            cursor = await self.connection.execute(sql, values, prepare=prepare)
            return cursor, await cursor.fetchall()

    @staticmethod
    def _sql_and_values(
        plan: _Plan, parameters: Mapping[str, Any] | None, extracted: Sequence[Any] | None
    ) -> tuple[str, dict[str, Any]]:
        compiled = plan.compiled
        values = compiled.construct_params(
            parameters, escape_names=False, extracted_parameters=extracted, _no_postcompile=True
        )
        sql = compiled.string
        processors: Mapping[str, Any] = compiled._bind_processors
        if plan.expanding:
            state = compiled._process_parameters_for_postcompile(values)
            sql, values, processors = state.statement, dict(state.parameters), state.processors
        for name, process in processors.items():
            # Tuple processors belong to expanding tuple IN lists, already split above.
            if name in values and not isinstance(process, tuple):
                values[name] = process(values[name])
        escaped = compiled.escaped_bind_names
        if escaped:
            values = {escaped.get(name, name): value for name, value in values.items()}
        return sql, values

    @staticmethod
    def _rows(plan: _Plan, rows: list[tuple[Any, ...]]) -> list[Any]:
        make = plan.row
        assert make is not None
        if not plan.result_processors:
            return [make(row) for row in rows]
        result = []
        for row in rows:
            values = list(row)
            for index, process in plan.result_processors:
                values[index] = process(values[index])
            result.append(make(values))
        return result
