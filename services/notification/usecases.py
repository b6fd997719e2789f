"""The notification use cases: events become notifications and deliveries (the
intake), deliveries are sent from the work queue (the worker), held ones queued
when their time comes (the sweep, digests included), the user's inbox, preferences
and contact points, providers' receipts and operators' dead letters."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

from google.protobuf import json_format
from sqlalchemy.ext.asyncio import AsyncSession

from services.kit.db.engine import Database, after_commit
from services.kit.db.erasure import ErasedUsers
from services.kit.domain.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from services.kit.domain.ids import new_id
from services.kit.domain.timestamps import utcnow
from services.kit.events.subscription import Event
from services.kit.grpc.breakers import Breaker, CircuitOpen, breaker_for
from services.notification import metrics, storage
from services.notification.channels import Channel, InAppChannel
from services.notification.domain import (
    CODE_CHANNELS,
    DELIVERED,
    FAILED,
    QUEUED,
    SENT,
    MessagePlan,
    Preferences,
    code_digest,
    code_matches,
    contact_address,
    day_of,
    field_value,
    message_payloads,
    new_code,
    next_digest_time,
    our_status,
    plan_of,
    quiet_until,
)
from services.notification.providers.base import OutboundMessage, ProviderError, SendResult, WhatsAppTemplate
from services.notification.providers.callbacks import (
    meta_status_updates,
    meta_verify_challenge,
    twilio_status_update,
    verify_meta_signature,
    verify_twilio_signature,
)
from services.notification.providers.settings import ProvidersSettings
from services.notification.providers.twilio import with_query
from services.notification.providers.webhook import (
    WebhookUrlRefused,
    check_webhook_url,
    generate_webhook_secret,
)
from services.notification.queue import DONE, DeadLetterRecord, DeliveryQueue, Job, Outcome
from services.notification.secrets import SecretBox
from services.notification.settings import NotificationSettings, SourceSettings
from services.notification.templates import (
    RenderCall,
    Rendered,
    TemplateUnusable,
    TemplatingClient,
    TemplatingUnavailable,
)

log = logging.getLogger(__name__)

DIGEST_SOURCE = "notification.digest"
# A digest notification's event id: this prefix and its first item's delivery id.
DIGEST_EVENT_PREFIX = "digest:"
SWEEP_BATCH = 500
# A job whose delivery another worker has claimed comes back this long after the claim
# ends (the claim's end is written a moment after JetStream's ack_wait starts).
CLAIM_END_MARGIN_SECONDS = 0.5


def default_preferences(settings: NotificationSettings) -> Preferences:
    return Preferences(time_zone=settings.default_time_zone, locale=settings.default_locale)


def payload_dict(event: Event[Any]) -> dict[str, Any]:
    return json_format.MessageToDict(event.payload, preserving_proto_field_name=True)


# ---------------------------------------------------------------- intake


def event_addresses(fields: Mapping[str, str], payload: Mapping[str, Any]) -> dict[str, str]:
    """The addresses an event carries for its channels (`address_fields`); an absent or
    malformed one is left out (the channel then falls back to the contact point)."""
    addresses = {}
    for channel, path in fields.items():
        try:
            addresses[channel] = contact_address(channel, str(field_value(payload, path) or ""))
        except InvalidArgument:
            log.warning("unusable address in an event", extra={"channel": channel})
    return addresses


@dataclass(frozen=True)
class HeldBack:
    """A delivery waits until `until` (quiet hours, a reached daily cap): its claim is undone."""

    until: datetime
    reason: str


@dataclass(frozen=True)
class Retry:
    """A job to try again: its error noted, after `wait` seconds (else the back-off step)."""

    job: Job
    error: str
    wait: float | None = None


@dataclass(frozen=True)
class Claim:
    """A delivery this worker is sending, with what the message is made of."""

    delivery: storage.DeliveryRow
    notification: storage.NotificationRow
    prefs: Preferences
    webhook_secret: str | None


@dataclass(frozen=True)
class Message:
    """A message an event makes (its `event_id`: the event's, or `<event id>/<item>`)."""

    user_id: str
    event_id: str
    source: str
    plan: MessagePlan
    channels: Sequence[str]
    prefs: Preferences
    addresses: Mapping[str, str]


@dataclass(frozen=True)
class NewDelivery:
    delivery_id: str
    channel: str


class Intake:
    """Turns source events into a notification and one delivery per channel, in the
    consumer's inbox transaction. Once it commits, the in-app deliveries are shown at once
    by `show` (nothing leaves the database: the work queue's hop would only cost), and the
    others are queued, with the in-app ones `show` did not finish."""

    def __init__(
        self,
        db: Database,
        settings: NotificationSettings,
        queue: DeliveryQueue,
        erased: ErasedUsers,
        show: Callable[[Sequence[Job]], Awaitable[list[Outcome]]] | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.queue = queue
        self.erased = erased
        self.show = show
        self._pending: set[asyncio.Task[None]] = set()

    async def on_events(self, session: AsyncSession, events: Sequence[Event[Any]]) -> None:
        fresh = await self.apply(session, events)
        if fresh:
            after_commit(session, lambda: self._enqueue_soon(fresh))

    async def on_event(self, session: AsyncSession, event: Event[Any]) -> list[NewDelivery]:
        return await self.apply(session, [event])

    async def apply(self, session: AsyncSession, events: Sequence[Event[Any]]) -> list[NewDelivery]:
        """A batch of source events in a few statements whatever its size: the users'
        preferences in one query, the notifications in one multi-row INSERT, the contact
        points per channel in one, the deliveries in one. The new deliveries to queue."""
        now = utcnow()
        usable: list[tuple[Event[Any], SourceSettings, dict[str, Any]]] = []
        for event in events:
            source = self.settings.sources.get(event.type)
            if source is None or not event.user_id:
                log.warning("event without a source mapping skipped", extra={"event_type": event.type})
                continue
            usable.append((event, source, payload_dict(event)))
        # The account's address first: the batch's own messages may go to it.
        for event, source, payload in usable:
            if source.email_field and payload.get(source.email_field):
                await self._account_email(session, event.user_id, str(payload[source.email_field]), now)
        prefs = await storage.preferences_of(
            session, [event.user_id for event, _, _ in usable], default_preferences(self.settings)
        )
        messages: list[Message] = []
        for event, source, payload in usable:
            name = str(field_value(payload, source.name_field) or "") if source.name_field else ""
            if name and name != prefs[event.user_id].display_name:
                await storage.set_display_name(session, event.user_id, name, prefs[event.user_id], now)
                prefs[event.user_id] = replace(prefs[event.user_id], display_name=name)
            messages += self._messages(event, source, payload, prefs[event.user_id], now)
        return await self._notify_all(session, messages, now)

    def _messages(
        self,
        event: Event[Any],
        source: SourceSettings,
        payload: dict[str, Any],
        prefs: Preferences,
        now: datetime,
    ) -> list[Message]:
        channels = prefs.channels_for(event.type, source.default_channels, source.mandatory_channels)
        addresses = event_addresses(source.address_fields, payload)
        # The payload's own fields win over `recipient` (the user as notification knows them).
        scope = {"recipient": {"name": prefs.display_name}, **payload}
        messages = []
        for index, message in enumerate(message_payloads(source, scope)):
            plan = plan_of(source, message, now)
            if plan is None:
                continue
            # One message per item, each under a key of its own (notifications' and
            # deliveries' UNIQUE event ids): a redelivery still makes none twice.
            message_id = f"{event.event_id}/{index}" if source.each else event.event_id
            messages.append(Message(event.user_id, message_id, event.type, plan, channels, prefs, addresses))
        return messages

    async def _notify_all(
        self, session: AsyncSession, messages: Sequence[Message], now: datetime
    ) -> list[NewDelivery]:
        """notify() of many messages (none a digest) with a statement per table."""
        unique: dict[str, Message] = {}
        for message in messages:
            unique.setdefault(message.event_id, message)
        rows = [_notification_row(m, now) for m in unique.values()]
        added = await storage.add_notifications(session, rows)
        # A redelivered event's notification is there already: its missing deliveries are made.
        existing = await storage.notifications_of_events(
            session, [row.event_id for row in rows if row.event_id not in added]
        )
        notification_ids = {row.event_id: row.notification_id for row in rows if row.event_id in added}
        notification_ids.update({event_id: row.notification_id for event_id, row in existing.items()})
        contacts = await self._contacts(session, unique.values())
        deliveries: list[tuple[storage.DeliveryRow, bool]] = []
        for message in unique.values():
            notification_id = notification_ids.get(message.event_id)
            if notification_id is None:
                continue
            for channel in message.channels:
                contact = contacts.get((message.user_id, channel))
                address = message.addresses.get(channel) or (
                    notification_id if channel == "in_app" else contact.address if contact else None
                )
                if address is None:
                    continue
                held = channel != "in_app" and self._held_for_digest(message.plan, message.prefs)
                row = self._delivery(message, notification_id, channel, address, held, now)
                deliveries.append((row, held))
        inserted = await storage.add_deliveries(session, [row for row, _ in deliveries])
        fresh: list[NewDelivery] = []
        for row, held in deliveries:
            if row.delivery_id not in inserted:
                continue
            metrics.DELIVERIES.labels(row.channel, QUEUED).inc()
            if not held:
                fresh.append(NewDelivery(row.delivery_id, row.channel))
        return fresh

    async def _contacts(
        self, session: AsyncSession, messages: Iterable[Message]
    ) -> dict[tuple[str, str], storage.ContactPointRow]:
        """The verified contact points the messages' channels go to, a query per channel."""
        users: dict[str, set[str]] = {}
        for message in messages:
            for channel in message.channels:
                if channel != "in_app" and channel not in message.addresses:
                    users.setdefault(channel, set()).add(message.user_id)
        contacts: dict[tuple[str, str], storage.ContactPointRow] = {}
        for channel, user_ids in users.items():
            found = await storage.verified_addresses(session, user_ids, channel)
            contacts.update({(user_id, channel): row for user_id, row in found.items()})
        return contacts

    def _held_for_digest(self, plan: MessagePlan, prefs: Preferences) -> bool:
        return not plan.critical and prefs.digest and plan.severity in self.settings.digest_severities

    def _delivery(
        self, message: Message, notification_id: str, channel: str, address: str, held: bool, now: datetime
    ) -> storage.DeliveryRow:
        return storage.DeliveryRow(
            delivery_id=new_id(), notification_id=notification_id, user_id=message.user_id,
            event_id=message.event_id, channel=channel, address=address, status=QUEUED, attempts=0,
            provider_message_id=None, error="", template="",
            deferred_until=next_digest_time(message.prefs, now) if held else None, in_digest=held,
            digest_delivery_id=None, claimed_until=None, enqueued_at=None, dead_lettered_at=None,
            created_at=now, updated_at=now, sent_at=None,
        )  # fmt: skip

    async def notify(
        self,
        session: AsyncSession,
        user_id: str,
        event_id: str,
        source: str,
        plan: MessagePlan,
        channels: Sequence[str],
        prefs: Preferences,
        now: datetime,
        digest_members: Sequence[str] = (),
        addresses: Mapping[str, str] | None = None,
    ) -> list[NewDelivery]:
        """The notification and its deliveries (once per event: UNIQUE keys); a channel
        in `addresses` goes there instead of to the user's contact point. None for an
        erased user: the sweep's digest of held items may race the erasure (ErasedUsers)."""
        if await self.erased.refuses(session, user_id):
            return []
        message = Message(user_id, event_id, source, plan, channels, prefs, addresses or {})
        notification = _notification_row(message, now)
        if not await storage.add_notification(session, notification):
            existing = await storage.notification_of_event(session, event_id)
            if existing is None:
                return []
            notification = existing
        fresh: list[NewDelivery] = []
        for channel in channels:
            address = message.addresses.get(channel) or await self._address(
                session, user_id, channel, notification.notification_id
            )
            if address is None:
                continue
            held = channel != "in_app" and not digest_members and self._held_for_digest(plan, prefs)
            delivery = self._delivery(message, notification.notification_id, channel, address, held, now)
            if not await storage.add_delivery(session, delivery):
                continue
            metrics.DELIVERIES.labels(channel, QUEUED).inc()
            if digest_members:
                members = [m for m in digest_members if m.split("/", 1)[0] == channel]
                await storage.attach_to_digest(
                    session, [m.split("/", 1)[1] for m in members], delivery.delivery_id
                )
            if not held:
                fresh.append(NewDelivery(delivery.delivery_id, channel))
        return fresh

    async def _address(
        self, session: AsyncSession, user_id: str, channel: str, notification_id: str
    ) -> str | None:
        if channel == "in_app":
            return notification_id
        contact = await storage.verified_address(session, user_id, channel)
        return contact.address if contact else None

    async def _account_email(self, session: AsyncSession, user_id: str, email: str, now: datetime) -> None:
        """The account's address (auth's) is the user's email contact point."""
        try:
            address = contact_address("email", email)
        except InvalidArgument:
            return
        await storage.add_contact_point(
            session,
            storage.ContactPointRow(new_id(), user_id, "email", address, now, "", None, 0, "", now),
        )

    async def on_profile(self, session: AsyncSession, event: Event[Any]) -> None:
        """The user's time zone and locale, from their profile (the user service's), unless
        an older profile event is redelivered after a newer one."""
        profile = event.payload
        if not event.user_id:
            return
        copy = storage.ProfileCopy(profile.time_zone, profile.locale, profile.version)
        default = default_preferences(self.settings)
        if not await storage.save_profile_copy(session, event.user_id, copy, default, utcnow()):
            log.info(
                "stale profile event ignored", extra={"event_id": event.event_id, "version": copy.version}
            )

    def _enqueue_soon(self, deliveries: list[NewDelivery]) -> None:
        task = asyncio.get_running_loop().create_task(self._send_on(deliveries))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _send_on(self, deliveries: list[NewDelivery]) -> None:
        shown_here = self.show is not None
        in_app = [d for d in deliveries if shown_here and d.channel == "in_app"]
        queued = [d for d in deliveries if not (shown_here and d.channel == "in_app")]
        _, unshown = await asyncio.gather(self.enqueue(queued), self._show(in_app))
        await self.enqueue(unshown)

    async def _show(self, deliveries: list[NewDelivery]) -> list[NewDelivery]:
        """The in-app deliveries shown here; those to try again (templating did not answer)
        are returned for the queue. A crash meanwhile leaves them to the sweep."""
        if not deliveries or self.show is None:
            return deliveries
        try:
            outcomes = await self.show([Job(d.delivery_id, d.channel, 1) for d in deliveries])
        except Exception:
            log.exception("in-app deliveries left to the queue")
            return deliveries
        return [d for d, outcome in zip(deliveries, outcomes, strict=True) if not outcome.done]

    async def enqueue(self, deliveries: list[NewDelivery]) -> None:
        """Publishes the jobs, then marks them queued; a failure leaves them to the sweep."""
        if not deliveries:
            return
        now = utcnow()
        # All at once: one JetStream round trip for the batch rather than one per job.
        published = await asyncio.gather(
            *(self.queue.enqueue(delivery.delivery_id, delivery.channel, now) for delivery in deliveries),
            return_exceptions=True,
        )
        errors = [result for result in published if isinstance(result, Exception)]
        if errors:
            log.warning("deliveries left to the sweep", extra={"error": repr(errors[0])})
            return
        async with self.db.transaction() as session:
            await storage.mark_enqueued(session, [d.delivery_id for d in deliveries], now)


# ---------------------------------------------------------------- the worker


class Deliveries:
    """Sends the deliveries of a fetched batch of jobs: each held back (quiet hours, daily
    cap), or its attempt counted, then rendered, sent through the channel's breaker and
    its result recorded."""

    def __init__(
        self,
        db: Database,
        settings: NotificationSettings,
        queue: DeliveryQueue,
        channels: Mapping[str, Channel | InAppChannel],
        templating: TemplatingClient,
        secrets: SecretBox,
    ) -> None:
        self.db = db
        self.settings = settings
        self.queue = queue
        self.channels = channels
        self.templating = templating
        self.secrets = secrets
        self.breakers: dict[str, Breaker] = {
            name: breaker_for(
                f"provider-{name}",
                f"provider-{name}",
                settings.breaker,
                exclude=[(ProviderError, lambda error: not error.retryable)],
            )
            for name, channel in channels.items()
            if not isinstance(channel, InAppChannel)
        }

    async def handle_batch(self, jobs: Sequence[Job]) -> list[Outcome]:
        """A fetched batch of jobs: in-app ones shown in one transaction, the others
        claimed in one transaction, rendered and sent concurrently, and their results
        recorded in one. A job failing does not hold back the others; a job repeated in
        the batch is done once (the second finds it claimed, as a second worker would)."""
        outcomes: dict[int, Outcome] = {}
        in_app: list[tuple[int, Job]] = []
        sent: list[tuple[int, Job]] = []
        for index, job in enumerate(jobs):
            channel = self.channels.get(job.channel)
            if channel is None:
                outcomes[index] = await self._unsendable(job)
            else:
                (in_app if isinstance(channel, InAppChannel) else sent).append((index, job))
        parts = await asyncio.gather(self._show_batch(in_app), self._send_batch(sent))
        for part in parts:
            outcomes.update(part)
        return [outcomes.get(index, DONE) for index in range(len(jobs))]

    async def _send_batch(self, jobs: Sequence[tuple[int, Job]]) -> dict[int, Outcome]:
        if not jobs:
            return {}
        now = utcnow()
        claims = await self.claim_many([job.delivery_id for _, job in jobs], now)
        firsts = _first_of_each(jobs)
        # The claim's `now`: a claim that ends between the two reads is still seen as running.
        unclaimed = [(i, job) for i, job in firsts if job.delivery_id not in claims]
        waiting = await self._claimed_elsewhere(unclaimed, now)
        claimed = [(index, job) for index, job in firsts if job.delivery_id in claims]
        if not claimed:
            return waiting
        mine = [claims[job.delivery_id] for _, job in claimed]
        renders = await self.templating.render_many(
            [self._render_call(c.notification, c.delivery, c.prefs) for c in mine]
        )
        attempts = await asyncio.gather(
            *(
                self._deliver(claim, job, render)
                for claim, (_, job), render in zip(mine, claimed, renders, strict=True)
            ),
            return_exceptions=True,
        )
        return waiting | await self._settle_attempts(claimed, attempts)

    async def _claimed_elsewhere(self, jobs: Sequence[tuple[int, Job]], now: datetime) -> dict[int, Outcome]:
        """The jobs whose delivery is still claimed (by another replica, or by a worker that
        died between claiming and recording its send): each comes back when the claim ends,
        then finds the send recorded (a receipt reconciles one made before a crash) or
        claims the delivery itself. Acked instead, a delivery whose worker died would wait
        for the sweep's lost_after_seconds (hours) before being sent."""
        if not jobs:
            return {}
        async with self.db.read() as connection:
            rows = await storage.deliveries_by_ids(connection, [job.delivery_id for _, job in jobs])
        ends = {
            d.delivery_id: d.claimed_until
            for d in rows
            if d.status == QUEUED
            and not d.dead_lettered_at
            and not d.in_digest
            and d.claimed_until is not None
            and d.claimed_until > now
        }
        return {
            index: Outcome(
                retry_in=max(0.0, (ends[job.delivery_id] - utcnow()).total_seconds())
                + CLAIM_END_MARGIN_SECONDS
            )
            for index, job in jobs
            if job.delivery_id in ends
        }

    async def _settle_attempts(
        self,
        claimed: Sequence[tuple[int, Job]],
        attempts: Sequence[Outcome | storage.Result | Retry | BaseException],
    ) -> dict[int, Outcome]:
        """Results recorded together, then the jobs trying again (or dead) together; a job
        whose attempt raised tries again too."""
        outcomes: dict[int, Outcome] = {}
        results: list[tuple[str, storage.Result]] = []
        retries: dict[int, Retry] = {}
        for (index, job), attempt in zip(claimed, attempts, strict=True):
            if isinstance(attempt, Outcome):
                outcomes[index] = attempt
            elif isinstance(attempt, storage.Result):
                results.append((job.channel, attempt))
            elif isinstance(attempt, Retry):
                retries[index] = attempt
            else:
                log.error("delivery job failed", exc_info=attempt, extra={"delivery_id": job.delivery_id})
                retries[index] = Retry(job, repr(attempt))
        # What was sent is recorded first, whatever happens to the others.
        await self._finish_many(results)
        return outcomes | await self._retry_many(retries)

    async def _deliver(
        self, claim: Claim, job: Job, rendered: Rendered | TemplateUnusable | TemplatingUnavailable
    ) -> Outcome | storage.Result | Retry:
        """Sends one claimed delivery: its result to record, the retry to note when it must
        try again, or the job's outcome when it was recorded already."""
        claimed, notification = claim.delivery, claim.notification
        channel = self.channels[job.channel]
        assert not isinstance(channel, InAppChannel)
        if isinstance(rendered, TemplateUnusable):
            return await self._result(
                claimed, storage.Result(claimed.delivery_id, FAILED, error=str(rendered))
            )
        if isinstance(rendered, TemplatingUnavailable):
            return Retry(job, f"templating: {rendered}")
        message = self._message(claimed, notification, rendered, claim.webhook_secret)
        try:
            result = await self._send(channel, message)
        except CircuitOpen:
            # The provider is down: wait while the breaker is open; nothing is lost.
            error = "waiting: the provider's circuit is open"
            return Retry(job, error, self.settings.breaker.open_seconds)
        except ProviderError as error:
            if not error.retryable:
                failed = storage.Result(
                    claimed.delivery_id, FAILED, error=str(error), template=rendered.template
                )
                return await self._result(claimed, failed)
            # A provider's Retry-After (429) wins over the back-off step.
            return Retry(job, str(error), error.retry_after_seconds)
        # Accepted ("queued", "accepted") is sent for us: it left our hands.
        status = our_status(result.status) or SENT
        done = storage.Result(
            claimed.delivery_id,
            SENT if status == QUEUED else status,
            provider_message_id=result.provider_message_id,
            template=rendered.template,
            error="",
        )
        return await self._result(claimed, done)

    async def _result(
        self, delivery: storage.DeliveryRow, result: storage.Result
    ) -> Outcome | storage.Result:
        """A digest's result goes to the items it carries as well: recorded on its own."""
        if not delivery.event_id.startswith(DIGEST_EVENT_PREFIX):
            return result
        await self._finish(
            delivery,
            result.status,
            **{
                name: value
                for name, value in (
                    ("provider_message_id", result.provider_message_id),
                    ("template", result.template),
                    ("error", result.error),
                )
                if value is not None
            },
        )
        return DONE

    async def _finish_many(self, results: Sequence[tuple[str, storage.Result]]) -> None:
        """Results of deliveries (no digests) in one transaction, a statement per status."""
        if not results:
            return
        async with self.db.transaction() as session:
            await storage.advance_each(session, [result for _, result in results], utcnow())
        # Counted as recorded (a receipt that came first moved it further already).
        for channel, result in results:
            metrics.DELIVERIES.labels(channel, result.status).inc()

    async def _unsendable(self, job: Job) -> Outcome:
        async with self.db.read() as connection:
            delivery = await storage.get_delivery(connection, job.delivery_id)
        if delivery is not None and delivery.status == QUEUED:
            await self._finish(delivery, FAILED, error=f"no provider is configured for {job.channel}")
        return DONE

    async def _show_batch(self, jobs: Sequence[tuple[int, Job]]) -> dict[int, Outcome]:
        """In-app: nothing leaves the database, so there is no send to record beforehand:
        rendered (concurrently), then the attempts, the inbox entries and `delivered` in
        one transaction."""
        if not jobs:
            return {}
        firsts = _first_of_each(jobs)
        async with self.db.read() as connection:
            rows = await storage.deliveries_by_ids(connection, [job.delivery_id for _, job in firsts])
            showable = {d.delivery_id: d for d in rows if d.status == QUEUED and not d.dead_lettered_at}
            notifications = await storage.notifications_by_ids(
                connection, [d.notification_id for d in showable.values()]
            )
            prefs = await storage.preferences_of(
                connection, [d.user_id for d in showable.values()], default_preferences(self.settings)
            )
        todo = [
            (index, job, showable[job.delivery_id])
            for index, job in firsts
            if job.delivery_id in showable and showable[job.delivery_id].notification_id in notifications
        ]
        renders = await self.templating.render_many(
            [self._render_call(notifications[d.notification_id], d, prefs[d.user_id]) for _, _, d in todo]
        )
        retries: dict[int, Retry] = {}
        failed: list[tuple[str, storage.Result]] = []
        rendered: dict[str, Rendered] = {}
        for (index, job, delivery), render in zip(todo, renders, strict=True):
            if isinstance(render, Rendered):
                rendered[delivery.delivery_id] = render
            elif isinstance(render, TemplateUnusable):
                failed.append((job.channel, storage.Result(delivery.delivery_id, FAILED, error=str(render))))
            else:
                retries[index] = Retry(job, f"templating: {render}")
        outcomes = await self._retry_many(retries)
        await self._finish_many(failed)
        await self._show_rendered(rendered)
        return outcomes

    async def _show_rendered(self, rendered: Mapping[str, Rendered]) -> None:
        if not rendered:
            return
        now = utcnow()
        async with self.db.transaction() as session:
            claimed = await storage.start_attempts(session, rendered, now, self._claim_until(now))
            shown: list[tuple[str, str, str]] = []
            results: list[storage.Result] = []
            for delivery in claimed:
                render = rendered[delivery.delivery_id]
                # In-app's "address" is its notification: the inbox entry (InAppChannel.show).
                shown.append((delivery.address, render.subject, render.body))
                results.append(
                    storage.Result(
                        delivery.delivery_id, DELIVERED, provider_message_id=delivery.address,
                        template=render.template, error="",
                    )
                )  # fmt: skip
            await storage.show_many(session, shown)
            moved = await storage.advance_each(session, results, now)
        if moved:
            metrics.DELIVERIES.labels("in_app", DELIVERED).inc(moved)

    def _claim_until(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self.settings.delivery.ack_wait_seconds)

    async def claim(self, delivery_id: str, now: datetime) -> Claim | None:
        """Counts the attempt and claims the delivery before anything is sent (a crash
        after the send is a known attempt), with what sending it needs, in one
        transaction; unless it is held back: quiet hours and a reached daily cap defer
        (never drop) what is not critical. None: held back, or not this worker's to send
        (done, dead, in a digest, deferred, claimed by another)."""
        return (await self.claim_many([delivery_id], now)).get(delivery_id)

    async def claim_many(self, delivery_ids: Sequence[str], now: datetime) -> dict[str, Claim]:
        """claim() of a batch in one transaction and a few statements: all claimed at once,
        then those held back (quiet hours; past the daily cap counting every claim of the
        batch, under the locks of the users' channels) released as if never claimed."""
        async with self.db.transaction() as session:
            claimed = await storage.start_attempts(session, delivery_ids, now, self._claim_until(now))
            notifications = await storage.notifications_by_ids(session, [d.notification_id for d in claimed])
            prefs = await storage.preferences_of(
                session, [d.user_id for d in claimed], default_preferences(self.settings)
            )
            claimed = [d for d in claimed if d.notification_id in notifications]
            held = self._quiet(claimed, notifications, prefs, now)
            capped = [
                d
                for d in claimed
                if d.delivery_id not in held
                and notifications[d.notification_id].severity != "critical"
                and prefs[d.user_id].cap(d.channel, self.settings.daily_caps) is not None
            ]
            held.update(await self._over_caps(session, capped, prefs, now))
            for delivery_id, back in held.items():
                await storage.release(session, delivery_id, back.until, now, back.reason)
            kept = [d for d in claimed if d.delivery_id not in held]
            secrets = await storage.verified_addresses(
                session, [d.user_id for d in kept if d.channel == "webhook"], "webhook"
            )
        return {
            d.delivery_id: Claim(
                d,
                notifications[d.notification_id],
                prefs[d.user_id],
                self.secrets.reveal(secrets[d.user_id].secret) if d.user_id in secrets else None,
            )
            for d in kept
        }

    def _quiet(
        self,
        claimed: Sequence[storage.DeliveryRow],
        notifications: Mapping[str, storage.NotificationRow],
        prefs: Mapping[str, Preferences],
        now: datetime,
    ) -> dict[str, HeldBack]:
        held: dict[str, HeldBack] = {}
        for delivery in claimed:
            if notifications[delivery.notification_id].severity == "critical":
                continue
            if delivery.channel in self.settings.quiet_channels:
                until = quiet_until(prefs[delivery.user_id], now)
                if until is not None:
                    held[delivery.delivery_id] = HeldBack(until, "deferred: quiet hours")
        return held

    async def _over_caps(
        self,
        session: AsyncSession,
        capped: Sequence[storage.DeliveryRow],
        prefs: Mapping[str, Preferences],
        now: datetime,
    ) -> dict[str, HeldBack]:
        """The claims past their channel's daily cap (the latest of each user's channel)."""
        groups: dict[tuple[str, str], list[storage.DeliveryRow]] = {}
        for delivery in capped:
            groups.setdefault((delivery.user_id, delivery.channel), []).append(delivery)
        if not groups:
            return {}
        await storage.lock_daily_caps(session, list(groups))
        days = {user_id: day_of(prefs[user_id], now) for user_id, _ in groups}
        windows = [storage.CapWindow(u, c, *days[u]) for u, c in groups]
        # The claims count themselves (in flight, this transaction's).
        used = await storage.used_today_many(session, windows, now)
        held: dict[str, HeldBack] = {}
        for (user_id, channel), members in groups.items():
            cap = prefs[user_id].cap(channel, self.settings.daily_caps) or 0
            excess = used[(user_id, channel)] - cap
            if excess <= 0:
                continue
            back = HeldBack(days[user_id][1], f"deferred: the daily cap of {cap} is reached")
            for delivery in members[-excess:]:
                held[delivery.delivery_id] = back
        return held

    def _render_call(
        self, notification: storage.NotificationRow, delivery: storage.DeliveryRow, prefs: Preferences
    ) -> RenderCall:
        variables = notification.variables
        if notification.source == DIGEST_SOURCE:
            variables = {"count": str(len(variables["items"])), "items": variables["items"]}
        locale = prefs.locale or self.settings.default_locale
        return RenderCall(notification.template_key, delivery.channel, locale, variables)

    def _message(
        self,
        delivery: storage.DeliveryRow,
        notification: storage.NotificationRow,
        rendered: Rendered,
        webhook_secret: str | None,
    ) -> OutboundMessage:
        whatsapp = None
        if rendered.whatsapp_name:
            whatsapp = WhatsAppTemplate(
                rendered.whatsapp_name, rendered.whatsapp_language, list(rendered.whatsapp_parameters)
            )
        return OutboundMessage(
            delivery_id=delivery.delivery_id,
            channel=delivery.channel,
            to=delivery.address,
            subject=rendered.subject or None,
            body=rendered.body,
            whatsapp_template=whatsapp,
            webhook_secret=webhook_secret,
            webhook_event_type=notification.source,
        )

    async def _send(self, channel: Channel, message: OutboundMessage) -> SendResult:
        """CircuitOpen at once while the channel's provider is failing."""
        result: SendResult = await self.breakers[channel.channel].call(lambda: channel.send(message))
        return result

    async def _retry_many(self, retries: Mapping[int, Retry]) -> dict[int, Outcome]:
        """Each job again later (after its wait, else the back-off step), or dead past
        max_deliver: their errors noted in one transaction."""
        if not retries:
            return {}
        outcomes: dict[int, Outcome] = {}
        noted: list[tuple[str, str]] = []
        dead: list[tuple[str, str]] = []
        for index, retry in retries.items():
            outcome = self.queue.retry_or_dead(retry.job, retry.error)
            if retry.wait is not None and outcome.retry_in is not None:
                outcome = Outcome(retry_in=retry.wait)
            outcomes[index] = outcome
            if outcome.dead_reason:
                dead.append((retry.job.delivery_id, outcome.dead_reason))
            else:
                noted.append((retry.job.delivery_id, retry.error))
        now = utcnow()
        async with self.db.transaction() as session:
            await storage.mark_dead(session, dead, now)
            await storage.note_errors(session, noted, now)
        return outcomes

    async def _finish(self, delivery: storage.DeliveryRow, status: str, **values: Any) -> None:
        """The result, and the same for the items a digest carried."""
        now = utcnow()
        async with self.db.transaction() as session:
            ids = [delivery.delivery_id]
            if delivery.event_id.startswith(DIGEST_EVENT_PREFIX):  # only a digest carries items
                ids += await storage.digest_members(session, delivery.delivery_id)
            moved = await storage.advance(session, ids, status, now, **values)
        if moved:
            metrics.DELIVERIES.labels(delivery.channel, status).inc(moved)


def _notification_row(message: Message, now: datetime) -> storage.NotificationRow:
    plan = message.plan
    return storage.NotificationRow(
        new_id(), message.user_id, message.event_id, message.source, plan.template, plan.variables,
        plan.severity, "", "", False, now, None,
    )  # fmt: skip


def _first_of_each(jobs: Sequence[tuple[int, Job]]) -> list[tuple[int, Job]]:
    """Each delivery's first job of a batch (a repeat is done by the first)."""
    seen: set[str] = set()
    firsts = []
    for index, job in jobs:
        if job.delivery_id not in seen:
            seen.add(job.delivery_id)
            firsts.append((index, job))
    return firsts


# ---------------------------------------------------------------- the sweep


class Sweep:
    """Queues what is due: deliveries never queued (a crash between commit and publish),
    deferred ones whose time came, and each user's digest at their digest time."""

    def __init__(
        self, db: Database, settings: NotificationSettings, queue: DeliveryQueue, intake: Intake
    ) -> None:
        self.db = db
        self.settings = settings
        self.queue = queue
        self.intake = intake

    async def run(self) -> None:
        await self.queue.bus.wait_ready()
        interval = self.settings.delivery.sweep_interval_seconds
        while True:
            try:
                await self.once()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("delivery sweep failed", extra={"error": repr(error)})
            await asyncio.sleep(interval)

    async def once(self) -> int:
        now = utcnow()
        await self.digests(now)
        delivery = self.settings.delivery
        unqueued_before = now - timedelta(seconds=delivery.unqueued_after_seconds)
        lost_before = now - timedelta(seconds=delivery.lost_after_seconds)
        async with self.db.transaction() as session:
            due = await storage.due_for_queue(session, now, unqueued_before, SWEEP_BATCH, lost_before)
        for delivery in due:
            await self.queue.enqueue(delivery.delivery_id, delivery.channel, now)
        return len(due)

    async def digests(self, now: datetime) -> None:
        """One digest notification per user of the items due, one delivery per channel."""
        fresh: list[NewDelivery] = []
        async with self.db.transaction() as session:
            held = await storage.digests_due(session, now, SWEEP_BATCH)
            by_user: dict[str, list[storage.DeliveryRow]] = {}
            for delivery in held:
                by_user.setdefault(delivery.user_id, []).append(delivery)
            for user_id, all_items in by_user.items():
                items = all_items[: self.settings.max_digest_items]
                titles: list[str] = []
                for item in items:
                    notification = await storage.notification_by_id(session, item.notification_id)
                    if notification is not None and notification.title not in titles:
                        titles.append(notification.title or notification.template_key)
                prefs = await storage.get_preferences(session, user_id, default_preferences(self.settings))
                plan = MessagePlan(self.settings.digest_template, {"items": titles}, "info")
                channels = sorted({item.channel for item in items})
                members = [f"{item.channel}/{item.delivery_id}" for item in items]
                event_id = f"{DIGEST_EVENT_PREFIX}{items[0].delivery_id}"
                fresh += await self.intake.notify(
                    session, user_id, event_id, DIGEST_SOURCE, plan, channels, prefs,
                    now, digest_members=members,
                )  # fmt: skip
        if fresh:
            await self.intake.enqueue(fresh)


# ---------------------------------------------------------------- the user's inbox


@dataclass(frozen=True)
class Page:
    notifications: list[storage.NotificationRow]
    more: bool
    unread: int


class Inbox:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def list(self, user_id: str, after: str, size: int, unread_only: bool) -> Page:
        async with self.db.read() as connection:
            rows = await storage.list_notifications(connection, user_id, after, size + 1, unread_only)
            unread = await storage.unread_count(connection, user_id)
        return Page(rows[:size], len(rows) > size, unread)

    async def get(
        self, user_id: str, notification_id: str
    ) -> tuple[storage.NotificationRow, list[storage.DeliveryRow]]:
        async with self.db.read() as connection:
            notification = await storage.get_notification(connection, user_id, notification_id)
            if notification is None:
                raise NotFound("notification", notification_id)
            return notification, await storage.deliveries_of(connection, notification_id)

    async def mark_read(self, user_id: str, notification_id: str) -> storage.NotificationRow:
        async with self.db.transaction() as session:
            await storage.mark_read(session, user_id, notification_id, utcnow())
            notification = await storage.get_notification(session, user_id, notification_id)
        if notification is None or not notification.shown:
            raise NotFound("notification", notification_id)
        return notification

    async def mark_all_read(self, user_id: str) -> int:
        async with self.db.transaction() as session:
            return await storage.mark_all_read(session, user_id, utcnow())


# ---------------------------------------------------------------- preferences


class PreferenceCases:
    def __init__(self, db: Database, settings: NotificationSettings) -> None:
        self.db = db
        self.settings = settings

    async def get(self, user_id: str) -> Preferences:
        async with self.db.read() as connection:
            return await storage.get_preferences(connection, user_id, default_preferences(self.settings))

    async def update(self, user_id: str, changes: dict[str, Any]) -> Preferences:
        """`changes`: validated fields of Preferences to replace."""
        async with self.db.transaction() as session:
            current = await storage.get_preferences(session, user_id, default_preferences(self.settings))
            updated = replace(current, **changes)
            await storage.save_preferences(session, user_id, updated, utcnow())
        return updated


# ---------------------------------------------------------------- contact points


@dataclass(frozen=True)
class CreatedContact:
    contact: storage.ContactPointRow
    webhook_secret: str


class ContactPoints:
    """Addresses per channel. Numbers are verified by a one-time code sent through
    their own channel's adapter; a webhook endpoint gets its signing secret once."""

    def __init__(
        self,
        db: Database,
        settings: NotificationSettings,
        channels: Mapping[str, Channel],
        templating: TemplatingClient,
        secrets: SecretBox,
    ) -> None:
        self.db = db
        self.settings = settings
        self.channels = channels
        self.templating = templating
        self.secrets = secrets

    async def list(self, user_id: str) -> list[storage.ContactPointRow]:
        async with self.db.read() as connection:
            return await storage.contact_points_of(connection, user_id)

    async def create(self, user_id: str, channel: str, address: str) -> CreatedContact:
        address = contact_address(channel, address)
        if channel in CODE_CHANNELS and channel not in self.channels:
            raise FailedPrecondition(f"{channel} messages are not available")
        now = utcnow()
        contact_id = new_id()
        if channel == "webhook":
            try:
                check_webhook_url(address, self.settings.providers.webhook)
            except WebhookUrlRefused as refused:
                raise InvalidArgument.of("address", str(refused)) from None
        secret = generate_webhook_secret() if channel == "webhook" else ""
        code = new_code(self.settings.verification.code_digits) if channel in CODE_CHANNELS else ""
        ttl = timedelta(minutes=self.settings.verification.code_ttl_minutes)
        row = storage.ContactPointRow(
            contact_point_id=contact_id, user_id=user_id, channel=channel, address=address,
            # Email (the account's or another) and webhooks need no code; numbers do.
            verified_at=None if code else now,
            code_digest=code_digest(contact_id, code) if code else "",
            code_expires_at=now + ttl if code else None, code_attempts=0,
            secret=self.secrets.seal(secret) if secret else "", created_at=now,
        )  # fmt: skip
        async with self.db.transaction() as session:
            if await storage.count_contact_points(session, user_id) >= self.settings.max_contact_points:
                raise ResourceExhausted(f"at most {self.settings.max_contact_points} contact points")
            if not await storage.add_contact_point(session, row):
                raise FailedPrecondition("this address is already registered")
        if code:
            await self._send_code(row, code)
        return CreatedContact(row, secret)

    async def _send_code(self, contact: storage.ContactPointRow, code: str) -> None:
        verification = self.settings.verification
        variables = {"code": code, "expires_minutes": str(verification.code_ttl_minutes)}
        call = RenderCall(verification.template, contact.channel, self.settings.default_locale, variables)
        try:
            rendered = await self.templating.render(call)
        except TemplateUnusable as error:
            raise FailedPrecondition(f"the code could not be written: {error}") from None
        except TemplatingUnavailable:
            raise Unavailable("the code could not be sent now: try again") from None
        whatsapp = None
        if rendered.whatsapp_name:
            whatsapp = WhatsAppTemplate(
                rendered.whatsapp_name, rendered.whatsapp_language, list(rendered.whatsapp_parameters)
            )
        message = OutboundMessage(
            delivery_id=new_id(), channel=contact.channel, to=contact.address, subject=None,
            body=rendered.body, whatsapp_template=whatsapp,
        )  # fmt: skip
        try:
            await self.channels[contact.channel].send(message)
        except ProviderError as error:
            raise FailedPrecondition(f"the code could not be sent: {error}") from None

    async def verify(self, user_id: str, contact_point_id: str, code: str) -> storage.ContactPointRow:
        now = utcnow()
        verification = self.settings.verification
        async with self.db.transaction() as session:
            contact = await storage.get_contact_point(session, user_id, contact_point_id)
            if contact is None:
                raise NotFound("contact point", contact_point_id)
            if contact.verified_at is not None:
                return contact
            if contact.code_attempts >= verification.max_attempts:
                raise FailedPrecondition("too many wrong codes: register the number again")
            if contact.code_expires_at is None or contact.code_expires_at <= now:
                raise FailedPrecondition("the code has expired: register the number again")
            if not code_matches(contact.contact_point_id, code, contact.code_digest):
                await storage.update_contact_point(
                    session, contact_point_id, code_attempts=contact.code_attempts + 1
                )
                wrong = True
            else:
                await storage.update_contact_point(session, contact_point_id, verified_at=now, code_digest="")
                wrong = False
        if wrong:
            raise InvalidArgument.of("code", "not the code we sent")
        return replace(contact, verified_at=now, code_digest="")

    async def delete(self, user_id: str, contact_point_id: str) -> None:
        async with self.db.transaction() as session:
            if not await storage.delete_contact_point(session, user_id, contact_point_id):
                raise NotFound("contact point", contact_point_id)


# ---------------------------------------------------------------- provider receipts


@dataclass(frozen=True)
class StatusUpdateIn:
    """A provider's receipt: its message id (and ours when it carries it) and status."""

    provider_message_id: str
    status: str
    delivery_id: str = ""


class Receipts:
    """Moves deliveries forward from providers' verified callbacks."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def apply(self, updates: Sequence[StatusUpdateIn]) -> int:
        moved_total = 0
        now = utcnow()
        async with self.db.transaction() as session:
            for update in updates:
                status = our_status(update.status)
                if status is None or status == QUEUED:
                    continue
                ids = await storage.delivery_ids_of_provider_message(session, update.provider_message_id)
                if not ids and update.delivery_id:
                    # The send's answer was lost (a crash): the receipt names our record.
                    ids = [update.delivery_id]
                    await storage.advance(
                        session, ids, SENT, now, provider_message_id=update.provider_message_id
                    )
                if not ids:
                    continue
                moved = await storage.advance(session, ids, status, now)
                if moved:
                    delivery = await storage.get_delivery(session, ids[0])
                    metrics.DELIVERIES.labels(delivery.channel if delivery else "", status).inc(moved)
                moved_total += moved
        return moved_total


class ProviderCallbacks:
    """Providers' receipts: nothing is read before the signature checks out (a bad
    or missing one is Unauthenticated, 401 through the gateway, and changes nothing)."""

    def __init__(self, receipts: Receipts, providers: ProvidersSettings) -> None:
        self.receipts = receipts
        self.providers = providers

    async def twilio(self, raw_form: bytes, signature: str, delivery_id: str) -> int:
        sms = self.providers.sms
        if sms.auth_token is None or not sms.status_callback_url:
            raise Unauthenticated("twilio callbacks are not configured")
        form = dict(parse_qsl(raw_form.decode("utf-8", "replace"), keep_blank_values=True))
        url = (
            with_query(sms.status_callback_url, delivery_id=delivery_id)
            if delivery_id
            else sms.status_callback_url
        )
        if not signature or not verify_twilio_signature(
            url, form, signature, sms.auth_token.get_secret_value()
        ):
            raise Unauthenticated("bad signature")
        try:
            update = twilio_status_update(form)
        except ValueError as error:
            raise InvalidArgument.of("body", str(error)) from None
        return await self.receipts.apply(
            [StatusUpdateIn(update.provider_message_id, update.status, delivery_id)]
        )

    def meta_challenge(self, mode: str, verify_token: str, challenge: str) -> str:
        """Meta's subscription handshake: the challenge back when the verify token is ours."""
        ours = self.providers.whatsapp.verify_token
        params = {"hub.mode": mode, "hub.verify_token": verify_token, "hub.challenge": challenge}
        answer = meta_verify_challenge(params, ours.get_secret_value() if ours else "")
        if answer is None:
            raise PermissionDenied("not our verify token")
        return answer

    async def meta(self, raw_body: bytes, signature: str) -> int:
        secret = self.providers.whatsapp.app_secret
        if secret is None:
            raise Unauthenticated("whatsapp callbacks are not configured")
        if not signature or not verify_meta_signature(raw_body, signature, secret.get_secret_value()):
            raise Unauthenticated("bad signature")
        try:
            document = json.loads(raw_body)
        except ValueError:
            raise InvalidArgument.of("body", "not JSON") from None
        updates = [
            StatusUpdateIn(u.provider_message_id, u.status, u.delivery_id or "")
            for u in meta_status_updates(document)
        ]
        return await self.receipts.apply(updates)


# ---------------------------------------------------------------- dead letters


class DeadLetters:
    """Operators' view of the jobs that failed max_deliver times, and their replay."""

    def __init__(self, db: Database, queue: DeliveryQueue) -> None:
        self.db = db
        self.queue = queue

    async def list(self, after: int, size: int) -> tuple[list[DeadLetterRecord], int]:
        records = await self.queue.dead_letters(after, size)
        return records, await self.queue.dead_letter_count()

    async def get(self, sequence: int) -> DeadLetterRecord:
        record = await self.queue.get_dead_letter(sequence)
        if record is None:
            raise NotFound("dead letter", str(sequence))
        return record

    async def replay(self, sequence: int) -> str:
        """Queues the delivery again (its attempts start over in the queue) and drops
        the dead letter. A delivery already done is not sent again."""
        record = await self.get(sequence)
        now = utcnow()
        async with self.db.transaction() as session:
            await storage.revive(session, record.delivery_id, now)
        await self.queue.enqueue(record.delivery_id, record.channel, now)
        await self.queue.forget_dead_letter(sequence)
        return record.delivery_id

    async def sample(self) -> None:
        metrics.DEAD_LETTERS.set(await self.queue.dead_letter_count())
