"""Ended sessions, pushed from auth to every service's TokenVerifier on core NATS.

Fire and forget on purpose, nothing is replayed: a verifier trusts its cached
session answers for longer only while it keeps hearing auth (a revocation or the
heartbeat), and a drop, a reconnect or silence sends it back to the short
lifetime. A lost broadcast therefore costs session checks, not a late logout."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

from nats.errors import Error as NatsError

from expense.events.v1 import events_pb2
from services.kit.events.bus import EventBus

log = logging.getLogger(__name__)


# The one service that announces ended sessions (NATS lets no other publish them).
SESSIONS_BROADCASTER = "auth"


def sessions_ended_subject(prefix: str) -> str:
    # Outside `<prefix>.events.>`, so JetStream does not store it.
    return f"{prefix}.sessions.ended"


class SessionFeed:
    """Both ends: auth announces and heartbeats, verifiers attach (a RevocationFeed)."""

    def __init__(self, bus: EventBus, heartbeat_seconds: float) -> None:
        self.bus = bus
        self.subject = sessions_ended_subject(bus.prefix)
        self.heartbeat_seconds = heartbeat_seconds

    def attach(
        self, on_sessions_ended: Callable[[list[str]], None], on_link_change: Callable[[bool], None]
    ) -> None:
        def received(data: bytes) -> None:
            on_sessions_ended(list(events_pb2.SessionsEnded.FromString(data).session_ids))

        self.bus.on_broadcast(self.subject, received)
        self.bus.on_link_change(on_link_change)

    async def announce(self, session_ids: Sequence[str]) -> None:
        """After the commit that ended them. A failure is only logged: the sessions are
        ended in the database, and auth's heartbeats fail along with it."""
        if not session_ids:
            return
        try:
            await self._send(session_ids)
        except (ConnectionError, NatsError) as error:
            log.warning(
                "ended sessions not broadcast", extra={"sessions": len(session_ids), "error": repr(error)}
            )

    async def heartbeat_forever(self) -> None:
        while True:
            # Until NATS is back, verifiers hear nothing and use the short lifetime.
            with contextlib.suppress(ConnectionError, NatsError):
                await self._send([])
            await asyncio.sleep(self.heartbeat_seconds)

    async def _send(self, session_ids: Sequence[str]) -> None:
        message = events_pb2.SessionsEnded(session_ids=session_ids)
        await self.bus.broadcast(self.subject, message.SerializeToString())
