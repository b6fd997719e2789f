"""Small SQL helpers that differ between PostgreSQL and SQLite."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from functools import cache
from typing import Any

import psycopg
from psycopg.rows import namedtuple_row
from psycopg.types.json import Json
from sqlalchemy import JSON, BigInteger, Column, Integer, String, Table, and_, bindparam, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.sql import Executable
from sqlalchemy.sql.selectable import TableValuedAlias

# BIGINT on PostgreSQL, INTEGER on SQLite (only INTEGER PRIMARY KEY autoincrements there).
BigIntId = BigInteger().with_variant(Integer(), "sqlite")
# Fewer rows go through a plain (executemany) INSERT. COPY skips SQLAlchemy's statement
# machinery: from 3 rows on it costs ~25% less client CPU and time than executemany
# (one row is cheaper as a plain INSERT). Writers of several tables at once do better
# still with one_round_trip().
COPY_MIN_ROWS = 3
# session.info key of the inserts insert_many queues inside one_round_trip().
_QUEUED = "kit.sqlutil.queued"
# A statement and its parameters, for fetch_together().
Query = tuple[Executable, dict[str, Any]]


async def insert_ignore(session: AsyncSession, table: Table, values: dict[str, Any]) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING; True when the row was inserted.
    RETURNING tells, since psycopg's async rowcount is -1 for this statement."""
    dialect = postgresql if session.bind.dialect.name == "postgresql" else sqlite
    first_column = next(iter(table.primary_key.columns))
    statement = dialect.insert(table).values(**values).on_conflict_do_nothing().returning(first_column)
    result = await session.execute(statement)
    return result.first() is not None


async def upsert_if_newer(
    session: AsyncSession, table: Table, values: dict[str, Any], changes: dict[str, Any], version: str
) -> bool:
    """A copy kept from versioned events: INSERT `values` (the whole row, `version` column
    included), or on a key conflict UPDATE SET `changes` and the version only where the stored
    version is below the new one; True when the row was written. One statement, so it is a
    compare-and-set whatever else runs (PostgreSQL re-checks the condition on the locked row):
    an older event redelivered after a newer one changes nothing. Version 0 means unversioned
    (a producer older than the field): it replaces only an unversioned row, as before versions."""
    dialect = postgresql if session.bind.dialect.name == "postgresql" else sqlite
    insert = dialect.insert(table).values(**values)
    stored, new = table.c[version], insert.excluded[version]
    statement = insert.on_conflict_do_update(
        index_elements=list(table.primary_key.columns),
        set_={**changes, version: new},
        where=or_(stored < new, and_(new == 0, stored == 0)),
    ).returning(next(iter(table.primary_key.columns)))
    return (await session.execute(statement)).first() is not None


@cache
def rows_insert(dialect_name: str, table: Table) -> Any:
    """An INSERT of any number of rows in one statement, executed with
    execute_rows(); add ON CONFLICT as needed (with DO UPDATE, rows must not
    repeat a key). PostgreSQL gets one array per column (INSERT ... SELECT
    unnest(...)): a third of the client CPU of an executemany of the same rows,
    and less server CPU. SQLite runs in-process, where an executemany is cheap."""
    if dialect_name != "postgresql":
        return sqlite.insert(table)
    return _unnest_insert(table, list(table.columns))


def _unnest_insert(table: Table, columns: list[Column[Any]], prefix: str = "") -> Any:
    """INSERT ... SELECT unnest(:<prefix><column>), ...: one array parameter per column."""
    arrays = [
        func.unnest(bindparam(prefix + column.name, type_=postgresql.ARRAY(_item_type(column))))
        for column in columns
    ]
    return postgresql.insert(table).from_select(columns, select(*arrays))


def wanted_keys(*columns: str) -> TableValuedAlias:
    """`unnest(:wanted_<column>, ...) AS wanted(<column>, ...)`: keys to look up, sent as one
    text array per column (values from wanted_values()). One statement text whatever
    their number, so psycopg prepares it; join it (LATERAL, see kit.idempotency) to the
    table's key index, where an IN list's generic plan would compare every stored key."""
    arrays = (bindparam(f"wanted_{column}", type_=postgresql.ARRAY(String)) for column in columns)
    return func.unnest(*arrays).table_valued(*columns).render_derived(name="wanted")


def wanted_values(columns: Sequence[str], keys: Sequence[Sequence[Any]]) -> dict[str, list[Any]]:
    """The parameters of wanted_keys(*columns) for these keys (tuples in column order)."""
    return {f"wanted_{column}": [key[index] for key in keys] for index, column in enumerate(columns)}


def _item_type(column: Column[Any]) -> Any:
    # An explicit cast to VARCHAR(n) would silently truncate; the column's own
    # length is still enforced on assignment.
    return String() if isinstance(column.type, String) else column.type


async def execute_rows(
    session: AsyncSession, statement: Any, table: Table, rows: Sequence[dict[str, Any]]
) -> list[Any]:
    """Runs a rows_insert(dialect, table) statement, built once (ON CONFLICT and RETURNING
    added as needed), with rows holding every column; the rows RETURNING gives. PostgreSQL
    gets binary arrays straight through the driver: psycopg's text arrays escape every
    element in Python, a fifth of the reporting consumer's CPU. SQLite: an executemany."""
    connection = await session.connection()
    if connection.dialect.name != "postgresql":
        result = await connection.execute(statement, list(rows))
        return list(result.all()) if result.returns_rows else []
    sql, columns = _binary_arrays_statement(connection.dialect, statement, table)
    values = {name: [process(row[name]) for row in rows] for name, process in columns}
    return await _on_driver(connection, sql, values)


async def _on_driver(connection: AsyncConnection, sql: str, values: dict[str, Any]) -> list[Any]:
    """psycopg SQL on the session's own driver connection (its transaction); the rows it
    returns, if any. psycopg's errors become SQLAlchemy's, as from session.execute
    (e.g. IntegrityError for a duplicate key)."""
    driver = (await connection.get_raw_connection()).driver_connection
    try:
        async with driver.cursor() as cursor:
            await cursor.execute(sql, values)
            return await cursor.fetchall() if cursor.description is not None else []
    except psycopg.Error as error:
        raise DBAPIError.instance(sql, None, error, psycopg.Error) from error


async def fetch_together(session: AsyncSession, queries: Sequence[Query]) -> list[list[Any]]:
    """The rows of each query (read by column name), in the session's transaction.
    PostgreSQL gets them all in one round trip (psycopg's pipeline mode), with the
    BEGIN of a transaction not started yet: under load each round trip waits its
    turn in a busy event loop, so a group commit's reads cost a round trip each
    in wall time, not CPU. For short reads: in pipeline mode psycopg waits for read
    or write readiness, so it spins while PostgreSQL works. The statements must
    compile without their values (no expanding IN: join wanted_keys() instead).
    Elsewhere they run one after another."""
    connection = await session.connection()
    if connection.dialect.name != "postgresql":
        return [(await connection.execute(statement, values)).all() for statement, values in queries]
    driver = (await connection.get_raw_connection()).driver_connection
    compiled = [_driver_sql(connection.dialect, statement) for statement, _ in queries]
    try:
        async with driver.pipeline():
            cursors = [driver.cursor(row_factory=namedtuple_row) for _ in queries]
            for cursor, (sql, defaults), (_, values) in zip(cursors, compiled, queries, strict=True):
                await cursor.execute(sql, {**defaults, **values})
            return [await cursor.fetchall() for cursor in cursors]
    except psycopg.Error as error:
        raise DBAPIError.instance(";".join(sql for sql, _ in compiled), None, error, psycopg.Error) from error


@cache
def _driver_sql(dialect: Dialect, statement: Executable) -> tuple[str, dict[str, Any]]:
    """psycopg's SQL with binary parameters, and the values the statement itself binds
    (e.g. a LIMIT)."""
    compiled = statement.compile(dialect=dialect)
    return _binary_parameters(str(compiled)), {k: v for k, v in compiled.params.items() if v is not None}


@cache
def _binary_arrays_statement(
    dialect: Dialect, statement: Any, table: Table
) -> tuple[str, list[tuple[str, Callable[[Any], Any]]]]:
    """The statement in psycopg's SQL with binary parameters, and per column its
    parameter name and bind processing (which the raw driver does not do)."""
    sql, _ = _driver_sql(dialect, statement)
    return sql, [(column.name, _driver_processor(column, dialect)) for column in table.columns]


async def insert_ignore_many(
    session: AsyncSession, table: Table, rows: Sequence[dict[str, Any]], returning: str
) -> set[Any]:
    """Multi-row INSERT ... ON CONFLICT DO NOTHING of rows holding every column;
    the `returning` column's values of the rows inserted."""
    if not rows:
        return set()
    statement = _ignoring_insert(session.bind.dialect.name, table, returning)
    return {row[0] for row in await execute_rows(session, statement, table, rows)}


@cache
def _ignoring_insert(dialect_name: str, table: Table, returning: str) -> Any:
    return rows_insert(dialect_name, table).on_conflict_do_nothing().returning(table.c[returning])


async def insert_many(session: AsyncSession, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Bulk INSERT of rows with the same keys. On PostgreSQL, COPY in the session's
    transaction once there are enough rows: for a thousand rows about twice as fast
    as executemany, and ~7x faster than a multi-row INSERT ... VALUES."""
    if not rows:
        return
    queued: list[tuple[Table, Sequence[dict[str, Any]]]] | None = session.info.get(_QUEUED)
    if queued is not None:
        queued.append((table, rows))
        return
    if session.bind.dialect.name != "postgresql" or len(rows) < COPY_MIN_ROWS:
        await session.execute(table.insert(), list(rows))
        return
    connection = await session.connection()
    dialect = connection.dialect
    columns = [column for column in table.columns if column.name in rows[0]]
    # COPY skips SQLAlchemy's bind processing: apply it here (UtcDateTime, JSON).
    processors = [_driver_processor(column, dialect) for column in columns]
    names = ", ".join(dialect.identifier_preparer.quote(column.name) for column in columns)
    statement = f"COPY {dialect.identifier_preparer.format_table(table)} ({names}) FROM STDIN"
    driver = (await connection.get_raw_connection()).driver_connection
    try:
        async with driver.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                await copy.write_row(
                    [process(row[column.name]) for column, process in zip(columns, processors, strict=True)]
                )
    except psycopg.Error as error:
        # The exceptions of the executemany path, e.g. IntegrityError for a duplicate key.
        raise DBAPIError.instance(statement, None, error, psycopg.Error) from error


def _driver_processor(column: Column[Any], dialect: Dialect) -> Callable[[Any], Any]:
    if isinstance(column.type, JSON):
        return lambda value: None if value is None else Json(value)
    return column.type.bind_processor(dialect) or (lambda value: value)


@asynccontextmanager
async def one_round_trip(session: AsyncSession) -> AsyncIterator[None]:
    """Inside, insert_many() only queues its rows; leaving, PostgreSQL gets them all
    in one statement (a data-modifying CTE per queued insert, one binary array per
    column): one round trip where COPY costs two per table, and less client CPU
    than COPY's per-row work. Nothing inside may read the queued rows back; an error
    surfaces on leaving. Elsewhere (SQLite, nested) insert_many runs as usual."""
    if session.bind.dialect.name != "postgresql" or _QUEUED in session.info:
        yield
        return
    queued: list[tuple[Table, Sequence[dict[str, Any]]]] = []
    session.info[_QUEUED] = queued
    try:
        yield
    finally:
        session.info.pop(_QUEUED, None)
    if queued:
        await _insert_together(session, queued)


async def _insert_together(
    session: AsyncSession, queued: Sequence[tuple[Table, Sequence[dict[str, Any]]]]
) -> None:
    connection = await session.connection()
    shape = tuple((table, tuple(rows[0])) for table, rows in queued)
    statement, parameters = _inserts_statement(connection.dialect, shape)
    values = {
        name: [process(row[key]) for row in rows]
        for (_, rows), columns in zip(queued, parameters, strict=True)
        for name, key, process in columns
    }
    await _on_driver(connection, statement, values)


ColumnParameter = tuple[str, str, Callable[[Any], Any]]


@cache
def _inserts_statement(
    dialect: Dialect, shape: tuple[tuple[Table, tuple[str, ...]], ...]
) -> tuple[str, list[list[ColumnParameter]]]:
    """`WITH i0 AS (INSERT ... SELECT unnest(...)), i1 AS (...) SELECT 1` in psycopg's
    SQL, and per insert its (parameter, column, bind processing) triples: the raw
    driver skips SQLAlchemy's processing (UtcDateTime, JSON). Parameters are binary
    (%(name)b): the text format escapes every bytea and JSON element."""
    inserts: list[str] = []
    parameters: list[list[ColumnParameter]] = []
    for index, (table, names) in enumerate(shape):
        columns = [column for column in table.columns if column.name in names]
        prefix = f"i{index}_"
        insert = _unnest_insert(table, columns, prefix)
        inserts.append(f"i{index} AS ({insert.compile(dialect=dialect)})")
        parameters.append([(prefix + c.name, c.name, _driver_processor(c, dialect)) for c in columns])
    statement = _binary_parameters(f"WITH {', '.join(inserts)} SELECT 1")
    return statement, parameters


def _binary_parameters(sql: str) -> str:
    """psycopg's %(name)s placeholders as %(name)b: parameters sent in binary."""
    return re.sub(r"%\((\w+)\)s", r"%(\1)b", sql)
