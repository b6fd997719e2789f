"""Expenses, categories and their rules: update masks, list ordering and
cursors, the category tree, audit snapshots. Plain Python: no gRPC, no SQL."""

from __future__ import annotations

import base64
import binascii
import csv
import hashlib
import hmac
import io
import json
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, NamedTuple

from services.kit.config.settings import REPO_ROOT
from services.kit.domain import etags
from services.kit.domain.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
)
from services.kit.domain.money import NOT_A_DECIMAL, MoneyError, currencies, format_amount

SOURCES = ("manual", "sms", "recurring", "import")
# A category's path in exports and imports: "Food & dining/Cafes". A "/" or "\\" inside a
# name is escaped with "\\" ("Tea\\/Coffee" is the one category "Tea/Coffee"), so a name
# with a slash never reads as a parent and child; names without either export as before.
CATEGORY_PATH_SEPARATOR = "/"
CATEGORY_PATH_ESCAPE = "\\"
# Parent links are checked on write; a bound keeps a corrupt cycle from looping.
MAX_PATH_DEPTH = 32
# The columns ExportExpenses writes, in order; ImportExpenses reads them back.
EXPORT_COLUMNS = (
    "date",
    "amount",
    "currency",
    "category",
    "merchant",
    "note",
    "tags",
    "source",
    "expense_id",
)
EXPENSE_FIELDS = ("amount", "currency", "spent_on", "category_id", "merchant", "note", "tags")
CATEGORY_FIELDS = ("name", "parent_id", "color", "icon")
# Amounts in every currency compare as exact decimals at this many places (the
# largest ISO 4217 exponent), so one indexed column orders and filters them all.
VALUE_EXPONENT = 4
BIGINT_MAX = 2**63 - 1
_DECIMAL = re.compile(r"(?P<whole>[0-9]{1,30})(?:\.(?P<fraction>[0-9]{1,30}))?")
# Inside the signed body: a token of another layout fails even under the same key.
PAGE_TOKEN_VERSION = 2
ORDER_FIELDS = ("spent_on", "amount")
DEFAULT_ORDER = "spent_on desc"


class Expense(NamedTuple):
    """Immutable. A named tuple rather than a frozen dataclass: a list page builds
    fifty per call, and a frozen dataclass's __init__ costs ~4 µs each."""

    expense_id: str
    user_id: str
    amount_minor: int
    currency: str
    spent_on: date
    category_id: str | None
    merchant: str
    note: str
    tags: tuple[str, ...]
    source: str
    version: int
    create_time: datetime
    update_time: datetime
    delete_time: datetime | None = None

    @property
    def etag(self) -> str:
        return etag_of(self.version)

    @property
    def amount(self) -> str:
        return format_amount(self.amount_minor, self.currency)

    @property
    def amount_value(self) -> int:
        return amount_value(self.amount_minor, self.currency)

    @property
    def search_text(self) -> str:
        return search_text(self.merchant, self.note, self.tags)


@dataclass(frozen=True)
class Category:
    category_id: str
    user_id: str
    name: str
    parent_id: str | None
    color: str
    icon: str
    create_time: datetime
    update_time: datetime

    @property
    def name_key(self) -> str:
        return name_key(self.name)


@dataclass(frozen=True)
class LedgerEntry:
    """One append-only audit record: the state before and after a change."""

    expense_id: str
    user_id: str
    version: int
    action: str  # "create", "update" or "delete"
    actor: str
    time: datetime
    before: dict[str, Any] | None
    after: dict[str, Any] | None


@dataclass
class RowOutcome:
    """What became of one import row."""

    status: str  # "created", "duplicate", "invalid" or "skipped" (a statement's row that is no expense)
    expense_id: str = ""
    errors: list[FieldViolation] = field(default_factory=list)


def etag_of(version: int) -> str:
    return f'"{version}"'


def etag_matches(etag: str, version: int) -> bool:
    """Weak or strong form of the same version, quoted or bare (kit/domain/etags.py)."""
    return etags.etag_matches(etag, etag_of(version))


def amount_value(amount_minor: int, currency: str) -> int:
    return amount_minor * 10 ** (VALUE_EXPONENT - currencies().exponent(currency))


def decimal_value(text: str) -> int:
    """A list filter bound ("12.5") in units of 10^-VALUE_EXPONENT; a bound beyond
    any storable amount is lowered to the largest value a BIGINT holds."""
    match = _DECIMAL.fullmatch(text.strip())
    if match is None:
        raise MoneyError(NOT_A_DECIMAL)
    fraction = (match["fraction"] or "").rstrip("0")
    if len(fraction) > VALUE_EXPONENT:
        raise MoneyError(f"must have at most {VALUE_EXPONENT} decimal places")
    value = int(match["whole"]) * 10**VALUE_EXPONENT + int(fraction.ljust(VALUE_EXPONENT, "0"))
    return min(value, BIGINT_MAX)


def search_text(merchant: str, note: str, tags: Sequence[str] = ()) -> str:
    """What `q` searches on the row itself, one trigram index over it all: merchant and
    note, case-folded as the query is, and the tags as the tag filter keys them (a line
    each). Category names are matched through the category instead (a rename would
    otherwise rewrite every expense of the category)."""
    return "\n".join([f"{merchant}\n{note}".lower(), *(tag_key(tag) for tag in tags)])


def escape_path_name(name: str) -> str:
    return name.replace(CATEGORY_PATH_ESCAPE, CATEGORY_PATH_ESCAPE * 2).replace(
        CATEGORY_PATH_SEPARATOR, CATEGORY_PATH_ESCAPE + CATEGORY_PATH_SEPARATOR
    )


def split_path(path: str) -> list[str]:
    """A path's names, top level first: an escape takes the "/" or "\\" after it as part of
    the name; before any other character (or at the end) it is a plain backslash, so a
    name with one, exported before escaping existed, still reads back."""
    names, current, index = [], [], 0
    while index < len(path):
        char, following = path[index], path[index + 1 : index + 2]
        if char == CATEGORY_PATH_ESCAPE and following in (CATEGORY_PATH_ESCAPE, CATEGORY_PATH_SEPARATOR):
            current.append(following)
            index += 2
            continue
        if char == CATEGORY_PATH_SEPARATOR:
            names.append("".join(current))
            current = []
        else:
            current.append(char)
        index += 1
    names.append("".join(current))
    return names


def path_key(path: str) -> tuple[str, ...]:
    """A category path compared as its names are (name_key per level)."""
    return tuple(name_key(name) for name in split_path(path))


# Cells starting with these are formulas to spreadsheet programs (OWASP CSV injection):
# the export prefixes them with "'", the import takes it off again.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(text: str) -> str:
    return f"'{text}" if text.startswith(FORMULA_PREFIXES) else text


def unsafe_cell(text: str) -> str:
    return text[1:] if text.startswith("'") and text[1:].startswith(FORMULA_PREFIXES) else text


def export_csv(tree: CategoryTree, batch: Iterable[Expense], tag_separator: str) -> str:
    """RFC 4180 rows of EXPORT_COLUMNS (no header) for a batch of expenses."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    for expense in batch:
        writer.writerow(
            (
                expense.spent_on.isoformat(),
                expense.amount,
                expense.currency,
                safe_cell(tree.path(expense.category_id)),
                safe_cell(expense.merchant),
                safe_cell(expense.note),
                safe_cell(tag_separator.join(expense.tags)),
                expense.source,
                expense.expense_id,
            )
        )
    return buffer.getvalue()


def export_header() -> str:
    return ",".join(EXPORT_COLUMNS) + "\r\n"


def name_key(name: str) -> str:
    return " ".join(name.split()).casefold()


def tag_key(tag: str) -> str:
    return tag.casefold()


# ----------------------------------------------------------------- expenses


def with_money_pair(current: Expense, requested: Mapping[str, Any]) -> dict[str, Any]:
    """An amount only means something in a currency: a change to either one is
    validated with the other, so a new currency must fit the kept amount exactly."""
    data = dict(requested)
    if "currency" in data and "amount" not in data:
        data["amount"] = current.amount
    if "amount" in data and "currency" not in data:
        data["currency"] = current.currency
    return data


def apply_expense_changes(current: Expense, changes: Mapping[str, Any], now: datetime) -> Expense:
    return current._replace(**changes, version=current.version + 1, update_time=now)


def snapshot(expense: Expense) -> dict[str, Any]:
    """The audit form of an expense: JSON, amounts exact in minor units."""
    return {
        "expense_id": expense.expense_id,
        "amount_minor": expense.amount_minor,
        "currency": expense.currency,
        "spent_on": expense.spent_on.isoformat(),
        "category_id": expense.category_id or "",
        "merchant": expense.merchant,
        "note": expense.note,
        "tags": list(expense.tags),
        "source": expense.source,
        "version": expense.version,
        "create_time": expense.create_time.isoformat(),
        "update_time": expense.update_time.isoformat(),
    }


def from_snapshot(data: Mapping[str, Any], user_id: str) -> Expense:
    return Expense(
        expense_id=data["expense_id"],
        user_id=user_id,
        amount_minor=int(data["amount_minor"]),
        currency=data["currency"],
        spent_on=date.fromisoformat(data["spent_on"]),
        category_id=data["category_id"] or None,
        merchant=data["merchant"],
        note=data["note"],
        tags=tuple(data["tags"]),
        source=data["source"],
        version=int(data["version"]),
        create_time=datetime.fromisoformat(data["create_time"]),
        update_time=datetime.fromisoformat(data["update_time"]),
    )


def entry(
    action: str, actor: str, now: datetime, before: Expense | None, after: Expense | None
) -> LedgerEntry:
    """The audit record of one change; a delete's version is the one after the deleted state."""
    subject = after or before
    if subject is None:
        raise ValueError("an entry needs a before or an after state")
    return LedgerEntry(
        expense_id=subject.expense_id,
        user_id=subject.user_id,
        version=after.version if after is not None else subject.version + 1,
        action=action,
        actor=actor,
        time=now,
        before=None if before is None else snapshot(before),
        after=None if after is None else snapshot(after),
    )


# ------------------------------------------------------------ listing


@dataclass(frozen=True)
class Ordering:
    field: str  # "spent_on" or "amount"
    descending: bool

    @property
    def text(self) -> str:
        return f"{self.field} {'desc' if self.descending else 'asc'}"

    def key_of(self, expense: Expense) -> str:
        return expense.spent_on.isoformat() if self.field == "spent_on" else str(expense.amount_value)


def parse_ordering(text: str) -> Ordering:
    """AIP-132 order_by: a field, ascending unless followed by "desc"."""
    words = (text.strip() or DEFAULT_ORDER).split()
    if len(words) in (1, 2) and words[0] in ORDER_FIELDS and words[1:] in ([], ["asc"], ["desc"]):
        return Ordering(words[0], words[1:] == ["desc"])
    raise InvalidArgument.of(
        "order_by", 'must be "spent_on" or "amount", optionally followed by "asc" or "desc"'
    )


@dataclass(frozen=True)
class ExpenseFilter:
    from_date: date | None = None
    to_date: date | None = None
    # The category asked for and its descendants; None when not filtering by category.
    category_ids: tuple[str, ...] | None = None
    text: str = ""
    min_value: int | None = None
    max_value: int | None = None
    tag_key: str = ""
    currency: str = ""


@dataclass(frozen=True)
class Count:
    """Matching rows counted up to a cap: `size` is exact unless `capped`, when more match
    (AIP-158 lets total_size be an estimate; this one says which it is)."""

    size: int
    capped: bool

    @classmethod
    def of(cls, counted: int, cap: int) -> Count:
        """From a count of at most cap + 1 rows: the one past the cap only says there are more."""
        return cls(min(counted, cap), counted > cap)


@dataclass(frozen=True)
class Cursor:
    """Position after the last expense of a page: its order key and id."""

    key: str
    expense_id: str

    def key_value(self, ordering: Ordering) -> date | int:
        """ValueError when the key is not a date or an amount value a BIGINT holds."""
        if ordering.field == "spent_on":
            return date.fromisoformat(self.key)
        if not (self.key.isascii() and self.key.isdigit()) or int(self.key) > BIGINT_MAX:
            raise ValueError("not an amount value")
        return int(self.key)


class PageTokens:
    """Page tokens (AIP-158): a keyset cursor and an HMAC-SHA256 of it and of the query it
    continues, so a client can neither make up a position nor carry one to another query.
    The key is set up once; each token costs a copy of the keyed state and two updates."""

    def __init__(self, key: bytes) -> None:
        self._keyed = hmac.new(key, digestmod=hashlib.sha256)

    def encode(self, cursor: Cursor, query: bytes) -> str:
        body = _base64(json.dumps([PAGE_TOKEN_VERSION, cursor.key, cursor.expense_id]).encode())
        return f"{body}.{_base64(self._signature(body, query))}"

    def decode(self, token: str, query: bytes, ordering: Ordering) -> Cursor:
        """Refuses anything this service did not issue for the same query, or that holds
        values out of range (which only a leaked key could sign)."""
        invalid = InvalidArgument.of("page_token", "invalid page token, or issued for a different query")
        body, _, signature = token.partition(".")
        try:
            if not hmac.compare_digest(_unbase64(signature), self._signature(body, query)):
                raise invalid
            version, key, expense_id = json.loads(_unbase64(body))
            if version != PAGE_TOKEN_VERSION or not isinstance(key, str) or not isinstance(expense_id, str):
                raise invalid
            cursor = Cursor(key, expense_id)
            cursor.key_value(ordering)
        except (ValueError, TypeError, binascii.Error):
            raise invalid from None
        if len(cursor.expense_id) > 36:
            raise invalid
        return cursor

    def _signature(self, body: str, query: bytes) -> bytes:
        mac = self._keyed.copy()
        # NUL is in neither part (the query is JSON, the body base64): the split is unambiguous.
        mac.update(query + b"\0")
        mac.update(body.encode())
        return mac.digest()


def _base64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unbase64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# ---------------------------------------------------------- categories


@dataclass(frozen=True)
class DefaultCategory:
    name: str
    color: str
    icon: str


def load_default_categories(path: Path) -> tuple[DefaultCategory, ...]:
    """The starter set from its data file (relative paths are from the repo root)."""
    full = path if path.is_absolute() else REPO_ROOT / path
    data = tomllib.loads(full.read_text())
    return tuple(
        DefaultCategory(item["name"], item.get("color", ""), item.get("icon", ""))
        for item in data["categories"]
    )


@dataclass
class CategoryTree:
    """One user's categories, for the rules that span several of them."""

    categories: dict[str, Category]
    children: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, categories: Iterable[Category]) -> CategoryTree:
        by_id = {category.category_id: category for category in categories}
        children: dict[str, list[str]] = {}
        for category in by_id.values():
            if category.parent_id:
                children.setdefault(category.parent_id, []).append(category.category_id)
        return cls(by_id, children)

    def get(self, category_id: str) -> Category:
        category = self.categories.get(category_id)
        if category is None:
            raise NotFound("category", category_id)
        return category

    def subtree(self, category_id: str) -> list[str]:
        """The category and every descendant."""
        found, pending = [], [category_id]
        while pending:
            current = pending.pop()
            found.append(current)
            pending.extend(self.children.get(current, ()))
        return found

    def path(self, category_id: str | None) -> str:
        """ "Food & dining/Cafes": the names from the top level down ("" for none), each
        escaped (escape_path_name)."""
        return CATEGORY_PATH_SEPARATOR.join(escape_path_name(name) for name in self._names(category_id))

    def _names(self, category_id: str | None) -> list[str]:
        names: list[str] = []
        current = self.categories.get(category_id or "")
        while current is not None and len(names) < MAX_PATH_DEPTH:
            names.append(current.name)
            current = self.categories.get(current.parent_id or "")
        return names[::-1]

    def path_index(self) -> dict[tuple[str, ...], str]:
        """path_key(path) -> category id, for every category. A file exported before names
        were escaped wrote "Tea/Coffee" for the category of that name: that key finds it
        too, unless it is also a real parent and child's, or another such name's."""
        exact = {tuple(name_key(name) for name in self._names(c)): c for c in self.categories}
        legacy: dict[tuple[str, ...], list[str]] = {}
        for category_id in self.categories:
            unescaped = CATEGORY_PATH_SEPARATOR.join(self._names(category_id))
            legacy.setdefault(tuple(map(name_key, unescaped.split(CATEGORY_PATH_SEPARATOR))), []).append(
                category_id
            )
        unambiguous = {key: ids[0] for key, ids in legacy.items() if len(ids) == 1 and key not in exact}
        return {**unambiguous, **exact}

    def depth(self, category_id: str) -> int:
        """1 for a top-level category."""
        depth, current = 1, self.categories[category_id]
        while current.parent_id and current.parent_id in self.categories:
            depth += 1
            current = self.categories[current.parent_id]
        return depth

    def height(self, category_id: str) -> int:
        """Levels in the subtree rooted here (1 for a leaf)."""
        below = self.children.get(category_id, ())
        return 1 + max((self.height(child) for child in below), default=0)

    def check_name_free(self, name: str, except_id: str = "") -> None:
        key = name_key(name)
        for category in self.categories.values():
            if category.name_key == key and category.category_id != except_id:
                raise AlreadyExists(f"a category named {category.name!r} exists already")

    def check_parent(self, category_id: str, parent_id: str | None, max_depth: int, field_name: str) -> None:
        """Moving category_id (or a new one, "") under parent_id keeps the tree
        acyclic and no deeper than max_depth."""
        if parent_id is None:
            if category_id and self.height(category_id) > max_depth:
                raise InvalidArgument.of(field_name, f"categories nest at most {max_depth} levels deep")
            return
        self.get(parent_id)
        if category_id and parent_id in self.subtree(category_id):
            raise InvalidArgument.of(field_name, "a category cannot be its own ancestor")
        height = self.height(category_id) if category_id else 1
        if self.depth(parent_id) + height > max_depth:
            raise InvalidArgument.of(field_name, f"categories nest at most {max_depth} levels deep")

    def check_reassignment(self, category_id: str, reassign_to: str, max_depth: int) -> None:
        """The deleted category's expenses and children may move to reassign_to."""
        self.get(reassign_to)
        if reassign_to in self.subtree(category_id):
            raise InvalidArgument.of(
                "reassign_to", "must not be the deleted category or one of its descendants"
            )
        for child in self.children.get(category_id, ()):
            if self.depth(reassign_to) + self.height(child) > max_depth:
                raise FailedPrecondition(
                    f"moving the subcategories under the new parent would nest deeper than {max_depth} levels"
                )
