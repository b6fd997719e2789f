"""Async SQLAlchemy 2 engine for PostgreSQL (psycopg 3) or SQLite (aiosqlite).

PostgreSQL: one schema per service, selected with search_path, so models and
migrations use unqualified names. SQLite: one file per service, WAL, and every
transaction begins IMMEDIATE so concurrent writers wait instead of failing.
Read-only paths use read(): Core statements outside any transaction (on PostgreSQL
run straight through psycopg, see kit.reads)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeAlias

import psycopg
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import Connection, DateTime, TypeDecorator, event, text
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session

from services.kit import tracing
from services.kit.config.settings import MeshSettings
from services.kit.db.reads import ReadConnection

STATEMENT_TIMEOUT_MS = 10_000
READ_CHECKOUT_TIMEOUT_SECONDS = 5
# session.info key of the callbacks to run once the session's transaction commits.
_AFTER_COMMIT = "kit.after_commit"
# Execution option of the connections Database.read() hands out (SQLite: no BEGIN).
_READ = "kit_read"
# What a query function can run on: a read connection or a transaction's session.
Queryable: TypeAlias = ReadConnection | AsyncConnection | AsyncSession


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both backends (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(UTC) if value is not None else None

    def result_processor(self, dialect: Dialect, coltype: object) -> Callable[[Any], Any] | None:
        # PostgreSQL sessions run with TimeZone=UTC: values load aware already, and a
        # processor call per value would be 10 % of a list page's read.
        if dialect.name == "postgresql":
            return None
        return super().result_processor(dialect, coltype)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def _normalise_url(url: str) -> str:
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername == "sqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    return parsed.render_as_string(hide_password=False)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" hook issue BEGIN itself (pysqlite otherwise defers it).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in ("journal_mode=WAL", "busy_timeout=10000", "foreign_keys=ON", "synchronous=NORMAL"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    # A writer takes the write lock up front, so it waits (busy_timeout) instead of
    # failing on upgrade; a read takes no lock and each statement commits on its own.
    if not connection.get_execution_options().get(_READ):
        connection.exec_driver_sql("BEGIN IMMEDIATE")


class Database:
    def __init__(self, url: str, schema: str | None = None, pool_size: int = 10) -> None:
        self.url = _normalise_url(url)
        self.is_postgres = self.url.startswith("postgresql")
        self.schema = schema if self.is_postgres else None
        self.engine = self._create_engine(pool_size)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._read_pool = self._create_read_pool(pool_size)
        self._sqlite_reader = None if self.is_postgres else self.engine.execution_options(**{_READ: True})
        # Compiled read statements by SQLAlchemy cache key (kit.reads).
        self._read_plans: dict[Any, Any] = {}
        tracing.instrument_engine(self.engine)

    @classmethod
    def for_service(cls, settings: MeshSettings, service: str, pool_size: int = 10) -> Database:
        if not settings.database_url:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        return cls(settings.database_url_for(service), schema=service, pool_size=pool_size)

    def _connect_options(self) -> str:
        # TimeZone=UTC: timestamps load as datetime.UTC-aware values whatever the
        # server's zone (a fixed offset loads and formats faster than a ZoneInfo).
        options = f"-c statement_timeout={STATEMENT_TIMEOUT_MS} -c TimeZone=UTC"
        return options + (f" -c search_path={self.schema}" if self.schema else "")

    def _create_engine(self, pool_size: int) -> AsyncEngine:
        if self.is_postgres:
            return create_async_engine(
                self.url,
                pool_size=pool_size,
                max_overflow=pool_size,
                # No pre-ping: it costs a round trip (SELECT 1) on every checkout, i.e. every
                # transaction. A connection found dead by its first statement makes SQLAlchemy
                # discard it and every pooled connection older than it, so a database restart
                # fails only the transactions in flight (grouped creates retry item by item);
                # pool_recycle retires connections before server-side idle timeouts.
                pool_recycle=1800,
                connect_args={"options": self._connect_options()},
            )
        engine = create_async_engine(self.url, connect_args={"timeout": 10})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine

    def _create_read_pool(self, pool_size: int) -> AsyncConnectionPool | None:
        """PostgreSQL reads' own pool of autocommit psycopg connections, opened by the
        first read (its checkout costs a tenth of SQLAlchemy's). SQLite: None, reads
        use the writers' engine, each connection marked as a read's."""
        if not self.is_postgres:
            return None
        conninfo = make_url(self.url).set(drivername="postgresql").render_as_string(hide_password=False)
        return AsyncConnectionPool(
            conninfo,
            min_size=1,
            max_size=2 * pool_size,
            max_lifetime=1800,
            # A checkout waits this long for a connection (the database may be down):
            # then UNAVAILABLE, like a failed connect on the writers' engine.
            timeout=READ_CHECKOUT_TIMEOUT_SECONDS,
            open=False,
            kwargs={"autocommit": True, "options": self._connect_options()},
        )

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction: committed on success, rolled back on error."""
        async with self.sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def read(self) -> AsyncIterator[ReadConnection | AsyncConnection]:
        """A Core connection for reads, outside any transaction: each statement
        commits on its own, so there is no BEGIN/COMMIT round trip and no ORM session
        (half the CPU of a one-query transaction()). Two statements may see different
        snapshots: what must agree belongs in one statement. Never write through it:
        nothing would roll back."""
        if self._sqlite_reader is not None:
            async with self._sqlite_reader.connect() as connection:
                yield connection
            return
        assert self._read_pool is not None
        if self._read_pool.closed:  # opened by the first read
            await self._read_pool.open()
        try:
            connection = await self._read_pool.getconn()
        except psycopg.Error as error:  # PoolTimeout: the database is unreachable or saturated
            raise DBAPIError.instance("connect", None, error, psycopg.Error) from error
        try:
            yield ReadConnection(connection, self.engine.dialect, self._read_plans)
        finally:
            await self._read_pool.putconn(connection)

    def pool_use(self) -> dict[str, tuple[int, int]]:
        """(in use, idle) connections of the writers' pool ("write") and, once opened, of
        PostgreSQL reads' pool ("read"), for metrics: in use near the size means waits."""
        pools: dict[str, tuple[int, int]] = {}
        pool = self.engine.pool
        if hasattr(pool, "checkedout"):  # a queue pool (SQLAlchemy's default for both backends)
            pools["write"] = (pool.checkedout(), pool.checkedin())
        if self._read_pool is not None and not self._read_pool.closed:
            stats = self._read_pool.get_stats()
            available = stats.get("pool_available", 0)
            pools["read"] = (stats.get("pool_size", 0) - available, available)
        return pools

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except Exception:
            return False
        return True

    async def dispose(self) -> None:
        if self._read_pool is not None and not self._read_pool.closed:
            await self._read_pool.close()
        await self.engine.dispose()


def after_commit(session: AsyncSession, callback: Callable[[], None]) -> None:
    """Runs callback once the session's transaction has committed (not on rollback).
    Registered callbacks are deduplicated, so adding the same one per row is free."""
    session.info.setdefault(_AFTER_COMMIT, {})[callback] = None


# Listeners on the Session class, registered once: event.listen on each session
# builds per-instance dispatch (~20 µs a transaction), a session.info entry ~1 µs.
@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    for callback in session.info.pop(_AFTER_COMMIT, ()):
        callback()


@event.listens_for(Session, "after_rollback")
def _drop_after_commit(session: Session) -> None:
    session.info.pop(_AFTER_COMMIT, None)
