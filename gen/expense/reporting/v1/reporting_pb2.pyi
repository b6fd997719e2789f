from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetSummaryRequest(_message.Message):
    __slots__ = ("period", "date", "to")
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    DATE_FIELD_NUMBER: _ClassVar[int]
    FROM_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    period: str
    date: str
    to: str
    def __init__(self, period: _Optional[str] = ..., date: _Optional[str] = ..., to: _Optional[str] = ..., **kwargs) -> None: ...

class CategoryTotal(_message.Message):
    __slots__ = ("category_id", "name", "total", "count", "share_percent")
    CATEGORY_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    SHARE_PERCENT_FIELD_NUMBER: _ClassVar[int]
    category_id: str
    name: str
    total: str
    count: int
    share_percent: str
    def __init__(self, category_id: _Optional[str] = ..., name: _Optional[str] = ..., total: _Optional[str] = ..., count: _Optional[int] = ..., share_percent: _Optional[str] = ...) -> None: ...

class SeriesPoint(_message.Message):
    __slots__ = ("start", "end", "total", "count")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    start: str
    end: str
    total: str
    count: int
    def __init__(self, start: _Optional[str] = ..., end: _Optional[str] = ..., total: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class MerchantTotal(_message.Message):
    __slots__ = ("merchant", "total", "count")
    MERCHANT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    merchant: str
    total: str
    count: int
    def __init__(self, merchant: _Optional[str] = ..., total: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class CurrencySummary(_message.Message):
    __slots__ = ("currency", "total", "count", "daily_average", "previous_total", "change_percent", "by_category", "series", "top_merchants")
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    DAILY_AVERAGE_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    CHANGE_PERCENT_FIELD_NUMBER: _ClassVar[int]
    BY_CATEGORY_FIELD_NUMBER: _ClassVar[int]
    SERIES_FIELD_NUMBER: _ClassVar[int]
    TOP_MERCHANTS_FIELD_NUMBER: _ClassVar[int]
    currency: str
    total: str
    count: int
    daily_average: str
    previous_total: str
    change_percent: str
    by_category: _containers.RepeatedCompositeFieldContainer[CategoryTotal]
    series: _containers.RepeatedCompositeFieldContainer[SeriesPoint]
    top_merchants: _containers.RepeatedCompositeFieldContainer[MerchantTotal]
    def __init__(self, currency: _Optional[str] = ..., total: _Optional[str] = ..., count: _Optional[int] = ..., daily_average: _Optional[str] = ..., previous_total: _Optional[str] = ..., change_percent: _Optional[str] = ..., by_category: _Optional[_Iterable[_Union[CategoryTotal, _Mapping]]] = ..., series: _Optional[_Iterable[_Union[SeriesPoint, _Mapping]]] = ..., top_merchants: _Optional[_Iterable[_Union[MerchantTotal, _Mapping]]] = ...) -> None: ...

class Summary(_message.Message):
    __slots__ = ("period", "period_start", "period_end", "currencies")
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    PERIOD_START_FIELD_NUMBER: _ClassVar[int]
    PERIOD_END_FIELD_NUMBER: _ClassVar[int]
    CURRENCIES_FIELD_NUMBER: _ClassVar[int]
    period: str
    period_start: str
    period_end: str
    currencies: _containers.RepeatedCompositeFieldContainer[CurrencySummary]
    def __init__(self, period: _Optional[str] = ..., period_start: _Optional[str] = ..., period_end: _Optional[str] = ..., currencies: _Optional[_Iterable[_Union[CurrencySummary, _Mapping]]] = ...) -> None: ...

class GetTrendRequest(_message.Message):
    __slots__ = ("period", "count", "end")
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    period: str
    count: int
    end: str
    def __init__(self, period: _Optional[str] = ..., count: _Optional[int] = ..., end: _Optional[str] = ...) -> None: ...

class TrendPoint(_message.Message):
    __slots__ = ("period_start", "period_end", "currency", "total", "count", "by_category")
    PERIOD_START_FIELD_NUMBER: _ClassVar[int]
    PERIOD_END_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    BY_CATEGORY_FIELD_NUMBER: _ClassVar[int]
    period_start: str
    period_end: str
    currency: str
    total: str
    count: int
    by_category: _containers.RepeatedCompositeFieldContainer[CategoryTotal]
    def __init__(self, period_start: _Optional[str] = ..., period_end: _Optional[str] = ..., currency: _Optional[str] = ..., total: _Optional[str] = ..., count: _Optional[int] = ..., by_category: _Optional[_Iterable[_Union[CategoryTotal, _Mapping]]] = ...) -> None: ...

class CurrencyTrend(_message.Message):
    __slots__ = ("currency", "points")
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    currency: str
    points: _containers.RepeatedCompositeFieldContainer[TrendPoint]
    def __init__(self, currency: _Optional[str] = ..., points: _Optional[_Iterable[_Union[TrendPoint, _Mapping]]] = ...) -> None: ...

class Trend(_message.Message):
    __slots__ = ("period", "points", "series")
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    SERIES_FIELD_NUMBER: _ClassVar[int]
    period: str
    points: _containers.RepeatedCompositeFieldContainer[TrendPoint]
    series: _containers.RepeatedCompositeFieldContainer[CurrencyTrend]
    def __init__(self, period: _Optional[str] = ..., points: _Optional[_Iterable[_Union[TrendPoint, _Mapping]]] = ..., series: _Optional[_Iterable[_Union[CurrencyTrend, _Mapping]]] = ...) -> None: ...

class GetCategoryReportRequest(_message.Message):
    __slots__ = ("category_id", "period", "date", "to")
    CATEGORY_ID_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    DATE_FIELD_NUMBER: _ClassVar[int]
    FROM_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    category_id: str
    period: str
    date: str
    to: str
    def __init__(self, category_id: _Optional[str] = ..., period: _Optional[str] = ..., date: _Optional[str] = ..., to: _Optional[str] = ..., **kwargs) -> None: ...

class CategoryReport(_message.Message):
    __slots__ = ("category_id", "name", "period", "period_start", "period_end", "currencies", "children")
    CATEGORY_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    PERIOD_START_FIELD_NUMBER: _ClassVar[int]
    PERIOD_END_FIELD_NUMBER: _ClassVar[int]
    CURRENCIES_FIELD_NUMBER: _ClassVar[int]
    CHILDREN_FIELD_NUMBER: _ClassVar[int]
    category_id: str
    name: str
    period: str
    period_start: str
    period_end: str
    currencies: _containers.RepeatedCompositeFieldContainer[CurrencySummary]
    children: _containers.RepeatedCompositeFieldContainer[CategoryTotal]
    def __init__(self, category_id: _Optional[str] = ..., name: _Optional[str] = ..., period: _Optional[str] = ..., period_start: _Optional[str] = ..., period_end: _Optional[str] = ..., currencies: _Optional[_Iterable[_Union[CurrencySummary, _Mapping]]] = ..., children: _Optional[_Iterable[_Union[CategoryTotal, _Mapping]]] = ...) -> None: ...

class ExportExpensesRequest(_message.Message):
    __slots__ = ("period", "date")
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    DATE_FIELD_NUMBER: _ClassVar[int]
    period: str
    date: str
    def __init__(self, period: _Optional[str] = ..., date: _Optional[str] = ...) -> None: ...

class ExportExpensesResponse(_message.Message):
    __slots__ = ("filename", "content_type", "csv", "row_count")
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    CSV_FIELD_NUMBER: _ClassVar[int]
    ROW_COUNT_FIELD_NUMBER: _ClassVar[int]
    filename: str
    content_type: str
    csv: str
    row_count: int
    def __init__(self, filename: _Optional[str] = ..., content_type: _Optional[str] = ..., csv: _Optional[str] = ..., row_count: _Optional[int] = ...) -> None: ...
