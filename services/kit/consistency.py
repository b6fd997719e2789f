"""Read-your-writes across the event stream (docs/consistency.md): a ledger write answers
an `X-Consistency-Token` naming the expense and the version it left; a read of a service
that copies expenses from ledger events (reporting, billing, ds) may send it back and
then waits, bounded, until its own copy holds that version or a later one."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc

from services.kit.db.engine import Database, Queryable
from services.kit.domain.errors import InvalidArgument, Unavailable

# The response header of a ledger write naming it, and the request header of a read that
# must include it.
CONSISTENCY_HEADER = "x-consistency-token"
_TOKEN_SEPARATOR = "."

# The version of a service's copy of the user's expense; None when it has none.
VersionOf = Callable[[Queryable, str, str], Awaitable[int | None]]


@dataclass(frozen=True)
class WrittenVersion:
    """One ledger write: the expense and the version it left (a deletion is the version
    after the state it deleted, as expense_change counts it). A copy holding this
    version or a later one of that expense has applied the write."""

    expense_id: str
    version: int

    @property
    def token(self) -> str:
        return f"{self.expense_id}{_TOKEN_SEPARATOR}{self.version}"

    @classmethod
    def parse(cls, token: str) -> WrittenVersion:
        """Raises ValueError for anything a ledger write did not answer."""
        expense_id, separator, version = token.strip().rpartition(_TOKEN_SEPARATOR)
        if not separator or not expense_id or len(expense_id) > 36 or not version.isdigit():
            raise ValueError("not a consistency token")
        return cls(expense_id, int(version))


def written_version(context: grpc.aio.ServicerContext | None) -> WrittenVersion | None:
    """The ledger write a read must include: its X-Consistency-Token header, if sent
    (None: a call made in-process, without metadata)."""
    metadata = context.invocation_metadata() if context is not None else None
    token = next((str(value) for key, value in metadata or () if key == CONSISTENCY_HEADER), "")
    if not token:
        return None
    try:
        return WrittenVersion.parse(token)
    except ValueError:
        raise InvalidArgument.of(
            CONSISTENCY_HEADER, "must be the x-consistency-token a ledger write answered"
        ) from None


@dataclass(frozen=True)
class Consistency:
    """How a service waits for a write: its copy's version reader, the bound and the poll
    interval (a service's consistency_wait_seconds and consistency_poll_seconds)."""

    db: Database
    version_of: VersionOf
    wait_seconds: float
    poll_seconds: float
    # What the copy feeds, for the timeout's message ("reports", "budgets", ...).
    feeds: str

    async def wait_for(self, user_id: str, written: WrittenVersion) -> None:
        """Returns once the copy holds the write's version (or a later one); past
        wait_seconds, UNAVAILABLE (WRITE_NOT_YET_APPLIED): never an answer without it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_seconds
        while True:
            async with self.db.read() as connection:
                version = await self.version_of(connection, user_id, written.expense_id)
            if version is not None and version >= written.version:
                return
            if loop.time() >= deadline:
                raise Unavailable(
                    f"the write named by the consistency token is not in {self.feeds} yet; retry shortly",
                    "WRITE_NOT_YET_APPLIED",
                )
            await asyncio.sleep(self.poll_seconds)
