"""LedgerService (public, REST through the gateways) and LedgerInternalService
(mesh-internal streams for rebuilds): requests -> validated inputs, one use case
per RPC (usecases.py), its result -> the response (convert.py). The kit's
interceptor maps errors to statuses. The owner is always the verified caller
(current_identity()), never a request field."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import grpc
from google.api import httpbody_pb2
from google.protobuf.message import Message
from typing_extensions import override

from expense.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from services.kit.consistency import CONSISTENCY_HEADER, WrittenVersion
from services.kit.db.idempotency import fingerprint
from services.kit.domain.errors import InvalidArgument, Unavailable
from services.kit.domain.etags import opaque
from services.kit.domain.validation import parse_update_mask
from services.kit.grpc.etags import requested_etag, send_etag
from services.kit.identity.tokens import Identity, current_identity
from services.ledger.convert import (
    category_proto,
    expense_fields,
    expense_proto,
    history_proto,
    import_response,
    import_response_of,
    internal_category,
    internal_expense,
)
from services.ledger.domain import (
    CATEGORY_FIELDS,
    EXPENSE_FIELDS,
    EXPORT_COLUMNS,
    CategoryTree,
    export_csv,
    export_header,
    path_key,
    unsafe_cell,
)
from services.ledger.inputs import (
    TAG_SEPARATOR,
    CategoryInput,
    ExpenseInput,
    ExportInput,
    ListInput,
    RequestIdInput,
    validate,
)
from services.ledger.settings import LedgerSettings
from services.ledger.statements import ColumnMapping, Skipped, statement_rows
from services.ledger.usecases import ImportRow, Ledger
from services.user.client import Preferences, PreferencesClient

log = logging.getLogger(__name__)

SERVICE_NAME = "expense.ledger.v1.LedgerService"
INTERNAL_SERVICE_NAME = "expense.ledger.v1.LedgerInternalService"
IMPORT_COLUMNS = ("request_id", "amount", "currency", "spent_on", "category_id", "merchant", "note", "tags")
# What ExportExpenses writes, read back: column -> the import column it fills. `source` is
# the ledger's to set ("import"); `category` is a path, resolved to an id before validation.
EXPORT_COLUMN_ALIASES = {
    "date": "spent_on",
    "category": "category_path",
    "expense_id": "request_id",
    "source": "source",
}
CSV_CONTENT_TYPE = "text/csv; charset=utf-8"
# A category_id that is a category path to resolve (from an exported `category` column).
CATEGORY_PATH_MARK = "path:"
MAX_USER_ID_LENGTH = 36
# Sources of expenses other services record for a user (billing paying a bill, SMS import).
DELEGATED_SOURCES = ("recurring", "sms")


class LedgerServicer(ledger_pb2_grpc.LedgerServiceServicer):
    def __init__(
        self,
        ledger: Ledger,
        preferences: PreferencesClient,
        mappings: Mapping[str, ColumnMapping] | None = None,
    ) -> None:
        self.ledger = ledger
        self.settings: LedgerSettings = ledger.settings
        self.preferences = preferences
        # Bank statement shapes by name (config/import_mappings.toml).
        self.mappings = mappings or {}

    # -------------------------------------------------------------- expenses

    @override
    async def CreateExpense(
        self, request: ledger_pb2.CreateExpenseRequest, context: grpc.aio.ServicerContext
    ) -> ledger_pb2.Expense:
        identity = current_identity()
        self._check_request_id(request.request_id)
        data = await self._with_defaults(identity, expense_data(request))
        fields = validate(ExpenseInput, data, self.settings)
        created = await self.ledger.create_expense(
            identity.user_id, fields, request.request_id, request_fingerprint(request)
        )
        await send_etag(context, created.etag, written(created.expense_id, created.etag))
        return created

    @override
    async def GetExpense(
        self, request: ledger_pb2.GetExpenseRequest, context: grpc.aio.ServicerContext
    ) -> ledger_pb2.Expense:
        expense_id = required_id(request.expense_id, "expense_id")
        expense = await self.ledger.get_expense(current_identity().user_id, expense_id)
        await send_etag(context, expense.etag)
        return expense_proto(expense)

    @override
    async def UpdateExpense(
        self, request: ledger_pb2.UpdateExpenseRequest, context: grpc.aio.ServicerContext
    ) -> ledger_pb2.Expense:
        user_id = current_identity().user_id
        expense_id = required_id(request.expense_id, "expense_id")
        paths = mask_paths(request.update_mask, EXPENSE_FIELDS, request.expense)
        requested = {path: field_value(request.expense, path) for path in paths}
        etag = requested_etag(context, request.etag or request.expense.etag)
        updated = await self.ledger.update_expense(user_id, user_id, expense_id, etag, requested)
        await send_etag(context, updated.etag, written(expense_id, updated.etag))
        return expense_proto(updated)

    @override
    async def DeleteExpense(
        self, request: ledger_pb2.DeleteExpenseRequest, context: grpc.aio.ServicerContext
    ) -> ledger_pb2.DeleteExpenseResponse:
        user_id = current_identity().user_id
        expense_id = required_id(request.expense_id, "expense_id")
        version = await self.ledger.delete_expense(
            user_id, user_id, expense_id, requested_etag(context, request.etag)
        )
        await send_etag(context, "", (CONSISTENCY_HEADER, WrittenVersion(expense_id, version).token))
        return ledger_pb2.DeleteExpenseResponse()

    @override
    async def ListExpenses(
        self, request: ledger_pb2.ListExpensesRequest, context: object
    ) -> ledger_pb2.ListExpensesResponse:
        data = {
            "page_size": request.page_size,
            "page_token": request.page_token,
            "from": getattr(request, "from"),  # a Python keyword
            "to": request.to,
            "category_id": request.category_id,
            "q": request.q,
            "min_amount": request.min_amount,
            "max_amount": request.max_amount,
            "tag": request.tag,
            "order_by": request.order_by,
            "currency": request.currency,
            "skip_total_size": request.skip_total_size,
        }
        query = validate(ListInput, data, self.settings)
        page = await self.ledger.list_expenses(current_identity().user_id, query)
        response = ledger_pb2.ListExpensesResponse(next_page_token=page.next_page_token)
        if page.total is not None:
            response.total_size = page.total.size
            response.total_size_capped = page.total.capped
        add_expense = response.expenses.add
        for expense in page.expenses:
            add_expense(**expense_fields(expense))
        return response

    @override
    async def GetExpenseHistory(
        self, request: ledger_pb2.GetExpenseHistoryRequest, context: object
    ) -> ledger_pb2.GetExpenseHistoryResponse:
        user_id = current_identity().user_id
        expense_id = required_id(request.expense_id, "expense_id")
        entries = await self.ledger.history(user_id, expense_id)
        return ledger_pb2.GetExpenseHistoryResponse(entries=[history_proto(entry) for entry in entries])

    @override
    async def ExportExpenses(
        self, request: ledger_pb2.ExportExpensesRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[httpbody_pb2.HttpBody]:
        """A CSV download: a header chunk, then one chunk per batch the ledger reads."""
        data = {"from": getattr(request, "from"), "to": request.to, "format": request.format}
        query = validate(ExportInput, data, self.settings)
        user_id = current_identity().user_id
        filename = f"expenses-{query.from_date or 'start'}-{query.to_date or 'now'}.csv"
        await context.send_initial_metadata((("content-disposition", f'attachment; filename="{filename}"'),))
        yield httpbody_pb2.HttpBody(content_type=CSV_CONTENT_TYPE, data=export_header().encode())
        async for tree, batch in self.ledger.export_expenses(user_id, query.from_date, query.to_date):
            text = export_csv(tree, batch, TAG_SEPARATOR)
            yield httpbody_pb2.HttpBody(content_type=CSV_CONTENT_TYPE, data=text.encode())

    @override
    async def ImportExpenses(
        self, request: ledger_pb2.ImportExpensesRequest, context: object
    ) -> ledger_pb2.ImportExpensesResponse:
        mapping = statement_mapping(request, self.mappings)
        if mapping is not None:
            return await self._import_statement(request.csv, mapping)
        rows = import_rows(request, self.settings.max_import_rows)
        return await self._import(rows)

    async def _import_statement(self, text: str, mapping: ColumnMapping) -> ledger_pb2.ImportExpensesResponse:
        """A bank statement's rows: its expenses imported, the rest answered as skipped."""
        read = statement_rows(text, mapping, self.settings.max_import_rows)
        bounded(read, "csv", self.settings.max_import_rows)
        rows = [ledger_pb2.ImportRow(**row) for row in read if not isinstance(row, Skipped)]
        imported = iter((await self._import(rows)).results) if rows else iter(())
        results = [
            ledger_pb2.ImportRowResult(
                status="skipped", errors=[ledger_pb2.FieldError(field=row.column, description=row.reason)]
            )
            if isinstance(row, Skipped)
            else next(imported)
            for row in read
        ]
        return import_response_of(results)

    async def _import(self, rows: list[ledger_pb2.ImportRow]) -> ledger_pb2.ImportExpensesResponse:
        identity = current_identity()
        if any(row.category_id.startswith(CATEGORY_PATH_MARK) for row in rows):
            rows = resolve_category_paths(rows, await self.ledger.category_tree(identity.user_id))
        preferences = None
        if any(not row.currency or not row.spent_on for row in rows):
            preferences = await self._preferences(identity)
        candidates = [
            ImportRow(
                fingerprint(row),
                with_defaults({"request_id": row.request_id, **expense_data(row)}, preferences),
            )
            for row in rows
        ]
        outcomes = await self.ledger.import_expenses(identity.user_id, identity.user_id, candidates)
        return import_response(outcomes)

    # ------------------------------------------------------------ categories

    @override
    async def ListCategories(
        self, request: ledger_pb2.ListCategoriesRequest, context: object
    ) -> ledger_pb2.ListCategoriesResponse:
        categories = await self.ledger.list_categories(current_identity().user_id)
        return ledger_pb2.ListCategoriesResponse(categories=[category_proto(c) for c in categories])

    @override
    async def CreateCategory(
        self, request: ledger_pb2.CreateCategoryRequest, context: object
    ) -> ledger_pb2.Category:
        user_id = current_identity().user_id
        self._check_request_id(request.request_id)
        data = {name: getattr(request, name) for name in CATEGORY_FIELDS}
        fields = validate(CategoryInput, data, self.settings)
        return await self.ledger.create_category(
            user_id, fields, request.request_id, request_fingerprint(request)
        )

    @override
    async def UpdateCategory(
        self, request: ledger_pb2.UpdateCategoryRequest, context: object
    ) -> ledger_pb2.Category:
        user_id = current_identity().user_id
        category_id = required_id(request.category_id, "category_id")
        paths = mask_paths(request.update_mask, CATEGORY_FIELDS, request.category)
        requested = {path: getattr(request.category, path) for path in paths}
        fields = validate(CategoryInput, requested, self.settings, prefix="category.")
        return category_proto(await self.ledger.update_category(user_id, category_id, fields))

    @override
    async def DeleteCategory(
        self, request: ledger_pb2.DeleteCategoryRequest, context: object
    ) -> ledger_pb2.DeleteCategoryResponse:
        user_id = current_identity().user_id
        category_id = required_id(request.category_id, "category_id")
        moved = await self.ledger.delete_category(user_id, user_id, category_id, request.reassign_to.strip())
        return ledger_pb2.DeleteCategoryResponse(reassigned_expenses=moved)

    # ---------------------------------------------------------------- helpers

    def _check_request_id(self, request_id: str) -> None:
        if request_id:
            validate(RequestIdInput, {"request_id": request_id}, self.settings)

    async def _preferences(self, identity: Identity) -> Preferences:
        try:
            return await self.preferences.get(identity)
        except grpc.aio.AioRpcError as error:
            log.warning("preferences unavailable", extra={"code": str(error.code())})
            raise Unavailable(
                "the user's preferences are unavailable: retry, or send currency and spent_on"
            ) from None

    async def _with_defaults(self, identity: Identity, data: dict[str, Any]) -> dict[str, Any]:
        if data["currency"] and data["spent_on"]:
            return data
        return with_defaults(data, await self._preferences(identity))


class LedgerInternalServicer(ledger_pb2_grpc.LedgerInternalServiceServicer):
    """Bulk reads for other services' rebuilds, and expenses other services record on a
    user's behalf; mesh-internal, never routed by a gateway."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.settings: LedgerSettings = ledger.settings

    @override
    async def CreateExpenseFor(
        self, request: ledger_pb2.CreateExpenseForRequest, context: object
    ) -> ledger_pb2.Expense:
        """The caller sends currency and spent_on (no user token here to look up defaults)."""
        if not request.user_id.strip():
            raise InvalidArgument.of("user_id", "required")
        check_user_id(request.user_id)
        if request.source not in DELEGATED_SOURCES:
            raise InvalidArgument.of("source", f"one of {', '.join(DELEGATED_SOURCES)}")
        created = request.expense
        if not created.request_id:
            raise InvalidArgument.of("expense.request_id", "required: a retry must not record it twice")
        validate(RequestIdInput, {"request_id": created.request_id}, self.settings)
        fields = validate(ExpenseInput, expense_data(created), self.settings, prefix="expense.")
        return await self.ledger.create_expense(
            request.user_id, fields, created.request_id, request_fingerprint(created), source=request.source
        )

    @override
    async def StreamExpenses(
        self, request: ledger_pb2.StreamExpensesRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[ledger_pb2.StreamExpensesResponse]:
        check_user_id(request.user_id)
        async for batch in self.ledger.stream_expenses(request.user_id):
            yield ledger_pb2.StreamExpensesResponse(expenses=[internal_expense(e) for e in batch])

    @override
    async def StreamCategories(
        self, request: ledger_pb2.StreamCategoriesRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[ledger_pb2.StreamCategoriesResponse]:
        check_user_id(request.user_id)
        async for batch in self.ledger.stream_categories(request.user_id):
            yield ledger_pb2.StreamCategoriesResponse(categories=[internal_category(c) for c in batch])


def check_user_id(user_id: str) -> None:
    if len(user_id) > MAX_USER_ID_LENGTH:
        raise InvalidArgument.of("user_id", "not a valid id")


# -------------------------------------------------------------- requests


def request_fingerprint(request: ledger_pb2.CreateExpenseRequest | ledger_pb2.CreateCategoryRequest) -> str:
    """What an AIP-155 retry must repeat exactly: the request as sent (none without a request_id)."""
    return fingerprint(request) if request.request_id else ""


def written(expense_id: str, etag: str) -> tuple[str, str]:
    """The consistency-token header of a write that left the expense at `etag`."""
    return CONSISTENCY_HEADER, WrittenVersion(expense_id, int(opaque(etag))).token


def required_id(value: str, field: str) -> str:
    if not value.strip():
        raise InvalidArgument.of(field, "required")
    return value.strip()


def mask_paths(mask: str, updatable: tuple[str, ...], message: Message) -> list[str]:
    """AIP-134: the named paths ("*" for all); without a mask, the fields set in the body."""
    if mask.strip() == "*":
        return list(updatable)
    if mask.strip():
        return parse_update_mask(mask, set(updatable))
    paths = [path for path in updatable if field_value(message, path)]
    if not paths:
        raise InvalidArgument.of("update_mask", "names no field to change")
    return paths


def field_value(message: Message, path: str) -> Any:
    value = getattr(message, path)
    return list(value) if path == "tags" else value


def expense_data(request: ledger_pb2.CreateExpenseRequest | ledger_pb2.ImportRow) -> dict[str, Any]:
    """The client-settable expense fields of a create request or import row."""
    return {name: field_value(request, name) for name in EXPENSE_FIELDS}


def today_in(time_zone: str) -> date:
    try:
        zone = ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    return datetime.now(zone).date()


def with_defaults(data: dict[str, Any], preferences: Preferences | None) -> dict[str, Any]:
    """currency: the user's preferred one; spent_on: today where the user lives."""
    if preferences is None:
        return data
    return {
        **data,
        "currency": data["currency"] or preferences.default_currency,
        "spent_on": data["spent_on"] or today_in(preferences.time_zone).isoformat(),
    }


def import_rows(request: ledger_pb2.ImportExpensesRequest, max_rows: int) -> list[ledger_pb2.ImportRow]:
    if request.rows and request.csv:
        raise InvalidArgument.of("csv", "send rows or csv, not both")
    field = "csv" if request.csv else "rows"
    rows = csv_rows(request.csv, max_rows) if request.csv else list(request.rows)
    bounded(rows, field, max_rows)
    return rows


def bounded(rows: Sequence[object], field: str, max_rows: int) -> None:
    if not rows:
        raise InvalidArgument.of(field, "no rows to import")
    if len(rows) > max_rows:
        raise InvalidArgument.of(field, f"at most {max_rows} rows per call")


# ColumnMapping's fields a client may send (the proto's, date_formats apart).
STATEMENT_FIELDS = (
    "date", "amount", "debit", "credit", "merchant", "note", "reference", "currency", "currency_column",
)  # fmt: skip


def statement_mapping(
    request: ledger_pb2.ImportExpensesRequest, mappings: Mapping[str, ColumnMapping]
) -> ColumnMapping | None:
    """The bank statement mapping the request names or gives (its own over the named
    one); None for an import of our own columns."""
    given = request.HasField("column_mapping")
    if not request.mapping and not given:
        return None
    if not request.csv:
        raise InvalidArgument.of("csv", "a mapping reads a statement: send it as csv")
    base = ColumnMapping()
    if request.mapping:
        if request.mapping not in mappings:
            raise InvalidArgument.of("mapping", f"must be one of {', '.join(sorted(mappings))}")
        base = mappings[request.mapping]
    if not given:
        return base
    own = request.column_mapping
    values = {name: getattr(own, name) for name in STATEMENT_FIELDS}
    return ColumnMapping(**values, date_formats=tuple(own.date_formats)).over(base)


def csv_rows(text: str, max_rows: int) -> list[ledger_pb2.ImportRow]:
    """CSV with a header naming IMPORT_COLUMNS or what ExportExpenses (or reporting's
    export) writes (any order, amount and request_id or expense_id required); tags are
    "|"-separated. Reads at most
    max_rows + 1 rows."""
    reader = csv.reader(io.StringIO(text))
    try:
        first = next(reader, [])
    except csv.Error as error:  # e.g. a bare carriage return in a field: the client's mistake
        raise InvalidArgument.of("csv", f"header line: {error}") from None
    header = import_header([name.strip().lower() for name in first])
    known = (*IMPORT_COLUMNS, "category_path", "source")
    unknown = [name for name in header if name not in known]
    missing = [name for name in ("request_id", "amount") if name not in header]
    if unknown or missing or len(set(header)) != len(header):
        problem = (
            f"unknown columns {unknown}"
            if unknown
            else f"missing columns {missing}"
            if missing
            else "repeated columns"
        )
        raise InvalidArgument.of(
            "csv",
            f"header line: {problem}; columns are {', '.join(IMPORT_COLUMNS)} or {', '.join(EXPORT_COLUMNS)}",
        )
    rows = []
    try:
        for values in reader:
            if not any(value.strip() for value in values):
                continue
            if len(values) != len(header):
                raise InvalidArgument.of(
                    "csv", f"line {reader.line_num}: {len(values)} values for {len(header)} columns"
                )
            rows.append(csv_row(dict(zip(header, values, strict=True))))
            if len(rows) > max_rows:
                break
    except csv.Error as error:
        raise InvalidArgument.of("csv", f"line {reader.line_num}: {error}") from None
    return rows


def import_header(names: list[str]) -> list[str]:
    """An exported header read as import columns (date -> spent_on, ...). expense_id is
    the request id (re-importing an export dedupes) unless the file has request_id too."""
    aliases = dict(EXPORT_COLUMN_ALIASES)
    if "request_id" in names:
        aliases.pop("expense_id")
    return [aliases.get(name, name) for name in names]


def csv_row(values: dict[str, str]) -> ledger_pb2.ImportRow:
    values.pop("source", None)  # the ledger's to set: "import"
    path = unsafe_cell(values.pop("category_path", "")).strip()
    # Reporting's export (GET /v1/reports/export) has both: the id, where there is one, wins.
    if path and not values.get("category_id", "").strip():
        values["category_id"] = CATEGORY_PATH_MARK + path
    tags = [
        unsafe_cell(tag) for tag in unsafe_cell(values.pop("tags", "")).split(TAG_SEPARATOR) if tag.strip()
    ]
    text = {name: unsafe_cell(values.pop(name, "")) for name in ("merchant", "note")}
    return ledger_pb2.ImportRow(tags=tags, **text, **values)


def resolve_category_paths(
    rows: list[ledger_pb2.ImportRow], tree: CategoryTree
) -> list[ledger_pb2.ImportRow]:
    """Exported category paths -> ids; an unknown path stays as given (that row is then
    invalid, naming category_id)."""
    index = tree.path_index()
    for row in rows:
        if row.category_id.startswith(CATEGORY_PATH_MARK):
            path = row.category_id.removeprefix(CATEGORY_PATH_MARK)
            row.category_id = index.get(path_key(path), path) if path else ""
    return rows
