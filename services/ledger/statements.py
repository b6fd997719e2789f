"""Bank statement CSVs read as import rows, by a column mapping: one of
config/import_mappings.toml (HDFC, ICICI, SBI, generic debit/credit or signed-amount
exports), a client's own, or a client's over a named one.

Dates come in the bank's formats (dd/mm/yyyy and the like), amounts as debit and credit
columns or one signed column, the narration becomes the merchant. A row that is no
expense (money in, a blank or closing line) is skipped and said so. Each row's request id
is derived from its cells and how often the same cells came before in the file, so the
same statement imported twice creates nothing twice."""

from __future__ import annotations

import csv
import hashlib
import io
import re
import tomllib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, fields, replace
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

from services.kit.config.settings import REPO_ROOT
from services.kit.domain.errors import InvalidArgument

# A statement's preamble (account holder, period) comes before its header line.
HEADER_SEARCH_LINES = 30
DEFAULT_DATE_FORMATS = ("%d/%m/%Y", "%Y-%m-%d")
# "1,234.50 Dr" / "1,234.50 Cr": one amount column with the direction after it.
_DIRECTION = re.compile(r"^(?P<amount>.*?)\s*(?P<direction>dr|cr)\.?$", re.IGNORECASE)
_NOT_A_NUMBER = re.compile(r"[,\s₹]|^inr|inr$", re.IGNORECASE)


@dataclass(frozen=True)
class ColumnMapping:
    """Which column holds what (names as in the header); empty: not mapped."""

    date: str = ""
    date_formats: tuple[str, ...] = ()
    amount: str = ""
    debit: str = ""
    credit: str = ""
    merchant: str = ""
    note: str = ""
    reference: str = ""
    currency: str = ""
    currency_column: str = ""
    label: str = ""

    def over(self, base: ColumnMapping) -> ColumnMapping:
        """This mapping's fields where set, the base's elsewhere."""
        return replace(base, **{f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name)})

    def columns(self) -> dict[str, str]:
        """The mapped columns by role."""
        roles = ("date", "amount", "debit", "credit", "merchant", "note", "reference", "currency_column")
        return {role: getattr(self, role) for role in roles if getattr(self, role)}

    def check(self) -> None:
        if not self.date:
            raise InvalidArgument.of("column_mapping.date", "name the column holding the date")
        if bool(self.amount) == bool(self.debit or self.credit):
            raise InvalidArgument.of(
                "column_mapping.amount", "name an amount column, or debit and credit columns"
            )


@dataclass(frozen=True)
class Skipped:
    """A row read but not imported: which column says why, and why."""

    column: str
    reason: str


def load_mappings(path: Path) -> dict[str, ColumnMapping]:
    """The named mappings of the data file (relative paths are from the repo root)."""
    full = path if path.is_absolute() else REPO_ROOT / path
    data = tomllib.loads(full.read_text())
    mappings = {}
    for name, values in data.get("mappings", {}).items():
        mapping = ColumnMapping(**{**values, "date_formats": tuple(values.get("date_formats", ()))})
        mapping.check()
        mappings[name] = mapping
    return mappings


def statement_rows(text: str, mapping: ColumnMapping, max_rows: int) -> list[dict[str, str] | Skipped]:
    """The statement's data rows (blank lines left out), each the fields of an import row
    or why it is skipped; reads at most max_rows + 1 rows."""
    mapping.check()
    reader = csv.reader(io.StringIO(text))
    rows: list[dict[str, str] | Skipped] = []
    seen: Counter[tuple[str, ...]] = Counter()
    # The header search reads lines too: a malformed one there is the client's as well.
    try:
        header = _header(reader, mapping)
        positions = {role: header[_key(name)] for role, name in mapping.columns().items()}
        for cells in _data_lines(reader):
            key = tuple(cell.strip() for cell in cells)
            seen[key] += 1
            rows.append(_row(cells, positions, mapping, _request_id(key, seen[key])))
            if len(rows) > max_rows:
                break
    except csv.Error as error:
        raise InvalidArgument.of("csv", f"line {reader.line_num}: {error}") from None
    return rows


def _key(name: str) -> str:
    """Header names compared without case, spaces or punctuation ("Withdrawal Amt." ~ "withdrawal amt")."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _header(reader: Iterator[list[str]], mapping: ColumnMapping) -> dict[str, int]:
    wanted = {_key(name) for name in mapping.columns().values()}
    for _, cells in zip(range(HEADER_SEARCH_LINES), reader, strict=False):
        names = {_key(cell): index for index, cell in reversed(list(enumerate(cells)))}
        if wanted <= names.keys():
            return names
    columns = ", ".join(sorted(mapping.columns().values()))
    raise InvalidArgument.of(
        "csv", f"no header line naming {columns} in the first {HEADER_SEARCH_LINES} lines"
    )


def _data_lines(reader: Iterator[list[str]]) -> Iterator[list[str]]:
    for cells in reader:
        if any(cell.strip() for cell in cells):
            yield cells


def _request_id(cells: tuple[str, ...], occurrence: int) -> str:
    digest = hashlib.sha256("\x1f".join(cells).encode()).hexdigest()[:40]
    return f"stmt-{digest}-{occurrence}"


def _row(
    cells: list[str], positions: dict[str, int], mapping: ColumnMapping, request_id: str
) -> dict[str, str] | Skipped:
    if len(cells) <= max(positions.values()):
        return Skipped(mapping.date, "not a transaction line (too few columns)")
    value = {role: cells[index].strip() for role, index in positions.items()}
    if not value["date"]:
        return Skipped(mapping.date, "not a transaction line (no date)")
    spent = _spent(value, mapping)
    if isinstance(spent, Skipped):
        return spent
    note = " ".join(part for part in (value.get("note", ""), _reference(value.get("reference", ""))) if part)
    return {
        "request_id": request_id,
        "amount": spent,
        "currency": (value.get("currency_column") or mapping.currency).upper(),
        "spent_on": _date(value["date"], mapping.date_formats or DEFAULT_DATE_FORMATS),
        "merchant": " ".join(value.get("merchant", "").split()),
        "note": note,
    }


def _spent(value: dict[str, str], mapping: ColumnMapping) -> str | Skipped:
    """The amount spent, as a decimal string (left as written when it is no number: the
    row is then invalid, naming the amount); a credit or an empty row is skipped."""
    if mapping.amount:
        written = value["amount"]
        direction = _DIRECTION.match(written)
        if direction:
            written = direction["amount"]
            if direction["direction"].lower() == "cr":
                return Skipped(mapping.amount, "a credit (money in), not an expense")
        amount = _number(written)
        if amount is None:
            return written or Skipped(mapping.amount, "no amount")
        if amount < 0 or written.startswith("("):
            return Skipped(mapping.amount, "a credit (money in), not an expense")
        return _plain(written) if amount else Skipped(mapping.amount, "no amount")
    debit, credit = value.get("debit", ""), value.get("credit", "")
    debit_amount, credit_amount = _number(debit), _number(credit)
    if debit and debit_amount is None:
        return debit
    if debit_amount:
        return _plain(debit)
    if credit_amount:
        return Skipped(mapping.credit, "a credit (money in), not an expense")
    return Skipped(mapping.debit or mapping.credit, "no amount")


def _number(written: str) -> Decimal | None:
    try:
        return Decimal(_plain(written).strip("()")) if written else None
    except InvalidOperation:
        return None


def _plain(written: str) -> str:
    """ "1,234.50" -> "1234.50" (thousands separators, spaces and the rupee sign go)."""
    return _NOT_A_NUMBER.sub("", written)


def _date(written: str, formats: tuple[str, ...]) -> str:
    """ISO 8601; left as written when no format fits (the row is then invalid, naming spent_on)."""
    for form in formats:
        try:
            return datetime.strptime(written, form).date().isoformat()
        except ValueError:
            continue
    return written


def _reference(reference: str) -> str:
    return f"ref {reference}" if reference and set(reference) != {"0"} else ""
