from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Money(_message.Message):
    __slots__ = ("amount", "currency")
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    amount: str
    currency: str
    def __init__(self, amount: _Optional[str] = ..., currency: _Optional[str] = ...) -> None: ...

class Budget(_message.Message):
    __slots__ = ("budget_id", "category_id", "period", "amount", "currency", "rollover", "thresholds", "start_date", "etag", "create_time", "update_time", "status")
    BUDGET_ID_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_ID_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    ROLLOVER_FIELD_NUMBER: _ClassVar[int]
    THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    START_DATE_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    budget_id: str
    category_id: str
    period: str
    amount: str
    currency: str
    rollover: bool
    thresholds: _containers.RepeatedScalarFieldContainer[int]
    start_date: str
    etag: str
    create_time: str
    update_time: str
    status: BudgetStatus
    def __init__(self, budget_id: _Optional[str] = ..., category_id: _Optional[str] = ..., period: _Optional[str] = ..., amount: _Optional[str] = ..., currency: _Optional[str] = ..., rollover: _Optional[bool] = ..., thresholds: _Optional[_Iterable[int]] = ..., start_date: _Optional[str] = ..., etag: _Optional[str] = ..., create_time: _Optional[str] = ..., update_time: _Optional[str] = ..., status: _Optional[_Union[BudgetStatus, _Mapping]] = ...) -> None: ...

class BudgetStatus(_message.Message):
    __slots__ = ("period_start", "period_end", "budgeted", "carried", "spent", "remaining", "percent", "projected", "on_track", "other_currencies")
    PERIOD_START_FIELD_NUMBER: _ClassVar[int]
    PERIOD_END_FIELD_NUMBER: _ClassVar[int]
    BUDGETED_FIELD_NUMBER: _ClassVar[int]
    CARRIED_FIELD_NUMBER: _ClassVar[int]
    SPENT_FIELD_NUMBER: _ClassVar[int]
    REMAINING_FIELD_NUMBER: _ClassVar[int]
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    PROJECTED_FIELD_NUMBER: _ClassVar[int]
    ON_TRACK_FIELD_NUMBER: _ClassVar[int]
    OTHER_CURRENCIES_FIELD_NUMBER: _ClassVar[int]
    period_start: str
    period_end: str
    budgeted: str
    carried: str
    spent: str
    remaining: str
    percent: str
    projected: str
    on_track: bool
    other_currencies: _containers.RepeatedCompositeFieldContainer[Money]
    def __init__(self, period_start: _Optional[str] = ..., period_end: _Optional[str] = ..., budgeted: _Optional[str] = ..., carried: _Optional[str] = ..., spent: _Optional[str] = ..., remaining: _Optional[str] = ..., percent: _Optional[str] = ..., projected: _Optional[str] = ..., on_track: _Optional[bool] = ..., other_currencies: _Optional[_Iterable[_Union[Money, _Mapping]]] = ...) -> None: ...

class CreateBudgetRequest(_message.Message):
    __slots__ = ("request_id", "category_id", "period", "amount", "currency", "rollover", "thresholds", "start_date")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_ID_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    ROLLOVER_FIELD_NUMBER: _ClassVar[int]
    THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    START_DATE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    category_id: str
    period: str
    amount: str
    currency: str
    rollover: bool
    thresholds: _containers.RepeatedScalarFieldContainer[int]
    start_date: str
    def __init__(self, request_id: _Optional[str] = ..., category_id: _Optional[str] = ..., period: _Optional[str] = ..., amount: _Optional[str] = ..., currency: _Optional[str] = ..., rollover: _Optional[bool] = ..., thresholds: _Optional[_Iterable[int]] = ..., start_date: _Optional[str] = ...) -> None: ...

class GetBudgetRequest(_message.Message):
    __slots__ = ("budget_id",)
    BUDGET_ID_FIELD_NUMBER: _ClassVar[int]
    budget_id: str
    def __init__(self, budget_id: _Optional[str] = ...) -> None: ...

class ListBudgetsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListBudgetsResponse(_message.Message):
    __slots__ = ("budgets", "next_page_token")
    BUDGETS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    budgets: _containers.RepeatedCompositeFieldContainer[Budget]
    next_page_token: str
    def __init__(self, budgets: _Optional[_Iterable[_Union[Budget, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateBudgetRequest(_message.Message):
    __slots__ = ("budget_id", "budget", "update_mask", "etag")
    BUDGET_ID_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    budget_id: str
    budget: Budget
    update_mask: str
    etag: str
    def __init__(self, budget_id: _Optional[str] = ..., budget: _Optional[_Union[Budget, _Mapping]] = ..., update_mask: _Optional[str] = ..., etag: _Optional[str] = ...) -> None: ...

class DeleteBudgetRequest(_message.Message):
    __slots__ = ("budget_id", "etag")
    BUDGET_ID_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    budget_id: str
    etag: str
    def __init__(self, budget_id: _Optional[str] = ..., etag: _Optional[str] = ...) -> None: ...

class DeleteBudgetResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListBudgetHistoryRequest(_message.Message):
    __slots__ = ("budget_id", "page_size")
    BUDGET_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    budget_id: str
    page_size: int
    def __init__(self, budget_id: _Optional[str] = ..., page_size: _Optional[int] = ...) -> None: ...

class BudgetPeriod(_message.Message):
    __slots__ = ("period_start", "period_end", "amount", "carried", "budgeted", "spent", "remaining")
    PERIOD_START_FIELD_NUMBER: _ClassVar[int]
    PERIOD_END_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    CARRIED_FIELD_NUMBER: _ClassVar[int]
    BUDGETED_FIELD_NUMBER: _ClassVar[int]
    SPENT_FIELD_NUMBER: _ClassVar[int]
    REMAINING_FIELD_NUMBER: _ClassVar[int]
    period_start: str
    period_end: str
    amount: str
    carried: str
    budgeted: str
    spent: str
    remaining: str
    def __init__(self, period_start: _Optional[str] = ..., period_end: _Optional[str] = ..., amount: _Optional[str] = ..., carried: _Optional[str] = ..., budgeted: _Optional[str] = ..., spent: _Optional[str] = ..., remaining: _Optional[str] = ...) -> None: ...

class ListBudgetHistoryResponse(_message.Message):
    __slots__ = ("periods", "currency")
    PERIODS_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    periods: _containers.RepeatedCompositeFieldContainer[BudgetPeriod]
    currency: str
    def __init__(self, periods: _Optional[_Iterable[_Union[BudgetPeriod, _Mapping]]] = ..., currency: _Optional[str] = ...) -> None: ...

class Bill(_message.Message):
    __slots__ = ("bill_id", "payee", "amount", "currency", "category_id", "recurrence", "first_due", "remind_days_before", "autopay", "etag", "create_time", "update_time", "next_due")
    BILL_ID_FIELD_NUMBER: _ClassVar[int]
    PAYEE_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_ID_FIELD_NUMBER: _ClassVar[int]
    RECURRENCE_FIELD_NUMBER: _ClassVar[int]
    FIRST_DUE_FIELD_NUMBER: _ClassVar[int]
    REMIND_DAYS_BEFORE_FIELD_NUMBER: _ClassVar[int]
    AUTOPAY_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    NEXT_DUE_FIELD_NUMBER: _ClassVar[int]
    bill_id: str
    payee: str
    amount: str
    currency: str
    category_id: str
    recurrence: str
    first_due: str
    remind_days_before: int
    autopay: bool
    etag: str
    create_time: str
    update_time: str
    next_due: str
    def __init__(self, bill_id: _Optional[str] = ..., payee: _Optional[str] = ..., amount: _Optional[str] = ..., currency: _Optional[str] = ..., category_id: _Optional[str] = ..., recurrence: _Optional[str] = ..., first_due: _Optional[str] = ..., remind_days_before: _Optional[int] = ..., autopay: _Optional[bool] = ..., etag: _Optional[str] = ..., create_time: _Optional[str] = ..., update_time: _Optional[str] = ..., next_due: _Optional[str] = ...) -> None: ...

class CreateBillRequest(_message.Message):
    __slots__ = ("request_id", "payee", "amount", "currency", "category_id", "recurrence", "first_due", "remind_days_before", "autopay")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PAYEE_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_ID_FIELD_NUMBER: _ClassVar[int]
    RECURRENCE_FIELD_NUMBER: _ClassVar[int]
    FIRST_DUE_FIELD_NUMBER: _ClassVar[int]
    REMIND_DAYS_BEFORE_FIELD_NUMBER: _ClassVar[int]
    AUTOPAY_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    payee: str
    amount: str
    currency: str
    category_id: str
    recurrence: str
    first_due: str
    remind_days_before: int
    autopay: bool
    def __init__(self, request_id: _Optional[str] = ..., payee: _Optional[str] = ..., amount: _Optional[str] = ..., currency: _Optional[str] = ..., category_id: _Optional[str] = ..., recurrence: _Optional[str] = ..., first_due: _Optional[str] = ..., remind_days_before: _Optional[int] = ..., autopay: _Optional[bool] = ...) -> None: ...

class GetBillRequest(_message.Message):
    __slots__ = ("bill_id",)
    BILL_ID_FIELD_NUMBER: _ClassVar[int]
    bill_id: str
    def __init__(self, bill_id: _Optional[str] = ...) -> None: ...

class ListBillsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListBillsResponse(_message.Message):
    __slots__ = ("bills", "next_page_token")
    BILLS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    bills: _containers.RepeatedCompositeFieldContainer[Bill]
    next_page_token: str
    def __init__(self, bills: _Optional[_Iterable[_Union[Bill, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateBillRequest(_message.Message):
    __slots__ = ("bill_id", "bill", "update_mask", "etag")
    BILL_ID_FIELD_NUMBER: _ClassVar[int]
    BILL_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    bill_id: str
    bill: Bill
    update_mask: str
    etag: str
    def __init__(self, bill_id: _Optional[str] = ..., bill: _Optional[_Union[Bill, _Mapping]] = ..., update_mask: _Optional[str] = ..., etag: _Optional[str] = ...) -> None: ...

class DeleteBillRequest(_message.Message):
    __slots__ = ("bill_id", "etag")
    BILL_ID_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    bill_id: str
    etag: str
    def __init__(self, bill_id: _Optional[str] = ..., etag: _Optional[str] = ...) -> None: ...

class DeleteBillResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class BillOccurrence(_message.Message):
    __slots__ = ("due_date", "amount", "currency", "status", "expense_id")
    DUE_DATE_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    EXPENSE_ID_FIELD_NUMBER: _ClassVar[int]
    due_date: str
    amount: str
    currency: str
    status: str
    expense_id: str
    def __init__(self, due_date: _Optional[str] = ..., amount: _Optional[str] = ..., currency: _Optional[str] = ..., status: _Optional[str] = ..., expense_id: _Optional[str] = ...) -> None: ...

class ListBillOccurrencesRequest(_message.Message):
    __slots__ = ("bill_id", "to")
    BILL_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    bill_id: str
    to: str
    def __init__(self, bill_id: _Optional[str] = ..., to: _Optional[str] = ..., **kwargs) -> None: ...

class ListBillOccurrencesResponse(_message.Message):
    __slots__ = ("occurrences",)
    OCCURRENCES_FIELD_NUMBER: _ClassVar[int]
    occurrences: _containers.RepeatedCompositeFieldContainer[BillOccurrence]
    def __init__(self, occurrences: _Optional[_Iterable[_Union[BillOccurrence, _Mapping]]] = ...) -> None: ...

class PayBillOccurrenceRequest(_message.Message):
    __slots__ = ("bill_id", "due_date", "amount", "paid_on")
    BILL_ID_FIELD_NUMBER: _ClassVar[int]
    DUE_DATE_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    PAID_ON_FIELD_NUMBER: _ClassVar[int]
    bill_id: str
    due_date: str
    amount: str
    paid_on: str
    def __init__(self, bill_id: _Optional[str] = ..., due_date: _Optional[str] = ..., amount: _Optional[str] = ..., paid_on: _Optional[str] = ...) -> None: ...

class SkipBillOccurrenceRequest(_message.Message):
    __slots__ = ("bill_id", "due_date")
    BILL_ID_FIELD_NUMBER: _ClassVar[int]
    DUE_DATE_FIELD_NUMBER: _ClassVar[int]
    bill_id: str
    due_date: str
    def __init__(self, bill_id: _Optional[str] = ..., due_date: _Optional[str] = ...) -> None: ...

class BillSuggestion(_message.Message):
    __slots__ = ("suggestion_id", "payee", "amount", "currency", "cadence", "recurrence", "next_due", "occurrences", "last_charge")
    SUGGESTION_ID_FIELD_NUMBER: _ClassVar[int]
    PAYEE_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    CADENCE_FIELD_NUMBER: _ClassVar[int]
    RECURRENCE_FIELD_NUMBER: _ClassVar[int]
    NEXT_DUE_FIELD_NUMBER: _ClassVar[int]
    OCCURRENCES_FIELD_NUMBER: _ClassVar[int]
    LAST_CHARGE_FIELD_NUMBER: _ClassVar[int]
    suggestion_id: str
    payee: str
    amount: str
    currency: str
    cadence: str
    recurrence: str
    next_due: str
    occurrences: int
    last_charge: str
    def __init__(self, suggestion_id: _Optional[str] = ..., payee: _Optional[str] = ..., amount: _Optional[str] = ..., currency: _Optional[str] = ..., cadence: _Optional[str] = ..., recurrence: _Optional[str] = ..., next_due: _Optional[str] = ..., occurrences: _Optional[int] = ..., last_charge: _Optional[str] = ...) -> None: ...

class ListBillSuggestionsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListBillSuggestionsResponse(_message.Message):
    __slots__ = ("suggestions",)
    SUGGESTIONS_FIELD_NUMBER: _ClassVar[int]
    suggestions: _containers.RepeatedCompositeFieldContainer[BillSuggestion]
    def __init__(self, suggestions: _Optional[_Iterable[_Union[BillSuggestion, _Mapping]]] = ...) -> None: ...

class AcceptBillSuggestionRequest(_message.Message):
    __slots__ = ("request_id", "suggestion_id", "category_id", "remind_days_before")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SUGGESTION_ID_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_ID_FIELD_NUMBER: _ClassVar[int]
    REMIND_DAYS_BEFORE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    suggestion_id: str
    category_id: str
    remind_days_before: int
    def __init__(self, request_id: _Optional[str] = ..., suggestion_id: _Optional[str] = ..., category_id: _Optional[str] = ..., remind_days_before: _Optional[int] = ...) -> None: ...

class Alert(_message.Message):
    __slots__ = ("alert_id", "type", "severity", "title", "details", "create_time", "acknowledge_time", "dedupe_key")
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
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ACKNOWLEDGE_TIME_FIELD_NUMBER: _ClassVar[int]
    DEDUPE_KEY_FIELD_NUMBER: _ClassVar[int]
    alert_id: str
    type: str
    severity: str
    title: str
    details: _containers.ScalarMap[str, str]
    create_time: str
    acknowledge_time: str
    dedupe_key: str
    def __init__(self, alert_id: _Optional[str] = ..., type: _Optional[str] = ..., severity: _Optional[str] = ..., title: _Optional[str] = ..., details: _Optional[_Mapping[str, str]] = ..., create_time: _Optional[str] = ..., acknowledge_time: _Optional[str] = ..., dedupe_key: _Optional[str] = ...) -> None: ...

class ListAlertsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "unacknowledged_only")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    UNACKNOWLEDGED_ONLY_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    unacknowledged_only: bool
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., unacknowledged_only: _Optional[bool] = ...) -> None: ...

class ListAlertsResponse(_message.Message):
    __slots__ = ("alerts", "next_page_token")
    ALERTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    alerts: _containers.RepeatedCompositeFieldContainer[Alert]
    next_page_token: str
    def __init__(self, alerts: _Optional[_Iterable[_Union[Alert, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class AcknowledgeAlertRequest(_message.Message):
    __slots__ = ("alert_id",)
    ALERT_ID_FIELD_NUMBER: _ClassVar[int]
    alert_id: str
    def __init__(self, alert_id: _Optional[str] = ...) -> None: ...

class AlertRule(_message.Message):
    __slots__ = ("type", "description", "muted")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    MUTED_FIELD_NUMBER: _ClassVar[int]
    type: str
    description: str
    muted: bool
    def __init__(self, type: _Optional[str] = ..., description: _Optional[str] = ..., muted: _Optional[bool] = ...) -> None: ...

class AlertSettings(_message.Message):
    __slots__ = ("rules",)
    RULES_FIELD_NUMBER: _ClassVar[int]
    rules: _containers.RepeatedCompositeFieldContainer[AlertRule]
    def __init__(self, rules: _Optional[_Iterable[_Union[AlertRule, _Mapping]]] = ...) -> None: ...

class GetAlertSettingsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class UpdateAlertSettingsRequest(_message.Message):
    __slots__ = ("muted",)
    MUTED_FIELD_NUMBER: _ClassVar[int]
    muted: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, muted: _Optional[_Iterable[str]] = ...) -> None: ...
