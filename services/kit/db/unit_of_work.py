"""The unit of work: one use case's transaction. Its change, the events it publishes
(outbox rows, handed to the relay on commit) and its AIP-155 answer commit together,
or none of them does. Each service's `usecases.py` starts one per write; the API layer
never sees a transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TypeVar

from google.protobuf.message import Message
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncSession

from services.kit.db.engine import Database
from services.kit.db.idempotency import RequestKey, run_once
from services.kit.events.outbox import Outbox

ResponseT = TypeVar("ResponseT", bound=Message)


class UnitOfWork:
    """The open transaction (`session`, for the storage layer) and its events."""

    def __init__(self, session: AsyncSession, outbox: Outbox | None) -> None:
        self.session = session
        self._outbox = outbox

    async def publish(self, user_id: str, payload: Message) -> None:
        """An event about `user_id`'s data, published once (and only if) this commits."""
        await self.publish_all([(user_id, payload)])

    async def publish_all(self, events: Sequence[tuple[str, Message]]) -> None:
        """Several (user_id, payload) events in one statement, for bulk writes."""
        if self._outbox is None:
            raise RuntimeError("this service has no outbox: it publishes no events")
        await self._outbox.add_many(self.session, events)


class UnitsOfWork:
    """Starts units of work on one service's database, outbox and idempotency table."""

    def __init__(self, db: Database, outbox: Outbox | None = None, idempotency: Table | None = None) -> None:
        self.db = db
        self.outbox = outbox
        self.idempotency = idempotency

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[UnitOfWork]:
        """Committed when the block ends, rolled back if it raises."""
        async with self.db.transaction() as session:
            yield UnitOfWork(session, self.outbox)

    async def once(
        self,
        key: RequestKey | None,
        request_fingerprint: str,
        response_type: type[ResponseT],
        work: Callable[[UnitOfWork], Awaitable[ResponseT]],
        lock: Callable[[UnitOfWork], Awaitable[None]] | None = None,
    ) -> ResponseT:
        """AIP-155: with a request id, a retry gets the first answer back (stored in the
        same transaction as the work); without one the work simply runs. `lock` is the
        work's own lock, taken before the stored answer is looked up."""
        if key is None:
            async with self.begin() as unit:
                return await work(unit)
        if self.idempotency is None:
            raise RuntimeError("this service keeps no request ids")
        return await run_once(
            self.db,
            self.idempotency,
            key=key,
            request_fingerprint=request_fingerprint,
            response_type=response_type,
            work=lambda session: work(UnitOfWork(session, self.outbox)),
            lock=None if lock is None else lambda session: lock(UnitOfWork(session, self.outbox)),
        )
