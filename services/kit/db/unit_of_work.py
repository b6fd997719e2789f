"""The unit of work: one use case's transaction. Its change, the events it publishes
(outbox rows, handed to the relay on commit) and its AIP-155 answer commit together,
or none of them does. Each service's `usecases.py` starts one per write; the API layer
never sees a transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from google.protobuf.message import Message
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncSession

from services.kit.db.engine import Database
from services.kit.db.idempotency import (
    NewAnswer,
    RequestKey,
    StoredAnswer,
    answers_in,
    answers_query,
    run_once,
    store_answers,
    stored_answers,
)
from services.kit.db.sql import Query, fetch_together
from services.kit.events.outbox import Outbox

ResponseT = TypeVar("ResponseT", bound=Message)


class UnitOfWork:
    """The open transaction (`session`, for the storage layer), its events and, for
    writes that answer many requests at once (a group commit, an import), their
    AIP-155 answers."""

    def __init__(self, session: AsyncSession, outbox: Outbox | None, idempotency: Table | None) -> None:
        self.session = session
        self._outbox = outbox
        self._idempotency = idempotency

    async def publish(self, user_id: str, payload: Message) -> None:
        """An event about `user_id`'s data, published once (and only if) this commits."""
        await self.publish_all([(user_id, payload)])

    async def publish_all(self, events: Sequence[tuple[str, Message]]) -> None:
        """Several (user_id, payload) events in one statement, for bulk writes."""
        if self._outbox is None:
            raise RuntimeError("this service has no outbox: it publishes no events")
        await self._outbox.add_many(self.session, events)

    async def stored_answers(self, keys: Collection[RequestKey]) -> dict[RequestKey, StoredAnswer]:
        """The answers stored for any of these keys, in one query."""
        return await stored_answers(self.session, self._answers(), keys)

    async def stored_answers_with(
        self, keys: Collection[RequestKey], reads: Sequence[Query]
    ) -> tuple[dict[RequestKey, StoredAnswer], list[list[Any]]]:
        """The answers stored for these keys and the rows of the work's own `reads`
        (in order), all in one round trip (fetch_together)."""
        rows = await fetch_together(
            self.session, [answers_query(self.session, self._answers(), keys), *reads]
        )
        return answers_in(rows[0]), rows[1:]

    async def store_answers(self, answers: Sequence[NewAnswer]) -> None:
        """First answers, committed with the work (one bulk INSERT, which one_round_trip
        queues); a key stored meanwhile by a concurrent call is an IntegrityError."""
        await store_answers(self.session, self._answers(), answers)

    def _answers(self) -> Table:
        if self._idempotency is None:
            raise RuntimeError("this service keeps no request ids")
        return self._idempotency


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
            yield self._unit(session)

    def joining(self, session: AsyncSession) -> UnitOfWork:
        """A unit of work on a transaction the kit opened, e.g. a consumer's inbox
        transaction: what it publishes commits with the events it applied."""
        return self._unit(session)

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
            work=lambda session: work(self._unit(session)),
            lock=None if lock is None else lambda session: lock(self._unit(session)),
        )

    def _unit(self, session: AsyncSession) -> UnitOfWork:
        return UnitOfWork(session, self.outbox, self.idempotency)
