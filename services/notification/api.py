"""NotificationService (the signed-in user's, REST through the gateways),
NotificationCallbackService (providers' receipts, public: their signatures are the
credential) and NotificationInternalService (operators' dead letters): requests ->
validated inputs -> one use case -> message. The owner is always current_identity()."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from google.api.httpbody_pb2 import HttpBody
from grpc.aio import ServicerContext
from typing_extensions import override

from expense.notification.v1 import notification_pb2 as pb
from expense.notification.v1 import notification_pb2_grpc
from services.kit.domain.errors import InvalidArgument
from services.kit.domain.ids import is_uuid
from services.kit.domain.timestamps import rfc3339
from services.kit.domain.validation import parse_update_mask
from services.kit.identity.tokens import current_identity
from services.notification import storage
from services.notification.domain import CONTACT_CHANNELS, Preferences, parse_clock
from services.notification.queue import DeadLetterRecord
from services.notification.settings import CHANNELS, NotificationSettings
from services.notification.usecases import (
    ContactPoints,
    DeadLetters,
    Inbox,
    PreferenceCases,
    ProviderCallbacks,
)

SERVICE_NAME = "expense.notification.v1.NotificationService"
CALLBACK_SERVICE_NAME = "expense.notification.v1.NotificationCallbackService"
INTERNAL_SERVICE_NAME = "expense.notification.v1.NotificationInternalService"
PREFERENCE_FIELDS = ("rules", "quiet_hours", "digest", "digest_time", "daily_caps")
MAX_CAP = 10000


class NotificationServicer(notification_pb2_grpc.NotificationServiceServicer):
    def __init__(
        self,
        inbox: Inbox,
        preferences: PreferenceCases,
        contacts: ContactPoints,
        settings: NotificationSettings,
    ) -> None:
        self.inbox = inbox
        self.preferences = preferences
        self.contacts = contacts
        self.settings = settings

    @override
    async def ListNotifications(
        self, request: pb.ListNotificationsRequest, context: object
    ) -> pb.ListNotificationsResponse:
        if request.page_size < 0:
            raise InvalidArgument.of("page_size", "must not be negative")
        size = min(request.page_size or self.settings.default_page_size, self.settings.max_page_size)
        after = decode_page_token(request.page_token)
        page = await self.inbox.list(current_identity().user_id, after, size, request.unread_only)
        last = page.notifications[-1].notification_id if page.notifications and page.more else ""
        return pb.ListNotificationsResponse(
            notifications=[notification_proto(row) for row in page.notifications],
            next_page_token=encode_page_token(last) if last else "",
            unread_count=page.unread,
        )

    @override
    async def GetNotification(self, request: pb.GetNotificationRequest, context: object) -> pb.Notification:
        notification_id = required_id(request.notification_id, "notification_id")
        notification, deliveries = await self.inbox.get(current_identity().user_id, notification_id)
        return notification_proto(notification, deliveries)

    @override
    async def MarkRead(self, request: pb.MarkReadRequest, context: object) -> pb.Notification:
        notification_id = required_id(request.notification_id, "notification_id")
        return notification_proto(await self.inbox.mark_read(current_identity().user_id, notification_id))

    @override
    async def MarkAllRead(self, request: pb.MarkAllReadRequest, context: object) -> pb.MarkAllReadResponse:
        return pb.MarkAllReadResponse(marked_count=await self.inbox.mark_all_read(current_identity().user_id))

    @override
    async def GetPreferences(self, request: pb.GetPreferencesRequest, context: object) -> pb.Preferences:
        return preferences_proto(await self.preferences.get(current_identity().user_id))

    @override
    async def UpdatePreferences(
        self, request: pb.UpdatePreferencesRequest, context: object
    ) -> pb.Preferences:
        paths = parse_update_mask(request.update_mask, set(PREFERENCE_FIELDS)) or list(PREFERENCE_FIELDS)
        changes = preference_changes(request.preferences, paths, set(self.settings.sources))
        return preferences_proto(await self.preferences.update(current_identity().user_id, changes))

    @override
    async def ListContactPoints(
        self, request: pb.ListContactPointsRequest, context: object
    ) -> pb.ListContactPointsResponse:
        contacts = await self.contacts.list(current_identity().user_id)
        return pb.ListContactPointsResponse(contact_points=[contact_proto(row) for row in contacts])

    @override
    async def CreateContactPoint(
        self, request: pb.CreateContactPointRequest, context: object
    ) -> pb.CreateContactPointResponse:
        if request.channel not in CONTACT_CHANNELS:
            raise InvalidArgument.of("channel", f"one of {', '.join(CONTACT_CHANNELS)}")
        created = await self.contacts.create(current_identity().user_id, request.channel, request.address)
        return pb.CreateContactPointResponse(
            contact_point=contact_proto(created.contact), webhook_secret=created.webhook_secret
        )

    @override
    async def VerifyContactPoint(
        self, request: pb.VerifyContactPointRequest, context: object
    ) -> pb.ContactPoint:
        contact_id = required_id(request.contact_point_id, "contact_point_id")
        if not request.code.strip().isdigit() or len(request.code.strip()) > 12:
            raise InvalidArgument.of("code", "the digits we sent")
        return contact_proto(await self.contacts.verify(current_identity().user_id, contact_id, request.code))

    @override
    async def DeleteContactPoint(
        self, request: pb.DeleteContactPointRequest, context: object
    ) -> pb.DeleteContactPointResponse:
        contact_id = required_id(request.contact_point_id, "contact_point_id")
        await self.contacts.delete(current_identity().user_id, contact_id)
        return pb.DeleteContactPointResponse()


class CallbackServicer(notification_pb2_grpc.NotificationCallbackServiceServicer):
    """Public: nothing is read before the provider's signature checks out."""

    def __init__(self, callbacks: ProviderCallbacks) -> None:
        self.callbacks = callbacks

    @override
    async def TwilioStatus(
        self, request: pb.TwilioStatusRequest, context: ServicerContext[Any, Any]
    ) -> pb.ProviderCallbackResponse:
        signature = header(context, "x-twilio-signature")
        updated = await self.callbacks.twilio(request.body.data, signature, request.delivery_id)
        return pb.ProviderCallbackResponse(updated=updated)

    @override
    async def MetaWebhook(
        self, request: pb.MetaWebhookRequest, context: ServicerContext[Any, Any]
    ) -> pb.ProviderCallbackResponse:
        signature = header(context, "x-hub-signature-256")
        return pb.ProviderCallbackResponse(updated=await self.callbacks.meta(request.body.data, signature))

    @override
    async def MetaWebhookVerify(self, request: pb.MetaWebhookVerifyRequest, context: object) -> HttpBody:
        challenge = self.callbacks.meta_challenge(
            request.hub.mode, request.hub.verify_token, request.hub.challenge
        )
        return HttpBody(content_type="text/plain", data=challenge.encode())


class NotificationInternalServicer(notification_pb2_grpc.NotificationInternalServiceServicer):
    """Operators only ([mesh.internal_callers] lists no service)."""

    def __init__(self, dead_letters: DeadLetters, settings: NotificationSettings) -> None:
        self.dead_letters = dead_letters
        self.settings = settings

    @override
    async def ListDeadLetters(
        self, request: pb.ListDeadLettersRequest, context: object
    ) -> pb.ListDeadLettersResponse:
        if request.page_size < 0:
            raise InvalidArgument.of("page_size", "must not be negative")
        size = min(request.page_size or self.settings.default_page_size, self.settings.max_page_size)
        after = 0
        if request.page_token:
            token = decode_page_token(request.page_token)
            if not token.isdigit():
                raise InvalidArgument.of("page_token", "not a token this service issued")
            after = int(token)
        records, total = await self.dead_letters.list(after, size)
        more = len(records) == size
        return pb.ListDeadLettersResponse(
            dead_letters=[dead_letter_proto(record) for record in records],
            next_page_token=encode_page_token(str(records[-1].sequence)) if records and more else "",
            total=total,
        )

    @override
    async def GetDeadLetter(self, request: pb.GetDeadLetterRequest, context: object) -> pb.DeadLetter:
        return dead_letter_proto(await self.dead_letters.get(sequence(request.sequence)))

    @override
    async def ReplayDeadLetter(
        self, request: pb.ReplayDeadLetterRequest, context: object
    ) -> pb.ReplayDeadLetterResponse:
        return pb.ReplayDeadLetterResponse(
            delivery_id=await self.dead_letters.replay(sequence(request.sequence))
        )


# ---------------------------------------------------------------- conversions


def header(context: ServicerContext[Any, Any], name: str) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == name and isinstance(value, str):
            return value
    return ""


def sequence(value: int) -> int:
    if value < 1:
        raise InvalidArgument.of("sequence", "required: the dead letter's sequence number")
    return value


def required_id(value: str, field: str) -> str:
    if not is_uuid(value):
        raise InvalidArgument.of(field, "required: an id this service issued")
    return value


def encode_page_token(last: str) -> str:
    return base64.urlsafe_b64encode(last.encode()).decode().rstrip("=")


def decode_page_token(token: str) -> str:
    if not token:
        return ""
    try:
        last = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidArgument.of("page_token", "not a token this service issued") from None
    if not (is_uuid(last) or last.isdigit()):
        raise InvalidArgument.of("page_token", "not a token this service issued")
    return last


def preference_changes(message: pb.Preferences, paths: list[str], sources: set[str]) -> dict[str, Any]:
    """The validated fields of Preferences named by `paths`."""
    changes: dict[str, Any] = {}
    if "rules" in paths:
        rules: dict[str, tuple[str, ...]] = {}
        for index, rule in enumerate(message.rules):
            if rule.source not in sources:
                raise InvalidArgument.of(
                    f"preferences.rules[{index}].source", f"one of {', '.join(sorted(sources))}"
                )
            unknown = [channel for channel in rule.channels if channel not in CHANNELS]
            if unknown:
                raise InvalidArgument.of(
                    f"preferences.rules[{index}].channels", f"unknown: {', '.join(unknown)}"
                )
            rules[rule.source] = tuple(dict.fromkeys(rule.channels))
        changes["rules"] = rules
    if "quiet_hours" in paths:
        start, end = message.quiet_hours.start, message.quiet_hours.end
        if bool(start) != bool(end):
            raise InvalidArgument.of("preferences.quiet_hours", "both start and end, or neither")
        changes["quiet_start"] = parse_clock(start, "preferences.quiet_hours.start") if start else None
        changes["quiet_end"] = parse_clock(end, "preferences.quiet_hours.end") if end else None
    if "digest" in paths:
        changes["digest"] = message.digest
    if "digest_time" in paths and message.digest_time:
        changes["digest_time"] = parse_clock(message.digest_time, "preferences.digest_time")
    if "daily_caps" in paths:
        for channel, cap in message.daily_caps.items():
            if channel not in CHANNELS or channel == "in_app":
                raise InvalidArgument.of("preferences.daily_caps", f"unknown channel {channel!r}")
            if not 0 <= cap <= MAX_CAP:
                raise InvalidArgument.of(f"preferences.daily_caps.{channel}", f"from 0 to {MAX_CAP}")
        changes["daily_caps"] = {channel: cap for channel, cap in message.daily_caps.items() if cap}
    return changes


def preferences_proto(prefs: Preferences) -> pb.Preferences:
    return pb.Preferences(
        rules=[
            pb.ChannelRule(source=source, channels=list(channels))
            for source, channels in sorted(prefs.rules.items())
        ],
        quiet_hours=pb.QuietHours(
            start=prefs.quiet_start.strftime("%H:%M") if prefs.quiet_start else "",
            end=prefs.quiet_end.strftime("%H:%M") if prefs.quiet_end else "",
        ),
        time_zone=prefs.time_zone,
        digest=prefs.digest,
        digest_time=prefs.digest_time.strftime("%H:%M"),
        daily_caps=prefs.daily_caps,
        locale=prefs.locale,
    )


def notification_proto(
    row: storage.NotificationRow, deliveries: list[storage.DeliveryRow] | None = None
) -> pb.Notification:
    return pb.Notification(
        notification_id=row.notification_id,
        source=row.source,
        severity=row.severity,
        title=row.title,
        body=row.body,
        create_time=rfc3339(row.created_at),
        read_time=rfc3339(row.read_at),
        deliveries=[delivery_proto(delivery) for delivery in deliveries or ()],
    )


def delivery_proto(row: storage.DeliveryRow) -> pb.Delivery:
    return pb.Delivery(
        channel=row.channel,
        status=row.status,
        attempts=row.attempts,
        provider_message_id=row.provider_message_id or "",
        error=row.error,
        template=row.template,
        deferred_until=rfc3339(row.deferred_until),
        in_digest=row.in_digest,
        dead_lettered=row.dead_lettered_at is not None,
        update_time=rfc3339(row.updated_at),
    )


def contact_proto(row: storage.ContactPointRow) -> pb.ContactPoint:
    return pb.ContactPoint(
        contact_point_id=row.contact_point_id,
        channel=row.channel,
        address=row.address,
        verified=row.verified_at is not None,
        create_time=rfc3339(row.created_at),
    )


def dead_letter_proto(record: DeadLetterRecord) -> pb.DeadLetter:
    return pb.DeadLetter(
        sequence=record.sequence,
        delivery_id=record.delivery_id,
        channel=record.channel,
        reason=record.reason,
        dead_time=rfc3339(record.dead_at),
        attempts=record.attempts,
    )
