from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.api import httpbody_pb2 as _httpbody_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateExpenseForRequest(_message.Message):
    __slots__ = ("user_id", "source", "expense")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    EXPENSE_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    source: str
    expense: CreateExpenseRequest
    def __init__(self, user_id: _Optional[str] = ..., source: _Optional[str] = ..., expense: _Optional[_Union[CreateExpenseRequest, _Mapping]] = ...) -> None: ...

class StreamExpensesRequest(_message.Message):
    __slots__ = ("user_id",)
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    def __init__(self, user_id: _Optional[str] = ...) -> None: ...

class InternalExpense(_message.Message):
    __slots__ = ("user_id", "expense_id", "amount_minor", "currency", "spent_on", "category_id", "merchant")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    EXPENSE_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_MINOR_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    SPENT_ON_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_ID_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    expense_id: str
    amount_minor: int
    currency: str
    spent_on: str
    category_id: str
    merchant: str
    def __init__(self, user_id: _Optional[str] = ..., expense_id: _Optional[str] = ..., amount_minor: _Optional[int] = ..., currency: _Optional[str] = ..., spent_on: _Optional[str] = ..., category_id: _Optional[str] = ..., merchant: _Optional[str] = ...) -> None: ...

class StreamExpensesResponse(_message.Message):
    __slots__ = ("expenses",)
    EXPENSES_FIELD_NUMBER: _ClassVar[int]
    expenses: _containers.RepeatedCompositeFieldContainer[InternalExpense]
    def __init__(self, expenses: _Optional[_Iterable[_Union[InternalExpense, _Mapping]]] = ...) -> None: ...

class StreamCategoriesRequest(_message.Message):
    __slots__ = ("user_id",)
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    def __init__(self, user_id: _Optional[str] = ...) -> None: ...

class InternalCategory(_message.Message):
    __slots__ = ("user_id", "category_id", "name", "parent_id")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PARENT_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    category_id: str
    name: str
    parent_id: str
    def __init__(self, user_id: _Optional[str] = ..., category_id: _Optional[str] = ..., name: _Optional[str] = ..., parent_id: _Optional[str] = ...) -> None: ...

class StreamCategoriesResponse(_message.Message):
    __slots__ = ("categories",)
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    categories: _containers.RepeatedCompositeFieldContainer[InternalCategory]
    def __init__(self, categories: _Optional[_Iterable[_Union[InternalCategory, _Mapping]]] = ...) -> None: ...

class Expense(_message.Message):
    __slots__ = ("expense_id", "amount", "currency", "spent_on", "category_id", "merchant", "note", "tags", "source", "etag", "create_time", "update_time")
    EXPENSE_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    SPENT_ON_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_ID_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    expense_id: str
    amount: str
    currency: str
    spent_on: str
    category_id: str
    merchant: str
    note: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    source: str
    etag: str
    create_time: str
    update_time: str
    def __init__(self, expense_id: _Optional[str] = ..., amount: _Optional[str] = ..., currency: _Optional[str] = ..., spent_on: _Optional[str] = ..., category_id: _Optional[str] = ..., merchant: _Optional[str] = ..., note: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., source: _Optional[str] = ..., etag: _Optional[str] = ..., create_time: _Optional[str] = ..., update_time: _Optional[str] = ...) -> None: ...

class CreateExpenseRequest(_message.Message):
    __slots__ = ("request_id", "amount", "currency", "spent_on", "category_id", "merchant", "note", "tags")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    SPENT_ON_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_ID_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    amount: str
    currency: str
    spent_on: str
    category_id: str
    merchant: str
    note: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, request_id: _Optional[str] = ..., amount: _Optional[str] = ..., currency: _Optional[str] = ..., spent_on: _Optional[str] = ..., category_id: _Optional[str] = ..., merchant: _Optional[str] = ..., note: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ...) -> None: ...

class GetExpenseRequest(_message.Message):
    __slots__ = ("expense_id",)
    EXPENSE_ID_FIELD_NUMBER: _ClassVar[int]
    expense_id: str
    def __init__(self, expense_id: _Optional[str] = ...) -> None: ...

class UpdateExpenseRequest(_message.Message):
    __slots__ = ("expense_id", "expense", "update_mask", "etag")
    EXPENSE_ID_FIELD_NUMBER: _ClassVar[int]
    EXPENSE_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    expense_id: str
    expense: Expense
    update_mask: str
    etag: str
    def __init__(self, expense_id: _Optional[str] = ..., expense: _Optional[_Union[Expense, _Mapping]] = ..., update_mask: _Optional[str] = ..., etag: _Optional[str] = ...) -> None: ...

class DeleteExpenseRequest(_message.Message):
    __slots__ = ("expense_id", "etag")
    EXPENSE_ID_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    expense_id: str
    etag: str
    def __init__(self, expense_id: _Optional[str] = ..., etag: _Optional[str] = ...) -> None: ...

class DeleteExpenseResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListExpensesRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "to", "category_id", "q", "min_amount", "max_amount", "tag", "order_by", "currency", "skip_total_size")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FROM_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_ID_FIELD_NUMBER: _ClassVar[int]
    Q_FIELD_NUMBER: _ClassVar[int]
    MIN_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    MAX_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    SKIP_TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    to: str
    category_id: str
    q: str
    min_amount: str
    max_amount: str
    tag: str
    order_by: str
    currency: str
    skip_total_size: bool
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., to: _Optional[str] = ..., category_id: _Optional[str] = ..., q: _Optional[str] = ..., min_amount: _Optional[str] = ..., max_amount: _Optional[str] = ..., tag: _Optional[str] = ..., order_by: _Optional[str] = ..., currency: _Optional[str] = ..., skip_total_size: _Optional[bool] = ..., **kwargs) -> None: ...

class ListExpensesResponse(_message.Message):
    __slots__ = ("expenses", "next_page_token", "total_size", "total_size_capped")
    EXPENSES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_CAPPED_FIELD_NUMBER: _ClassVar[int]
    expenses: _containers.RepeatedCompositeFieldContainer[Expense]
    next_page_token: str
    total_size: int
    total_size_capped: bool
    def __init__(self, expenses: _Optional[_Iterable[_Union[Expense, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total_size: _Optional[int] = ..., total_size_capped: _Optional[bool] = ...) -> None: ...

class GetExpenseHistoryRequest(_message.Message):
    __slots__ = ("expense_id",)
    EXPENSE_ID_FIELD_NUMBER: _ClassVar[int]
    expense_id: str
    def __init__(self, expense_id: _Optional[str] = ...) -> None: ...

class HistoryEntry(_message.Message):
    __slots__ = ("version", "action", "actor", "time", "before", "after")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    version: int
    action: str
    actor: str
    time: str
    before: Expense
    after: Expense
    def __init__(self, version: _Optional[int] = ..., action: _Optional[str] = ..., actor: _Optional[str] = ..., time: _Optional[str] = ..., before: _Optional[_Union[Expense, _Mapping]] = ..., after: _Optional[_Union[Expense, _Mapping]] = ...) -> None: ...

class GetExpenseHistoryResponse(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[HistoryEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[HistoryEntry, _Mapping]]] = ...) -> None: ...

class ExportExpensesRequest(_message.Message):
    __slots__ = ("to", "format")
    FROM_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    to: str
    format: str
    def __init__(self, to: _Optional[str] = ..., format: _Optional[str] = ..., **kwargs) -> None: ...

class ImportRow(_message.Message):
    __slots__ = ("request_id", "amount", "currency", "spent_on", "category_id", "merchant", "note", "tags")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    SPENT_ON_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_ID_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    amount: str
    currency: str
    spent_on: str
    category_id: str
    merchant: str
    note: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, request_id: _Optional[str] = ..., amount: _Optional[str] = ..., currency: _Optional[str] = ..., spent_on: _Optional[str] = ..., category_id: _Optional[str] = ..., merchant: _Optional[str] = ..., note: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ...) -> None: ...

class ImportExpensesRequest(_message.Message):
    __slots__ = ("rows", "csv", "mapping", "column_mapping")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    CSV_FIELD_NUMBER: _ClassVar[int]
    MAPPING_FIELD_NUMBER: _ClassVar[int]
    COLUMN_MAPPING_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[ImportRow]
    csv: str
    mapping: str
    column_mapping: ColumnMapping
    def __init__(self, rows: _Optional[_Iterable[_Union[ImportRow, _Mapping]]] = ..., csv: _Optional[str] = ..., mapping: _Optional[str] = ..., column_mapping: _Optional[_Union[ColumnMapping, _Mapping]] = ...) -> None: ...

class ColumnMapping(_message.Message):
    __slots__ = ("date", "date_formats", "amount", "debit", "credit", "merchant", "note", "reference", "currency", "currency_column")
    DATE_FIELD_NUMBER: _ClassVar[int]
    DATE_FORMATS_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    DEBIT_FIELD_NUMBER: _ClassVar[int]
    CREDIT_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_COLUMN_FIELD_NUMBER: _ClassVar[int]
    date: str
    date_formats: _containers.RepeatedScalarFieldContainer[str]
    amount: str
    debit: str
    credit: str
    merchant: str
    note: str
    reference: str
    currency: str
    currency_column: str
    def __init__(self, date: _Optional[str] = ..., date_formats: _Optional[_Iterable[str]] = ..., amount: _Optional[str] = ..., debit: _Optional[str] = ..., credit: _Optional[str] = ..., merchant: _Optional[str] = ..., note: _Optional[str] = ..., reference: _Optional[str] = ..., currency: _Optional[str] = ..., currency_column: _Optional[str] = ...) -> None: ...

class FieldError(_message.Message):
    __slots__ = ("field", "description")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    field: str
    description: str
    def __init__(self, field: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class ImportRowResult(_message.Message):
    __slots__ = ("index", "status", "expense_id", "errors")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    EXPENSE_ID_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    index: int
    status: str
    expense_id: str
    errors: _containers.RepeatedCompositeFieldContainer[FieldError]
    def __init__(self, index: _Optional[int] = ..., status: _Optional[str] = ..., expense_id: _Optional[str] = ..., errors: _Optional[_Iterable[_Union[FieldError, _Mapping]]] = ...) -> None: ...

class ImportExpensesResponse(_message.Message):
    __slots__ = ("results", "created_count", "duplicate_count", "invalid_count", "skipped_count")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    CREATED_COUNT_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_COUNT_FIELD_NUMBER: _ClassVar[int]
    INVALID_COUNT_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_COUNT_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ImportRowResult]
    created_count: int
    duplicate_count: int
    invalid_count: int
    skipped_count: int
    def __init__(self, results: _Optional[_Iterable[_Union[ImportRowResult, _Mapping]]] = ..., created_count: _Optional[int] = ..., duplicate_count: _Optional[int] = ..., invalid_count: _Optional[int] = ..., skipped_count: _Optional[int] = ...) -> None: ...

class Category(_message.Message):
    __slots__ = ("category_id", "name", "parent_id", "color", "icon", "create_time", "update_time")
    CATEGORY_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PARENT_ID_FIELD_NUMBER: _ClassVar[int]
    COLOR_FIELD_NUMBER: _ClassVar[int]
    ICON_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    category_id: str
    name: str
    parent_id: str
    color: str
    icon: str
    create_time: str
    update_time: str
    def __init__(self, category_id: _Optional[str] = ..., name: _Optional[str] = ..., parent_id: _Optional[str] = ..., color: _Optional[str] = ..., icon: _Optional[str] = ..., create_time: _Optional[str] = ..., update_time: _Optional[str] = ...) -> None: ...

class ListCategoriesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListCategoriesResponse(_message.Message):
    __slots__ = ("categories",)
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    categories: _containers.RepeatedCompositeFieldContainer[Category]
    def __init__(self, categories: _Optional[_Iterable[_Union[Category, _Mapping]]] = ...) -> None: ...

class CreateCategoryRequest(_message.Message):
    __slots__ = ("request_id", "name", "parent_id", "color", "icon")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PARENT_ID_FIELD_NUMBER: _ClassVar[int]
    COLOR_FIELD_NUMBER: _ClassVar[int]
    ICON_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    name: str
    parent_id: str
    color: str
    icon: str
    def __init__(self, request_id: _Optional[str] = ..., name: _Optional[str] = ..., parent_id: _Optional[str] = ..., color: _Optional[str] = ..., icon: _Optional[str] = ...) -> None: ...

class UpdateCategoryRequest(_message.Message):
    __slots__ = ("category_id", "category", "update_mask")
    CATEGORY_ID_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    category_id: str
    category: Category
    update_mask: str
    def __init__(self, category_id: _Optional[str] = ..., category: _Optional[_Union[Category, _Mapping]] = ..., update_mask: _Optional[str] = ...) -> None: ...

class DeleteCategoryRequest(_message.Message):
    __slots__ = ("category_id", "reassign_to")
    CATEGORY_ID_FIELD_NUMBER: _ClassVar[int]
    REASSIGN_TO_FIELD_NUMBER: _ClassVar[int]
    category_id: str
    reassign_to: str
    def __init__(self, category_id: _Optional[str] = ..., reassign_to: _Optional[str] = ...) -> None: ...

class DeleteCategoryResponse(_message.Message):
    __slots__ = ("reassigned_expenses",)
    REASSIGNED_EXPENSES_FIELD_NUMBER: _ClassVar[int]
    reassigned_expenses: int
    def __init__(self, reassigned_expenses: _Optional[int] = ...) -> None: ...
