"""CSV import in chunks, resumable: each row's request id is its own (a request_id or
expense_id column) or comes from the file's name, the row's position and its values (the
dashboard derives the same ids for a file without such a column), so a second run after
an interruption adds only what the first did not."""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# What an import row may carry (the ledger's ImportRow); other columns are ignored.
ROW_FIELDS = ("amount", "currency", "spent_on", "category_id", "merchant", "note", "tags")
# Other names of those columns: `date` is what GET /v1/expenses:export (and most banks)
# call the day; read as something else, every row would be dated today.
COLUMN_ALIASES = {"date": "spent_on"}
TAG_SEPARATOR = "|"
# A row's own request id, first found first: an export's expense_id is one (the ledger
# answers a row keyed by one of the user's live expenses as a duplicate), so an export
# imported again, under any file name, adds nothing.
ID_COLUMNS = ("request_id", "expense_id")
CHUNK_ROWS = 200


def row_request_id(file_name: str, index: int, values: list[str]) -> str:
    text = f"{file_name}\0{index}\0{chr(1).join(values)}"
    return "csv-" + hashlib.sha256(text.encode()).hexdigest()[:32]


def read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    reader = csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig")))
    rows = [row for row in reader if any(value.strip() for value in row)]
    if not rows:
        return [], []
    return column_names(rows[0]), rows[1:]


def column_names(header: list[str]) -> list[str]:
    """The header as ROW_FIELDS names (aliases read as the field they stand for, unless
    the file has that field too); anything else stays as it is, to be ignored."""
    names = [name.strip().lower() for name in header]
    return [
        COLUMN_ALIASES[name] if name in COLUMN_ALIASES and COLUMN_ALIASES[name] not in names else name
        for name in names
    ]


def ignored_columns(header: list[str]) -> list[str]:
    return [name for name in header if name not in ROW_FIELDS and name not in ID_COLUMNS]


def import_row(file_name: str, index: int, header: list[str], values: list[str]) -> dict[str, Any]:
    cells = dict(zip(header, (value.strip() for value in values), strict=False))
    own = next((cells[name] for name in ID_COLUMNS if cells.get(name)), "")
    row: dict[str, Any] = {"request_id": own or row_request_id(file_name, index, values)}
    for name, value in zip(header, values, strict=False):
        if name == "tags":
            row["tags"] = [tag.strip() for tag in value.split(TAG_SEPARATOR) if tag.strip()]
        elif name in ROW_FIELDS and value.strip():
            row[name] = value.strip()
    return row


def chunks(file_name: str, header: list[str], lines: list[list[str]]) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(lines), CHUNK_ROWS):
        yield [
            import_row(file_name, start + offset, header, values)
            for offset, values in enumerate(lines[start : start + CHUNK_ROWS])
        ]


@dataclass
class ImportTotals:
    created: int = 0
    duplicate: int = 0
    invalid: int = 0
    problems: list[str] = field(default_factory=list)

    def add(self, answer: dict[str, Any], first_line: int) -> None:
        self.created += answer.get("created_count", 0)
        self.duplicate += answer.get("duplicate_count", 0)
        self.invalid += answer.get("invalid_count", 0)
        for result in answer.get("results", []):
            if result.get("status") == "invalid":
                errors = "; ".join(f"{e['field']}: {e['description']}" for e in result.get("errors", []))
                # +1 for the header line, +1 for counting from one.
                self.problems.append(f"line {first_line + result.get('index', 0) + 2}: {errors}")


def run_import(
    path: Path, send: Callable[[list[dict[str, Any]]], dict[str, Any]], advance: Callable[[int], None]
) -> ImportTotals:
    header, lines = read_rows(path)
    totals = ImportTotals()
    first = 0
    for chunk in chunks(path.name, header, lines):
        totals.add(send(chunk), first)
        first += len(chunk)
        advance(len(chunk))
    return totals
