from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.api import httpbody_pb2 as _httpbody_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class NotificationSettings(_message.Message):
    __slots__ = ("channels", "quiet_hours_start", "quiet_hours_end")
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    QUIET_HOURS_START_FIELD_NUMBER: _ClassVar[int]
    QUIET_HOURS_END_FIELD_NUMBER: _ClassVar[int]
    channels: _containers.RepeatedScalarFieldContainer[str]
    quiet_hours_start: str
    quiet_hours_end: str
    def __init__(self, channels: _Optional[_Iterable[str]] = ..., quiet_hours_start: _Optional[str] = ..., quiet_hours_end: _Optional[str] = ...) -> None: ...

class Profile(_message.Message):
    __slots__ = ("user_id", "email", "display_name", "default_currency", "time_zone", "locale", "first_day_of_week", "notifications", "sms_auto_import", "create_time", "update_time", "sms_allowed_senders")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_CURRENCY_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    LOCALE_FIELD_NUMBER: _ClassVar[int]
    FIRST_DAY_OF_WEEK_FIELD_NUMBER: _ClassVar[int]
    NOTIFICATIONS_FIELD_NUMBER: _ClassVar[int]
    SMS_AUTO_IMPORT_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    SMS_ALLOWED_SENDERS_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    email: str
    display_name: str
    default_currency: str
    time_zone: str
    locale: str
    first_day_of_week: str
    notifications: NotificationSettings
    sms_auto_import: bool
    create_time: str
    update_time: str
    sms_allowed_senders: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, user_id: _Optional[str] = ..., email: _Optional[str] = ..., display_name: _Optional[str] = ..., default_currency: _Optional[str] = ..., time_zone: _Optional[str] = ..., locale: _Optional[str] = ..., first_day_of_week: _Optional[str] = ..., notifications: _Optional[_Union[NotificationSettings, _Mapping]] = ..., sms_auto_import: _Optional[bool] = ..., create_time: _Optional[str] = ..., update_time: _Optional[str] = ..., sms_allowed_senders: _Optional[_Iterable[str]] = ...) -> None: ...

class GetProfileRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class UpdateProfileRequest(_message.Message):
    __slots__ = ("profile", "update_mask")
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    profile: Profile
    update_mask: str
    def __init__(self, profile: _Optional[_Union[Profile, _Mapping]] = ..., update_mask: _Optional[str] = ...) -> None: ...

class ExportMyDataRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
