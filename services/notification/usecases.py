"""The notification use cases: events become notifications and deliveries (the
intake), deliveries are sent from the work queue (the worker), held ones queued
when their time comes (the sweep, digests included), the user's inbox, preferences
and contact points, providers' receipts and operators' dead letters."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import grpc
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
from services.notification.settings import NotificationSettings
from services.notification.templates import Rendered, TemplateUnusable, TemplatingClient

log = logging.getLogger(__name__)

DIGEST_SOURCE = "notification.digest"
# A digest notification's event id: this prefix and its first item's delivery id.
DIGEST_EVENT_PREFIX = "digest:"
SWEEP_BATCH = 500


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


class HeldBack(Exception):
    """A delivery waits until `until` (quiet hours, a reached daily cap): its claim rolls back."""

    def __init__(self, until: datetime, reason: str) -> None:
        super().__init__(reason)
        self.until = until
        self.reason = reason


@dataclass(frozen=True)
class Claim:
    """A delivery this worker is sending, with what the message is made of."""

    delivery: storage.DeliveryRow
    notification: storage.NotificationRow
    prefs: Preferences
    webhook_secret: str | None


@dataclass(frozen=True)
class NewDelivery:
    delivery_id: str
    channel: str


class Intake:
    """Turns source events into a notification and one delivery per channel, in the
    consumer's inbox transaction; the deliveries are queued once it commits."""

    def __init__(
        self, db: Database, settings: NotificationSettings, queue: DeliveryQueue, erased: ErasedUsers
    ) -> None:
        self.db = db
        self.settings = settings
        self.queue = queue
        self.erased = erased
        self._pending: set[asyncio.Task[None]] = set()

    async def on_events(self, session: AsyncSession, events: Sequence[Event[Any]]) -> None:
        fresh: list[NewDelivery] = []
        for event in events:
            fresh += await self.on_event(session, event)
        if fresh:
            after_commit(session, lambda: self._enqueue_soon(fresh))

    async def on_event(self, session: AsyncSession, event: Event[Any]) -> list[NewDelivery]:
        source = self.settings.sources.get(event.type)
        if source is None or not event.user_id:
            log.warning("event without a source mapping skipped", extra={"event_type": event.type})
            return []
        payload = payload_dict(event)
        now = utcnow()
        if source.email_field and payload.get(source.email_field):
            await self._account_email(session, event.user_id, str(payload[source.email_field]), now)
        prefs = await storage.get_preferences(session, event.user_id, default_preferences(self.settings))
        name = str(field_value(payload, source.name_field) or "") if source.name_field else ""
        if name and name != prefs.display_name:
            await storage.set_display_name(session, event.user_id, name, prefs, now)
            prefs = replace(prefs, display_name=name)
        channels = prefs.channels_for(event.type, source.default_channels, source.mandatory_channels)
        addresses = event_addresses(source.address_fields, payload)
        # The payload's own fields win over `recipient` (the user as notification knows them).
        scope = {"recipient": {"name": prefs.display_name}, **payload}
        fresh: list[NewDelivery] = []
        for index, message in enumerate(message_payloads(source, scope)):
            plan = plan_of(source, message, now)
            if plan is None:
                continue
            # One message per item, each under a key of its own (notifications' and
            # deliveries' UNIQUE event ids): a redelivery still makes none twice.
            message_id = f"{event.event_id}/{index}" if source.each else event.event_id
            fresh += await self.notify(
                session,
                event.user_id,
                message_id,
                event.type,
                plan,
                channels,
                prefs,
                now,
                addresses=addresses,
            )
        return fresh

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
        notification = storage.NotificationRow(
            new_id(), user_id, event_id, source, plan.template, plan.variables, plan.severity,
            "", "", False, now, None,
        )  # fmt: skip
        if not await storage.add_notification(session, notification):
            existing = await storage.notification_of_event(session, event_id)
            if existing is None:
                return []
            notification = existing
        fresh: list[NewDelivery] = []
        for channel in channels:
            address = (addresses or {}).get(channel) or await self._address(
                session, user_id, channel, notification.notification_id
            )
            if address is None:
                continue
            held = (
                channel != "in_app"
                and not digest_members
                and not plan.critical
                and prefs.digest
                and plan.severity in self.settings.digest_severities
            )
            delivery = storage.DeliveryRow(
                delivery_id=new_id(), notification_id=notification.notification_id, user_id=user_id,
                event_id=event_id, channel=channel, address=address, status=QUEUED, attempts=0,
                provider_message_id=None, error="", template="",
                deferred_until=next_digest_time(prefs, now) if held else None, in_digest=held,
                digest_delivery_id=None, claimed_until=None, enqueued_at=None, dead_lettered_at=None,
                created_at=now, updated_at=now, sent_at=None,
            )  # fmt: skip
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
        task = asyncio.get_running_loop().create_task(self.enqueue(deliveries))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def enqueue(self, deliveries: list[NewDelivery]) -> None:
        """Publishes the jobs, then marks them queued; a failure leaves them to the sweep."""
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
    """Sends one delivery per job: hold it back (quiet hours, daily cap), or count the
    attempt, render, send through the channel's breaker and record the result."""

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

    async def handle(self, job: Job) -> Outcome:
        channel = self.channels.get(job.channel)
        if channel is None:
            return await self._unsendable(job)
        if isinstance(channel, InAppChannel):
            return await self._show(channel, job)
        claim = await self.claim(job.delivery_id, utcnow())
        if claim is None:
            return DONE
        claimed, notification = claim.delivery, claim.notification
        try:
            rendered = await self._render(notification, claimed, claim.prefs)
        except TemplateUnusable as error:
            await self._finish(claimed, FAILED, error=str(error))
            return DONE
        except grpc.aio.AioRpcError as error:
            return await self._retry(claimed, job, f"templating: {error.code().name}")
        message = self._message(claimed, notification, rendered, claim.webhook_secret)
        try:
            result = await self._send(channel, message)
        except CircuitOpen:
            # The provider is down: wait while the breaker is open; nothing is lost.
            error = "waiting: the provider's circuit is open"
            return await self._retry(claimed, job, error, self.settings.breaker.open_seconds)
        except ProviderError as error:
            if not error.retryable:
                await self._finish(claimed, FAILED, error=str(error), template=rendered.template)
                return DONE
            # A provider's Retry-After (429) wins over the back-off step.
            return await self._retry(claimed, job, str(error), error.retry_after_seconds)
        # Accepted ("queued", "accepted") is sent for us: it left our hands.
        status = our_status(result.status) or SENT
        await self._finish(
            claimed,
            SENT if status == QUEUED else status,
            provider_message_id=result.provider_message_id,
            template=rendered.template,
            error="",
        )
        return DONE

    async def _unsendable(self, job: Job) -> Outcome:
        async with self.db.read() as connection:
            delivery = await storage.get_delivery(connection, job.delivery_id)
        if delivery is not None and delivery.status == QUEUED:
            await self._finish(delivery, FAILED, error=f"no provider is configured for {job.channel}")
        return DONE

    async def _show(self, channel: InAppChannel, job: Job) -> Outcome:
        """In-app: nothing leaves the database, so there is no send to record beforehand:
        rendered, then the attempt, the inbox entry and `delivered` in one transaction."""
        async with self.db.read() as connection:
            delivery = await storage.get_delivery(connection, job.delivery_id)
            if delivery is None or delivery.status != QUEUED or delivery.dead_lettered_at:
                return DONE
            notification = await storage.notification_by_id(connection, delivery.notification_id)
            prefs = await storage.get_preferences(
                connection, delivery.user_id, default_preferences(self.settings)
            )
        if notification is None:
            return DONE
        try:
            rendered = await self._render(notification, delivery, prefs)
        except TemplateUnusable as error:
            await self._finish(delivery, FAILED, error=str(error))
            return DONE
        except grpc.aio.AioRpcError as error:
            return await self._retry(delivery, job, f"templating: {error.code().name}")
        now = utcnow()
        async with self.db.transaction() as session:
            claimed = await storage.start_attempt(session, delivery.delivery_id, now, self._claim_until(now))
            if claimed is None:
                return DONE
            result = await channel.show(session, self._message(claimed, notification, rendered, None))
            moved = await storage.advance(
                session, [claimed.delivery_id], DELIVERED, now,
                provider_message_id=result.provider_message_id, template=rendered.template, error="",
            )  # fmt: skip
        if moved:
            metrics.DELIVERIES.labels(claimed.channel, DELIVERED).inc(moved)
        return DONE

    def _claim_until(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self.settings.delivery.ack_wait_seconds)

    async def claim(self, delivery_id: str, now: datetime) -> Claim | None:
        """Counts the attempt and claims the delivery before anything is sent (a crash
        after the send is a known attempt), with what sending it needs, in one
        transaction; unless it is held back: quiet hours and a reached daily cap defer
        (never drop) what is not critical, and the claim rolls back. The cap is counted
        after the claim under the user's channel lock: concurrent jobs of one user cannot
        pass it. None: held back, or not this worker's to send (done, dead, in a digest,
        deferred, claimed by another)."""
        try:
            async with self.db.transaction() as session:
                delivery = await storage.start_attempt(session, delivery_id, now, self._claim_until(now))
                if delivery is None:
                    return None
                notification = await storage.notification_by_id(session, delivery.notification_id)
                if notification is None:
                    return None
                prefs = await storage.get_preferences(
                    session, delivery.user_id, default_preferences(self.settings)
                )
                await self._hold_back(session, delivery, notification, prefs, now)
                secret = await self._webhook_secret(session, delivery)
        except HeldBack as held:
            async with self.db.transaction() as session:
                await storage.defer(session, delivery_id, held.until, now, held.reason)
            return None
        return Claim(delivery, notification, prefs, secret)

    async def _hold_back(
        self,
        session: AsyncSession,
        delivery: storage.DeliveryRow,
        notification: storage.NotificationRow,
        prefs: Preferences,
        now: datetime,
    ) -> None:
        """HeldBack in quiet hours, or when the day's cap is reached counting this claim."""
        if notification.severity == "critical":
            return
        if delivery.channel in self.settings.quiet_channels:
            until = quiet_until(prefs, now)
            if until is not None:
                raise HeldBack(until, "deferred: quiet hours")
        cap = prefs.cap(delivery.channel, self.settings.daily_caps)
        if cap is None:
            return
        await storage.lock_daily_cap(session, delivery.user_id, delivery.channel)
        start, end = day_of(prefs, now)
        # The claim counts itself (in flight, committed or not: this transaction's).
        if await storage.used_today(session, delivery.user_id, delivery.channel, start, end, now) > cap:
            raise HeldBack(end, f"deferred: the daily cap of {cap} is reached")

    async def _webhook_secret(self, session: AsyncSession, delivery: storage.DeliveryRow) -> str | None:
        """The signing secret of the user's webhook endpoint (webhook deliveries only)."""
        if delivery.channel != "webhook":
            return None
        contact = await storage.verified_address(session, delivery.user_id, "webhook")
        return self.secrets.reveal(contact.secret) if contact else None

    async def _render(
        self, notification: storage.NotificationRow, delivery: storage.DeliveryRow, prefs: Preferences
    ) -> Rendered:
        variables = notification.variables
        if notification.source == DIGEST_SOURCE:
            variables = {"count": str(len(variables["items"])), "items": variables["items"]}
        return await self.templating.render(
            notification.template_key,
            delivery.channel,
            prefs.locale or self.settings.default_locale,
            variables,
        )

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

    async def _retry(
        self, delivery: storage.DeliveryRow, job: Job, error: str, wait: float | None = None
    ) -> Outcome:
        """Again later (after `wait`, else the back-off step), or dead past max_deliver."""
        outcome = self.queue.retry_or_dead(job, error)
        if wait is not None and outcome.retry_in is not None:
            outcome = Outcome(retry_in=wait)
        now = utcnow()
        async with self.db.transaction() as session:
            if outcome.dead_reason:
                await storage.mark_dead(session, delivery.delivery_id, outcome.dead_reason, now)
            else:
                await storage.note_error(session, delivery.delivery_id, error, now)
        return outcome

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
        rendered = await self.templating.render(
            verification.template, contact.channel, self.settings.default_locale, variables
        )
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
