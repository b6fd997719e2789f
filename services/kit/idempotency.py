"""AIP-155 request ids: the first answer to (user, method, request_id) is
stored in the same transaction as the change it made; a retry gets that answer
back, a reuse with a different request is refused."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

from google.protobuf.message import Message
from sqlalchemy import Column, LargeBinary, MetaData, PrimaryKeyConstraint, String, Table, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.kit.db import Database, UtcDateTime
from services.kit.errors import InvalidArgument
from services.kit.timeutil import utcnow

ResponseT = TypeVar("ResponseT", bound=Message)
MAX_ATTEMPTS = 3


def idempotency_table(metadata: MetaData) -> Table:
    return Table(
        "idempotency_keys",
        metadata,
        Column("user_id", String(36), nullable=False),
        Column("method", String(100), nullable=False),
        Column("request_id", String(100), nullable=False),
        Column("fingerprint", String(64), nullable=False),
        Column("response", LargeBinary, nullable=False),
        Column("created_at", UtcDateTime, nullable=False),
        PrimaryKeyConstraint("user_id", "method", "request_id"),
    )


def fingerprint(request: Message) -> str:
    """Hash of the request as sent; deterministic serialization keeps map order stable."""
    return hashlib.sha256(request.SerializeToString(deterministic=True)).hexdigest()


async def run_once(
    db: Database,
    table: Table,
    *,
    user_id: str,
    method: str,
    request_id: str,
    request_fingerprint: str,
    response_type: type[ResponseT],
    work: Callable[[AsyncSession], Awaitable[ResponseT]],
    field: str = "request_id",
    lock: Callable[[AsyncSession], Awaitable[None]] | None = None,
) -> ResponseT:
    """`lock`, when the work serialises on a lock of its own (e.g. a uniqueness check),
    is taken first, so a concurrent retry waiting on it then finds the stored answer."""
    for attempt in range(MAX_ATTEMPTS):
        try:
            async with db.transaction() as session:
                if lock is not None:
                    await lock(session)
                stored = await _stored(session, table, user_id, method, request_id)
                if stored is not None:
                    if stored.fingerprint != request_fingerprint:
                        raise InvalidArgument.of(field, "already used for a different request")
                    return response_type.FromString(stored.response)
                response = await work(session)
                await session.execute(
                    table.insert().values(
                        user_id=user_id,
                        method=method,
                        request_id=request_id,
                        fingerprint=request_fingerprint,
                        response=response.SerializeToString(),
                        created_at=utcnow(),
                    )
                )
                return response
        except IntegrityError:
            # A concurrent call with the same key committed first: answer with its result.
            if attempt == MAX_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


async def _stored(session: AsyncSession, table: Table, user_id: str, method: str, request_id: str):  # type: ignore[no-untyped-def]
    query = select(table.c.fingerprint, table.c.response).where(
        table.c.user_id == user_id, table.c.method == method, table.c.request_id == request_id
    )
    return (await session.execute(query)).first()
