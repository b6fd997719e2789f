from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.api import httpbody_pb2 as _httpbody_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Notification(_message.Message):
    __slots__ = ("notification_id", "source", "severity", "title", "body", "create_time", "read_time", "deliveries")
    NOTIFICATION_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    READ_TIME_FIELD_NUMBER: _ClassVar[int]
    DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    notification_id: str
    source: str
    severity: str
    title: str
    body: str
    create_time: str
    read_time: str
    deliveries: _containers.RepeatedCompositeFieldContainer[Delivery]
    def __init__(self, notification_id: _Optional[str] = ..., source: _Optional[str] = ..., severity: _Optional[str] = ..., title: _Optional[str] = ..., body: _Optional[str] = ..., create_time: _Optional[str] = ..., read_time: _Optional[str] = ..., deliveries: _Optional[_Iterable[_Union[Delivery, _Mapping]]] = ...) -> None: ...

class Delivery(_message.Message):
    __slots__ = ("channel", "status", "attempts", "provider_message_id", "error", "template", "deferred_until", "in_digest", "dead_lettered", "update_time")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    DEFERRED_UNTIL_FIELD_NUMBER: _ClassVar[int]
    IN_DIGEST_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTERED_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    channel: str
    status: str
    attempts: int
    provider_message_id: str
    error: str
    template: str
    deferred_until: str
    in_digest: bool
    dead_lettered: bool
    update_time: str
    def __init__(self, channel: _Optional[str] = ..., status: _Optional[str] = ..., attempts: _Optional[int] = ..., provider_message_id: _Optional[str] = ..., error: _Optional[str] = ..., template: _Optional[str] = ..., deferred_until: _Optional[str] = ..., in_digest: _Optional[bool] = ..., dead_lettered: _Optional[bool] = ..., update_time: _Optional[str] = ...) -> None: ...

class ListNotificationsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "unread_only")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    UNREAD_ONLY_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    unread_only: bool
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., unread_only: _Optional[bool] = ...) -> None: ...

class ListNotificationsResponse(_message.Message):
    __slots__ = ("notifications", "next_page_token", "unread_count")
    NOTIFICATIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    UNREAD_COUNT_FIELD_NUMBER: _ClassVar[int]
    notifications: _containers.RepeatedCompositeFieldContainer[Notification]
    next_page_token: str
    unread_count: int
    def __init__(self, notifications: _Optional[_Iterable[_Union[Notification, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., unread_count: _Optional[int] = ...) -> None: ...

class GetNotificationRequest(_message.Message):
    __slots__ = ("notification_id",)
    NOTIFICATION_ID_FIELD_NUMBER: _ClassVar[int]
    notification_id: str
    def __init__(self, notification_id: _Optional[str] = ...) -> None: ...

class MarkReadRequest(_message.Message):
    __slots__ = ("notification_id",)
    NOTIFICATION_ID_FIELD_NUMBER: _ClassVar[int]
    notification_id: str
    def __init__(self, notification_id: _Optional[str] = ...) -> None: ...

class MarkAllReadRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class MarkAllReadResponse(_message.Message):
    __slots__ = ("marked_count",)
    MARKED_COUNT_FIELD_NUMBER: _ClassVar[int]
    marked_count: int
    def __init__(self, marked_count: _Optional[int] = ...) -> None: ...

class GetPreferencesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ChannelRule(_message.Message):
    __slots__ = ("source", "channels")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    source: str
    channels: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, source: _Optional[str] = ..., channels: _Optional[_Iterable[str]] = ...) -> None: ...

class QuietHours(_message.Message):
    __slots__ = ("start", "end")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    start: str
    end: str
    def __init__(self, start: _Optional[str] = ..., end: _Optional[str] = ...) -> None: ...

class Preferences(_message.Message):
    __slots__ = ("rules", "quiet_hours", "time_zone", "digest", "digest_time", "daily_caps", "locale")
    class DailyCapsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    RULES_FIELD_NUMBER: _ClassVar[int]
    QUIET_HOURS_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    DIGEST_TIME_FIELD_NUMBER: _ClassVar[int]
    DAILY_CAPS_FIELD_NUMBER: _ClassVar[int]
    LOCALE_FIELD_NUMBER: _ClassVar[int]
    rules: _containers.RepeatedCompositeFieldContainer[ChannelRule]
    quiet_hours: QuietHours
    time_zone: str
    digest: bool
    digest_time: str
    daily_caps: _containers.ScalarMap[str, int]
    locale: str
    def __init__(self, rules: _Optional[_Iterable[_Union[ChannelRule, _Mapping]]] = ..., quiet_hours: _Optional[_Union[QuietHours, _Mapping]] = ..., time_zone: _Optional[str] = ..., digest: _Optional[bool] = ..., digest_time: _Optional[str] = ..., daily_caps: _Optional[_Mapping[str, int]] = ..., locale: _Optional[str] = ...) -> None: ...

class UpdatePreferencesRequest(_message.Message):
    __slots__ = ("preferences", "update_mask")
    PREFERENCES_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    preferences: Preferences
    update_mask: str
    def __init__(self, preferences: _Optional[_Union[Preferences, _Mapping]] = ..., update_mask: _Optional[str] = ...) -> None: ...

class ContactPoint(_message.Message):
    __slots__ = ("contact_point_id", "channel", "address", "verified", "create_time")
    CONTACT_POINT_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    VERIFIED_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    contact_point_id: str
    channel: str
    address: str
    verified: bool
    create_time: str
    def __init__(self, contact_point_id: _Optional[str] = ..., channel: _Optional[str] = ..., address: _Optional[str] = ..., verified: _Optional[bool] = ..., create_time: _Optional[str] = ...) -> None: ...

class ListContactPointsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListContactPointsResponse(_message.Message):
    __slots__ = ("contact_points",)
    CONTACT_POINTS_FIELD_NUMBER: _ClassVar[int]
    contact_points: _containers.RepeatedCompositeFieldContainer[ContactPoint]
    def __init__(self, contact_points: _Optional[_Iterable[_Union[ContactPoint, _Mapping]]] = ...) -> None: ...

class CreateContactPointRequest(_message.Message):
    __slots__ = ("channel", "address")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    channel: str
    address: str
    def __init__(self, channel: _Optional[str] = ..., address: _Optional[str] = ...) -> None: ...

class CreateContactPointResponse(_message.Message):
    __slots__ = ("contact_point", "webhook_secret")
    CONTACT_POINT_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_SECRET_FIELD_NUMBER: _ClassVar[int]
    contact_point: ContactPoint
    webhook_secret: str
    def __init__(self, contact_point: _Optional[_Union[ContactPoint, _Mapping]] = ..., webhook_secret: _Optional[str] = ...) -> None: ...

class VerifyContactPointRequest(_message.Message):
    __slots__ = ("contact_point_id", "code")
    CONTACT_POINT_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    contact_point_id: str
    code: str
    def __init__(self, contact_point_id: _Optional[str] = ..., code: _Optional[str] = ...) -> None: ...

class DeleteContactPointRequest(_message.Message):
    __slots__ = ("contact_point_id",)
    CONTACT_POINT_ID_FIELD_NUMBER: _ClassVar[int]
    contact_point_id: str
    def __init__(self, contact_point_id: _Optional[str] = ...) -> None: ...

class DeleteContactPointResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TwilioStatusRequest(_message.Message):
    __slots__ = ("body", "delivery_id")
    BODY_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_ID_FIELD_NUMBER: _ClassVar[int]
    body: _httpbody_pb2.HttpBody
    delivery_id: str
    def __init__(self, body: _Optional[_Union[_httpbody_pb2.HttpBody, _Mapping]] = ..., delivery_id: _Optional[str] = ...) -> None: ...

class MetaWebhookVerifyRequest(_message.Message):
    __slots__ = ("hub",)
    HUB_FIELD_NUMBER: _ClassVar[int]
    hub: Hub
    def __init__(self, hub: _Optional[_Union[Hub, _Mapping]] = ...) -> None: ...

class Hub(_message.Message):
    __slots__ = ("mode", "verify_token", "challenge")
    MODE_FIELD_NUMBER: _ClassVar[int]
    VERIFY_TOKEN_FIELD_NUMBER: _ClassVar[int]
    CHALLENGE_FIELD_NUMBER: _ClassVar[int]
    mode: str
    verify_token: str
    challenge: str
    def __init__(self, mode: _Optional[str] = ..., verify_token: _Optional[str] = ..., challenge: _Optional[str] = ...) -> None: ...

class MetaWebhookRequest(_message.Message):
    __slots__ = ("body",)
    BODY_FIELD_NUMBER: _ClassVar[int]
    body: _httpbody_pb2.HttpBody
    def __init__(self, body: _Optional[_Union[_httpbody_pb2.HttpBody, _Mapping]] = ...) -> None: ...

class ProviderCallbackResponse(_message.Message):
    __slots__ = ("updated",)
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    updated: int
    def __init__(self, updated: _Optional[int] = ...) -> None: ...

class DeadLetter(_message.Message):
    __slots__ = ("sequence", "delivery_id", "channel", "reason", "dead_time", "attempts")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DEAD_TIME_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    delivery_id: str
    channel: str
    reason: str
    dead_time: str
    attempts: int
    def __init__(self, sequence: _Optional[int] = ..., delivery_id: _Optional[str] = ..., channel: _Optional[str] = ..., reason: _Optional[str] = ..., dead_time: _Optional[str] = ..., attempts: _Optional[int] = ...) -> None: ...

class ListDeadLettersRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListDeadLettersResponse(_message.Message):
    __slots__ = ("dead_letters", "next_page_token", "total")
    DEAD_LETTERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    dead_letters: _containers.RepeatedCompositeFieldContainer[DeadLetter]
    next_page_token: str
    total: int
    def __init__(self, dead_letters: _Optional[_Iterable[_Union[DeadLetter, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total: _Optional[int] = ...) -> None: ...

class GetDeadLetterRequest(_message.Message):
    __slots__ = ("sequence",)
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    def __init__(self, sequence: _Optional[int] = ...) -> None: ...

class ReplayDeadLetterRequest(_message.Message):
    __slots__ = ("sequence",)
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    def __init__(self, sequence: _Optional[int] = ...) -> None: ...

class ReplayDeadLetterResponse(_message.Message):
    __slots__ = ("delivery_id",)
    DELIVERY_ID_FIELD_NUMBER: _ClassVar[int]
    delivery_id: str
    def __init__(self, delivery_id: _Optional[str] = ...) -> None: ...
