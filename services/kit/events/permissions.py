"""What each service may do on NATS, derived from the event registry: nats-server
enforces it (services/launcher/nats.py renders it into the server's authorization).

A service publishes only the event types the registry names it the producer of, its
consumers' dead letters and, for auth, the ended-sessions broadcast; on JetStream it may
create and read the events stream and work its own durable consumers (create, fetch,
ack), never delete or purge. It subscribes only to its own reply inboxes (JetStream
acks and fetched events come there) and to the ended-sessions broadcast. A service
with work queues (events/work_queue.py) also publishes jobs and dead letters to its own
queues, manages their streams, works their consumer, and reads and deletes its own
dead letters (an operator's replay)."""

from __future__ import annotations

from collections.abc import Sequence

from services.kit.events.bus import dead_letter_subject, durable_name, inbox_prefix, stream_name, subject_for
from services.kit.events.registry import event_types
from services.kit.events.work_queue import WorkQueue
from services.kit.identity.revocation import SESSIONS_BROADCASTER, sessions_ended_subject

# The user with every permission: operators' tools (`nats stream info`), and the tests.
ADMIN = "admin"
Permissions = dict[str, dict[str, list[str]]]


def service_permissions(
    service: str, prefix: str, consumers: Sequence[str], work_queues: Sequence[WorkQueue] = ()
) -> Permissions:
    """Allow-lists of a service whose durable consumers are named `consumers`."""
    publish = [subject_for(prefix, t.name) for t in event_types() if t.producer == service]
    publish += [dead_letter_subject(prefix, consumer) for consumer in consumers]
    if service == SESSIONS_BROADCASTER:
        publish.append(sessions_ended_subject(prefix))
    stream = stream_name(prefix)
    # Every service makes sure the stream exists with the kit's config (EventBus.ensure_stream).
    publish += [f"$JS.API.STREAM.{action}.{stream}" for action in ("CREATE", "UPDATE", "INFO")]
    for consumer in consumers:
        publish += _consumer_api(stream, durable_name(prefix, consumer))
    for queue in work_queues:
        publish += _work_queue_api(queue, prefix)
    subscribe = [f"{inbox_prefix(service)}.>", sessions_ended_subject(prefix)]
    return {"publish": {"allow": publish}, "subscribe": {"allow": subscribe}}


def _consumer_api(stream: str, durable: str) -> list[str]:
    api = "$JS.API.CONSUMER"
    return [
        # Created by name (2.9+, the filter may follow the name) or the legacy way.
        f"{api}.CREATE.{stream}.{durable}",
        f"{api}.CREATE.{stream}.{durable}.>",
        f"{api}.DURABLE.CREATE.{stream}.{durable}",
        f"{api}.INFO.{stream}.{durable}",
        f"{api}.MSG.NEXT.{stream}.{durable}",
        # Ack, nak and term go to the reply subject of each delivered message.
        f"$JS.ACK.{stream}.{durable}.>",
    ]


def _work_queue_api(queue: WorkQueue, prefix: str) -> list[str]:
    stream, dead = queue.stream(prefix), queue.dead_stream(prefix)
    allowed = [queue.subjects(prefix), queue.dead_subjects(prefix)]
    for name in (stream, dead):
        allowed += [f"$JS.API.STREAM.{action}.{name}" for action in ("CREATE", "UPDATE", "INFO")]
    allowed += [f"$JS.API.STREAM.MSG.{action}.{dead}" for action in ("GET", "DELETE")]
    return allowed + _consumer_api(stream, queue.durable(prefix))
