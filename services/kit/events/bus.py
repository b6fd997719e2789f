"""NATS connection shared by outbox relays and consumers (JetStream) and by
broadcasts (core NATS, at most once).

The first connection is retried in the background (nats-py gives up on the
first failure), later drops are handled by nats-py's own reconnect. Broadcasts
sent while a subscriber was away are lost for it, so subscribers are told about
every connect, drop and reconnect (`on_link_change`) and decide what to forget."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta

import nats
from google.protobuf.any_pb2 import Any as AnyMessage
from google.protobuf.message import Message
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import SlowConsumerError
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError

from expense.events.v1 import events_pb2
from services.kit.config.settings import EVENT_STREAM_MAX_AGE
from services.kit.domain.ids import new_id
from services.kit.domain.timestamps import utcnow

log = logging.getLogger(__name__)

DUPLICATE_WINDOW = timedelta(minutes=2)

# Gets a broadcast's data; runs in the subscription's task, so it should not block.
BroadcastHandler = Callable[[bytes], None]
# Called with True once connected with every broadcast subscription in place (again),
# with False when the connection drops: broadcasts may have been missed either way.
LinkListener = Callable[[bool], None]


def stream_name(prefix: str) -> str:
    return f"{prefix.upper()}_EVENTS"


def subject_for(prefix: str, event_type: str) -> str:
    return f"{prefix}.events.{event_type}"


def dead_letter_subject(prefix: str, consumer: str) -> str:
    """Where a consumer puts the messages it cannot apply; kept in the events stream."""
    return f"{prefix}.dead.{consumer}"


def durable_name(prefix: str, consumer: str) -> str:
    """A consumer's JetStream name (no dots: it is one token of the API subjects)."""
    return f"{prefix}_{consumer}".replace(".", "_")


def inbox_prefix(user: str) -> str:
    """Where a NATS user gets its replies (JetStream acks, fetched events): its own
    inboxes, so one service cannot subscribe to another's deliveries."""
    return f"_INBOX.{user}"


def make_envelope(event_type: str, user_id: str, payload: Message, producer: str) -> events_pb2.EventEnvelope:
    envelope = events_pb2.EventEnvelope(
        event_id=new_id(), type=event_type, user_id=user_id, producer=producer
    )
    envelope.occurred_time.FromDatetime(utcnow())
    packed = AnyMessage()
    packed.Pack(payload)
    envelope.payload.CopyFrom(packed)
    return envelope


class EventBus:
    def __init__(
        self,
        url: str,
        prefix: str,
        client_name: str,
        user: str | None = None,
        password: str | None = None,
        stream_replicas: int = 1,
    ) -> None:
        """`user` and `password`: the service's NATS user (services/kit/events/permissions.py
        says what it may do); none for a NATS that requires no credentials. `stream_replicas`:
        the events stream's copies (3 on a NATS cluster)."""
        self.url = url
        self.prefix = prefix
        self.stream_replicas = stream_replicas
        self.client_name = client_name
        self._credentials: dict[str, str] = {}
        if user is not None and password is not None:
            self._credentials = {"user": user, "password": password, "inbox_prefix": inbox_prefix(user)}
        self._nc: NatsClient | None = None
        self._js: tuple[NatsClient, JetStreamContext] | None = None
        self._ready = asyncio.Event()
        self._connector: asyncio.Task[None] | None = None
        self._broadcast_handlers: list[tuple[str, BroadcastHandler]] = []
        self._link_listeners: list[LinkListener] = []

    @property
    def stream(self) -> str:
        return stream_name(self.prefix)

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    @property
    def js(self) -> JetStreamContext:
        if self._nc is None:
            raise ConnectionError("NATS not connected yet")
        # One context per connection: building one per publish cost as much as the publish.
        if self._js is None or self._js[0] is not self._nc:
            self._js = (self._nc, self._nc.jetstream(timeout=5))
        return self._js[1]

    def on_broadcast(self, subject: str, handler: BroadcastHandler) -> None:
        """Subscribes `handler` to a core NATS subject, on every connection of this bus."""
        self._before_start()
        self._broadcast_handlers.append((subject, handler))

    def on_link_change(self, listener: LinkListener) -> None:
        self._before_start()
        self._link_listeners.append(listener)

    def _before_start(self) -> None:
        # Subscriptions are made once, when the first connection comes up.
        if self._connector is not None:
            raise RuntimeError("register broadcast handlers before start()")

    def start(self) -> None:
        self._connector = asyncio.create_task(self._connect_forever(), name="nats-connect")

    async def wait_ready(self) -> None:
        await self._ready.wait()

    async def _connect_forever(self) -> None:
        delay = 0.2
        while self._nc is None:
            try:
                nc = await nats.connect(
                    self.url,
                    name=self.client_name,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.5,
                    connect_timeout=2,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                    **self._credentials,
                )
                self._nc = nc
                await self.ensure_stream()
                await self._subscribe_broadcasts(nc)
            except Exception as error:
                log.warning("NATS not reachable yet", extra={"url": self.url, "error": str(error)})
                if self._nc is not None:
                    await self._nc.close()
                    self._nc = None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self._ready.set()
        self._link_changed(True)

    async def _subscribe_broadcasts(self, nc: NatsClient) -> None:
        for subject, handler in self._broadcast_handlers:
            await nc.subscribe(subject, cb=_deliver_to(handler))
        # The server has the subscriptions once it answered a ping sent after them.
        await nc.flush()

    async def _on_disconnected(self) -> None:
        self._link_changed(False)

    async def _on_reconnected(self) -> None:
        # nats-py has replayed the subscriptions and flushed them by now.
        self._link_changed(True)

    def _link_changed(self, up: bool) -> None:
        for listener in self._link_listeners:
            listener(up)

    async def _on_error(self, error: Exception) -> None:
        log.warning("NATS error", extra={"error": repr(error)})
        if isinstance(error, SlowConsumerError):
            # nats-py dropped a message, maybe a broadcast: a gap, as after a reconnect.
            self._link_changed(self.connected)

    async def ensure_stream(self) -> None:
        config = StreamConfig(
            name=self.stream,
            subjects=[f"{self.prefix}.events.>", dead_letter_subject(self.prefix, ">")],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=EVENT_STREAM_MAX_AGE.total_seconds(),
            duplicate_window=DUPLICATE_WINDOW.total_seconds(),
            discard=DiscardPolicy.OLD,
            num_replicas=self.stream_replicas,
        )
        try:
            await self.js.add_stream(config)
        except BadRequestError:
            await self.js.update_stream(config)

    async def publish(
        self, subject: str, data: bytes, msg_id: str, headers: Mapping[str, str] | None = None
    ) -> None:
        await self.js.publish(subject, data, headers={**(headers or {}), "Nats-Msg-Id": msg_id})

    @property
    def server_version(self) -> tuple[int, int]:
        if self._nc is None:
            raise ConnectionError("NATS not connected yet")
        version = self._nc.connected_server_version
        return version.major, version.minor

    async def broadcast(self, subject: str, data: bytes) -> None:
        """Core NATS, fire and forget: nats-py buffers it while reconnecting."""
        if self._nc is None:
            raise ConnectionError("NATS not connected yet")
        await self._nc.publish(subject, data)

    async def close(self) -> None:
        if self._connector:
            self._connector.cancel()
        if self._nc is not None and not self._nc.is_closed:
            await self._nc.close()


def _deliver_to(handler: BroadcastHandler) -> Callable[[Msg], Awaitable[None]]:
    async def deliver(message: Msg) -> None:
        handler(message.data)

    return deliver
