from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SmsOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SMS_OUTCOME_UNSPECIFIED: _ClassVar[SmsOutcome]
    SMS_OUTCOME_TRANSACTION: _ClassVar[SmsOutcome]
    SMS_OUTCOME_NOT_TRANSACTION: _ClassVar[SmsOutcome]
    SMS_OUTCOME_NEEDS_REVIEW: _ClassVar[SmsOutcome]

class Direction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DIRECTION_UNSPECIFIED: _ClassVar[Direction]
    DIRECTION_DEBIT: _ClassVar[Direction]
    DIRECTION_CREDIT: _ClassVar[Direction]

class Channel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHANNEL_UNSPECIFIED: _ClassVar[Channel]
    CHANNEL_UPI: _ClassVar[Channel]
    CHANNEL_CARD: _ClassVar[Channel]
    CHANNEL_ATM: _ClassVar[Channel]
    CHANNEL_NETBANKING: _ClassVar[Channel]
    CHANNEL_NEFT: _ClassVar[Channel]
    CHANNEL_IMPS: _ClassVar[Channel]
    CHANNEL_RTGS: _ClassVar[Channel]
    CHANNEL_WALLET: _ClassVar[Channel]
    CHANNEL_NACH: _ClassVar[Channel]

class IngestAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INGEST_ACTION_UNSPECIFIED: _ClassVar[IngestAction]
    INGEST_ACTION_BOOKED: _ClassVar[IngestAction]
    INGEST_ACTION_DUPLICATE: _ClassVar[IngestAction]
    INGEST_ACTION_QUEUED_FOR_REVIEW: _ClassVar[IngestAction]
    INGEST_ACTION_REFUND_RECORDED: _ClassVar[IngestAction]
    INGEST_ACTION_CREDIT_RECORDED: _ClassVar[IngestAction]
    INGEST_ACTION_IGNORED: _ClassVar[IngestAction]
    INGEST_ACTION_SENDER_NOT_ALLOWED: _ClassVar[IngestAction]
SMS_OUTCOME_UNSPECIFIED: SmsOutcome
SMS_OUTCOME_TRANSACTION: SmsOutcome
SMS_OUTCOME_NOT_TRANSACTION: SmsOutcome
SMS_OUTCOME_NEEDS_REVIEW: SmsOutcome
DIRECTION_UNSPECIFIED: Direction
DIRECTION_DEBIT: Direction
DIRECTION_CREDIT: Direction
CHANNEL_UNSPECIFIED: Channel
CHANNEL_UPI: Channel
CHANNEL_CARD: Channel
CHANNEL_ATM: Channel
CHANNEL_NETBANKING: Channel
CHANNEL_NEFT: Channel
CHANNEL_IMPS: Channel
CHANNEL_RTGS: Channel
CHANNEL_WALLET: Channel
CHANNEL_NACH: Channel
INGEST_ACTION_UNSPECIFIED: IngestAction
INGEST_ACTION_BOOKED: IngestAction
INGEST_ACTION_DUPLICATE: IngestAction
INGEST_ACTION_QUEUED_FOR_REVIEW: IngestAction
INGEST_ACTION_REFUND_RECORDED: IngestAction
INGEST_ACTION_CREDIT_RECORDED: IngestAction
INGEST_ACTION_IGNORED: IngestAction
INGEST_ACTION_SENDER_NOT_ALLOWED: IngestAction

class SmsMessage(_message.Message):
    __slots__ = ("sender", "body", "received_time")
    SENDER_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_TIME_FIELD_NUMBER: _ClassVar[int]
    sender: str
    body: str
    received_time: str
    def __init__(self, sender: _Optional[str] = ..., body: _Optional[str] = ..., received_time: _Optional[str] = ...) -> None: ...

class ParsedSms(_message.Message):
    __slots__ = ("outcome", "direction", "kind", "amount", "currency", "foreign_amount", "foreign_currency", "counterparty", "account_mask", "channel", "balance", "available_limit", "reference", "txn_date", "confidence", "parser", "suggested_category_id", "reason", "bank")
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    FOREIGN_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    FOREIGN_CURRENCY_FIELD_NUMBER: _ClassVar[int]
    COUNTERPARTY_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_MASK_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    TXN_DATE_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    PARSER_FIELD_NUMBER: _ClassVar[int]
    SUGGESTED_CATEGORY_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    BANK_FIELD_NUMBER: _ClassVar[int]
    outcome: SmsOutcome
    direction: Direction
    kind: str
    amount: str
    currency: str
    foreign_amount: str
    foreign_currency: str
    counterparty: str
    account_mask: str
    channel: Channel
    balance: str
    available_limit: str
    reference: str
    txn_date: str
    confidence: str
    parser: str
    suggested_category_id: str
    reason: str
    bank: str
    def __init__(self, outcome: _Optional[_Union[SmsOutcome, str]] = ..., direction: _Optional[_Union[Direction, str]] = ..., kind: _Optional[str] = ..., amount: _Optional[str] = ..., currency: _Optional[str] = ..., foreign_amount: _Optional[str] = ..., foreign_currency: _Optional[str] = ..., counterparty: _Optional[str] = ..., account_mask: _Optional[str] = ..., channel: _Optional[_Union[Channel, str]] = ..., balance: _Optional[str] = ..., available_limit: _Optional[str] = ..., reference: _Optional[str] = ..., txn_date: _Optional[str] = ..., confidence: _Optional[str] = ..., parser: _Optional[str] = ..., suggested_category_id: _Optional[str] = ..., reason: _Optional[str] = ..., bank: _Optional[str] = ...) -> None: ...

class ParseSmsRequest(_message.Message):
    __slots__ = ("messages",)
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[SmsMessage]
    def __init__(self, messages: _Optional[_Iterable[_Union[SmsMessage, _Mapping]]] = ...) -> None: ...

class ParseSmsResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ParsedSms]
    def __init__(self, results: _Optional[_Iterable[_Union[ParsedSms, _Mapping]]] = ...) -> None: ...

class IngestSmsRequest(_message.Message):
    __slots__ = ("messages",)
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[SmsMessage]
    def __init__(self, messages: _Optional[_Iterable[_Union[SmsMessage, _Mapping]]] = ...) -> None: ...

class IngestResult(_message.Message):
    __slots__ = ("parsed", "action", "expense_id", "review_id", "linked_expense_id")
    PARSED_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    EXPENSE_ID_FIELD_NUMBER: _ClassVar[int]
    REVIEW_ID_FIELD_NUMBER: _ClassVar[int]
    LINKED_EXPENSE_ID_FIELD_NUMBER: _ClassVar[int]
    parsed: ParsedSms
    action: IngestAction
    expense_id: str
    review_id: str
    linked_expense_id: str
    def __init__(self, parsed: _Optional[_Union[ParsedSms, _Mapping]] = ..., action: _Optional[_Union[IngestAction, str]] = ..., expense_id: _Optional[str] = ..., review_id: _Optional[str] = ..., linked_expense_id: _Optional[str] = ...) -> None: ...

class IngestSmsResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[IngestResult]
    def __init__(self, results: _Optional[_Iterable[_Union[IngestResult, _Mapping]]] = ...) -> None: ...

class SmsReview(_message.Message):
    __slots__ = ("review_id", "message", "parsed", "state", "expense_id", "create_time")
    REVIEW_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PARSED_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    EXPENSE_ID_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    review_id: str
    message: SmsMessage
    parsed: ParsedSms
    state: str
    expense_id: str
    create_time: str
    def __init__(self, review_id: _Optional[str] = ..., message: _Optional[_Union[SmsMessage, _Mapping]] = ..., parsed: _Optional[_Union[ParsedSms, _Mapping]] = ..., state: _Optional[str] = ..., expense_id: _Optional[str] = ..., create_time: _Optional[str] = ...) -> None: ...

class ListSmsReviewsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSmsReviewsResponse(_message.Message):
    __slots__ = ("reviews", "next_page_token")
    REVIEWS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    reviews: _containers.RepeatedCompositeFieldContainer[SmsReview]
    next_page_token: str
    def __init__(self, reviews: _Optional[_Iterable[_Union[SmsReview, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class SmsCorrections(_message.Message):
    __slots__ = ("amount", "currency", "counterparty", "category_id", "txn_date")
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    COUNTERPARTY_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_ID_FIELD_NUMBER: _ClassVar[int]
    TXN_DATE_FIELD_NUMBER: _ClassVar[int]
    amount: str
    currency: str
    counterparty: str
    category_id: str
    txn_date: str
    def __init__(self, amount: _Optional[str] = ..., currency: _Optional[str] = ..., counterparty: _Optional[str] = ..., category_id: _Optional[str] = ..., txn_date: _Optional[str] = ...) -> None: ...

class AcceptSmsReviewRequest(_message.Message):
    __slots__ = ("review_id", "corrections")
    REVIEW_ID_FIELD_NUMBER: _ClassVar[int]
    CORRECTIONS_FIELD_NUMBER: _ClassVar[int]
    review_id: str
    corrections: SmsCorrections
    def __init__(self, review_id: _Optional[str] = ..., corrections: _Optional[_Union[SmsCorrections, _Mapping]] = ...) -> None: ...

class RejectSmsReviewRequest(_message.Message):
    __slots__ = ("review_id",)
    REVIEW_ID_FIELD_NUMBER: _ClassVar[int]
    review_id: str
    def __init__(self, review_id: _Optional[str] = ...) -> None: ...

class GetInsightsRequest(_message.Message):
    __slots__ = ("period",)
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    period: str
    def __init__(self, period: _Optional[str] = ...) -> None: ...

class InsightFact(_message.Message):
    __slots__ = ("name", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: str
    def __init__(self, name: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class Insight(_message.Message):
    __slots__ = ("type", "currency", "category_id", "merchant", "text", "facts", "low", "high")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_ID_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    FACTS_FIELD_NUMBER: _ClassVar[int]
    LOW_FIELD_NUMBER: _ClassVar[int]
    HIGH_FIELD_NUMBER: _ClassVar[int]
    type: str
    currency: str
    category_id: str
    merchant: str
    text: str
    facts: _containers.RepeatedCompositeFieldContainer[InsightFact]
    low: str
    high: str
    def __init__(self, type: _Optional[str] = ..., currency: _Optional[str] = ..., category_id: _Optional[str] = ..., merchant: _Optional[str] = ..., text: _Optional[str] = ..., facts: _Optional[_Iterable[_Union[InsightFact, _Mapping]]] = ..., low: _Optional[str] = ..., high: _Optional[str] = ...) -> None: ...

class GetInsightsResponse(_message.Message):
    __slots__ = ("period", "period_start", "period_end", "insights")
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    PERIOD_START_FIELD_NUMBER: _ClassVar[int]
    PERIOD_END_FIELD_NUMBER: _ClassVar[int]
    INSIGHTS_FIELD_NUMBER: _ClassVar[int]
    period: str
    period_start: str
    period_end: str
    insights: _containers.RepeatedCompositeFieldContainer[Insight]
    def __init__(self, period: _Optional[str] = ..., period_start: _Optional[str] = ..., period_end: _Optional[str] = ..., insights: _Optional[_Iterable[_Union[Insight, _Mapping]]] = ...) -> None: ...
