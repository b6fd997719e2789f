import datetime

from google.protobuf import any_pb2 as _any_pb2
from google.protobuf import descriptor_pb2 as _descriptor_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor
EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
event_type: _descriptor.FieldDescriptor

class EventType(_message.Message):
    __slots__ = ("name", "producer", "consumers")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PRODUCER_FIELD_NUMBER: _ClassVar[int]
    CONSUMERS_FIELD_NUMBER: _ClassVar[int]
    name: str
    producer: str
    consumers: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., producer: _Optional[str] = ..., consumers: _Optional[_Iterable[str]] = ...) -> None: ...

class EventEnvelope(_message.Message):
    __slots__ = ("event_id", "type", "occurred_time", "user_id", "payload", "producer")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_TIME_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    PRODUCER_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    type: str
    occurred_time: _timestamp_pb2.Timestamp
    user_id: str
    payload: _any_pb2.Any
    producer: str
    def __init__(self, event_id: _Optional[str] = ..., type: _Optional[str] = ..., occurred_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., user_id: _Optional[str] = ..., payload: _Optional[_Union[_any_pb2.Any, _Mapping]] = ..., producer: _Optional[str] = ...) -> None: ...

class UserRegistered(_message.Message):
    __slots__ = ("user_id", "email", "display_name")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    email: str
    display_name: str
    def __init__(self, user_id: _Optional[str] = ..., email: _Optional[str] = ..., display_name: _Optional[str] = ...) -> None: ...

class PasswordResetRequested(_message.Message):
    __slots__ = ("user_id", "email", "display_name", "token", "reset_url", "expire_time", "locale")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    RESET_URL_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    LOCALE_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    email: str
    display_name: str
    token: str
    reset_url: str
    expire_time: str
    locale: str
    def __init__(self, user_id: _Optional[str] = ..., email: _Optional[str] = ..., display_name: _Optional[str] = ..., token: _Optional[str] = ..., reset_url: _Optional[str] = ..., expire_time: _Optional[str] = ..., locale: _Optional[str] = ...) -> None: ...

class EmailVerificationRequested(_message.Message):
    __slots__ = ("user_id", "email", "display_name", "token", "verify_url", "expire_time", "locale")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    VERIFY_URL_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    LOCALE_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    email: str
    display_name: str
    token: str
    verify_url: str
    expire_time: str
    locale: str
    def __init__(self, user_id: _Optional[str] = ..., email: _Optional[str] = ..., display_name: _Optional[str] = ..., token: _Optional[str] = ..., verify_url: _Optional[str] = ..., expire_time: _Optional[str] = ..., locale: _Optional[str] = ...) -> None: ...

class SecurityEvent(_message.Message):
    __slots__ = ("user_id", "email", "kind", "occur_time", "user_agent", "ip_address", "cause", "revoked_sessions")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[SecurityEvent.Kind]
        KIND_NEW_DEVICE_SIGN_IN: _ClassVar[SecurityEvent.Kind]
        KIND_PASSWORD_CHANGED: _ClassVar[SecurityEvent.Kind]
        KIND_ALL_SESSIONS_REVOKED: _ClassVar[SecurityEvent.Kind]
    KIND_UNSPECIFIED: SecurityEvent.Kind
    KIND_NEW_DEVICE_SIGN_IN: SecurityEvent.Kind
    KIND_PASSWORD_CHANGED: SecurityEvent.Kind
    KIND_ALL_SESSIONS_REVOKED: SecurityEvent.Kind
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    OCCUR_TIME_FIELD_NUMBER: _ClassVar[int]
    USER_AGENT_FIELD_NUMBER: _ClassVar[int]
    IP_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    CAUSE_FIELD_NUMBER: _ClassVar[int]
    REVOKED_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    email: str
    kind: SecurityEvent.Kind
    occur_time: str
    user_agent: str
    ip_address: str
    cause: str
    revoked_sessions: int
    def __init__(self, user_id: _Optional[str] = ..., email: _Optional[str] = ..., kind: _Optional[_Union[SecurityEvent.Kind, str]] = ..., occur_time: _Optional[str] = ..., user_agent: _Optional[str] = ..., ip_address: _Optional[str] = ..., cause: _Optional[str] = ..., revoked_sessions: _Optional[int] = ...) -> None: ...

class UserDeleted(_message.Message):
    __slots__ = ("user_id", "delete_time")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    DELETE_TIME_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    delete_time: str
    def __init__(self, user_id: _Optional[str] = ..., delete_time: _Optional[str] = ...) -> None: ...

class MonthlyCurrencySummary(_message.Message):
    __slots__ = ("currency", "total", "previous_total", "change_percent", "top_categories")
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    CHANGE_PERCENT_FIELD_NUMBER: _ClassVar[int]
    TOP_CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    currency: str
    total: str
    previous_total: str
    change_percent: str
    top_categories: _containers.RepeatedCompositeFieldContainer[MonthlyCategoryAmount]
    def __init__(self, currency: _Optional[str] = ..., total: _Optional[str] = ..., previous_total: _Optional[str] = ..., change_percent: _Optional[str] = ..., top_categories: _Optional[_Iterable[_Union[MonthlyCategoryAmount, _Mapping]]] = ...) -> None: ...

class MonthlyCategoryAmount(_message.Message):
    __slots__ = ("category_id", "name", "amount")
    CATEGORY_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    category_id: str
    name: str
    amount: str
    def __init__(self, category_id: _Optional[str] = ..., name: _Optional[str] = ..., amount: _Optional[str] = ...) -> None: ...

class MonthlyReportReady(_message.Message):
    __slots__ = ("user_id", "month", "time_zone", "locale", "currencies")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    MONTH_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    LOCALE_FIELD_NUMBER: _ClassVar[int]
    CURRENCIES_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    month: str
    time_zone: str
    locale: str
    currencies: _containers.RepeatedCompositeFieldContainer[MonthlyCurrencySummary]
    def __init__(self, user_id: _Optional[str] = ..., month: _Optional[str] = ..., time_zone: _Optional[str] = ..., locale: _Optional[str] = ..., currencies: _Optional[_Iterable[_Union[MonthlyCurrencySummary, _Mapping]]] = ...) -> None: ...

class ExpenseSnapshot(_message.Message):
    __slots__ = ("expense_id", "amount_minor", "currency", "spent_on", "category_id", "merchant", "source", "version")
    EXPENSE_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_MINOR_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    SPENT_ON_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_ID_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    expense_id: str
    amount_minor: int
    currency: str
    spent_on: str
    category_id: str
    merchant: str
    source: str
    version: int
    def __init__(self, expense_id: _Optional[str] = ..., amount_minor: _Optional[int] = ..., currency: _Optional[str] = ..., spent_on: _Optional[str] = ..., category_id: _Optional[str] = ..., merchant: _Optional[str] = ..., source: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class ExpenseCreated(_message.Message):
    __slots__ = ("expense",)
    EXPENSE_FIELD_NUMBER: _ClassVar[int]
    expense: ExpenseSnapshot
    def __init__(self, expense: _Optional[_Union[ExpenseSnapshot, _Mapping]] = ...) -> None: ...

class ExpenseUpdated(_message.Message):
    __slots__ = ("before", "after")
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    before: ExpenseSnapshot
    after: ExpenseSnapshot
    def __init__(self, before: _Optional[_Union[ExpenseSnapshot, _Mapping]] = ..., after: _Optional[_Union[ExpenseSnapshot, _Mapping]] = ...) -> None: ...

class ExpenseDeleted(_message.Message):
    __slots__ = ("before",)
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    before: ExpenseSnapshot
    def __init__(self, before: _Optional[_Union[ExpenseSnapshot, _Mapping]] = ...) -> None: ...

class CategoryChanged(_message.Message):
    __slots__ = ("category_id", "name", "parent_id", "deleted", "reassigned_to")
    CATEGORY_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PARENT_ID_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    REASSIGNED_TO_FIELD_NUMBER: _ClassVar[int]
    category_id: str
    name: str
    parent_id: str
    deleted: bool
    reassigned_to: str
    def __init__(self, category_id: _Optional[str] = ..., name: _Optional[str] = ..., parent_id: _Optional[str] = ..., deleted: _Optional[bool] = ..., reassigned_to: _Optional[str] = ...) -> None: ...

class ProfileUpdated(_message.Message):
    __slots__ = ("user_id", "default_currency", "time_zone", "first_day_of_week", "locale", "sms_auto_import", "sms_allowed_senders", "version")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_CURRENCY_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    FIRST_DAY_OF_WEEK_FIELD_NUMBER: _ClassVar[int]
    LOCALE_FIELD_NUMBER: _ClassVar[int]
    SMS_AUTO_IMPORT_FIELD_NUMBER: _ClassVar[int]
    SMS_ALLOWED_SENDERS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    default_currency: str
    time_zone: str
    first_day_of_week: str
    locale: str
    sms_auto_import: bool
    sms_allowed_senders: _containers.RepeatedScalarFieldContainer[str]
    version: int
    def __init__(self, user_id: _Optional[str] = ..., default_currency: _Optional[str] = ..., time_zone: _Optional[str] = ..., first_day_of_week: _Optional[str] = ..., locale: _Optional[str] = ..., sms_auto_import: _Optional[bool] = ..., sms_allowed_senders: _Optional[_Iterable[str]] = ..., version: _Optional[int] = ...) -> None: ...

class AlertRaised(_message.Message):
    __slots__ = ("alert_id", "type", "severity", "title", "details", "dedupe_key", "create_time")
    class DetailsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ALERT_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    DEDUPE_KEY_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    alert_id: str
    type: str
    severity: str
    title: str
    details: _containers.ScalarMap[str, str]
    dedupe_key: str
    create_time: str
    def __init__(self, alert_id: _Optional[str] = ..., type: _Optional[str] = ..., severity: _Optional[str] = ..., title: _Optional[str] = ..., details: _Optional[_Mapping[str, str]] = ..., dedupe_key: _Optional[str] = ..., create_time: _Optional[str] = ...) -> None: ...

class DigestInsight(_message.Message):
    __slots__ = ("type", "currency", "category_id", "merchant", "facts")
    class FactsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TYPE_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_ID_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_FIELD_NUMBER: _ClassVar[int]
    FACTS_FIELD_NUMBER: _ClassVar[int]
    type: str
    currency: str
    category_id: str
    merchant: str
    facts: _containers.ScalarMap[str, str]
    def __init__(self, type: _Optional[str] = ..., currency: _Optional[str] = ..., category_id: _Optional[str] = ..., merchant: _Optional[str] = ..., facts: _Optional[_Mapping[str, str]] = ...) -> None: ...

class InsightDigest(_message.Message):
    __slots__ = ("week_start", "period_start", "period_end", "insights")
    WEEK_START_FIELD_NUMBER: _ClassVar[int]
    PERIOD_START_FIELD_NUMBER: _ClassVar[int]
    PERIOD_END_FIELD_NUMBER: _ClassVar[int]
    INSIGHTS_FIELD_NUMBER: _ClassVar[int]
    week_start: str
    period_start: str
    period_end: str
    insights: _containers.RepeatedCompositeFieldContainer[DigestInsight]
    def __init__(self, week_start: _Optional[str] = ..., period_start: _Optional[str] = ..., period_end: _Optional[str] = ..., insights: _Optional[_Iterable[_Union[DigestInsight, _Mapping]]] = ...) -> None: ...

class SessionsEnded(_message.Message):
    __slots__ = ("session_ids",)
    SESSION_IDS_FIELD_NUMBER: _ClassVar[int]
    session_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, session_ids: _Optional[_Iterable[str]] = ...) -> None: ...
