"""em import's reading of a CSV, without a mesh: which column fills which field of the
rows it sends, and which columns it says it ignores."""

from __future__ import annotations

from pathlib import Path

from services.cli import csvimport


def rows_of(tmp_path: Path, text: str) -> tuple[list[str], list[dict[str, object]]]:
    path = tmp_path / "bank.csv"
    path.write_text(text, encoding="utf-8")
    header, lines = csvimport.read_rows(path)
    sent = [row for chunk in csvimport.chunks(path.name, header, lines) for row in chunk]
    return header, sent


def test_a_date_column_is_the_day_spent_not_today(tmp_path: Path) -> None:
    """What GET /v1/expenses:export writes (and most banks): read as nothing, every row
    would be dated today by the ledger."""
    header, rows = rows_of(
        tmp_path,
        "date,amount,currency,category,merchant,note,tags,source,expense_id\r\n"
        "2026-11-02,450.00,INR,Food & dining,Chai Point,,,manual,01a24dd4-df74-7d99-b0d1-8ba9532c7e69\r\n",
    )
    assert rows[0]["spent_on"] == "2026-11-02"
    assert (rows[0]["amount"], rows[0]["merchant"]) == ("450.00", "Chai Point")
    assert csvimport.ignored_columns(header) == ["category", "source"]


def test_an_exported_row_is_keyed_by_its_expense_id_whatever_the_file_is_called(tmp_path: Path) -> None:
    """The ledger answers a row keyed by one of the user's live expenses as a duplicate:
    an export imported again adds nothing, under any name. Rows without one keep the
    derived id (file name, line, values)."""
    text = (
        "date,amount,expense_id\r\n"
        "2026-11-02,450.00,01a24dd4-df74-7d99-b0d1-8ba9532c7e69\r\n2026-11-03,5,\r\n"
    )
    _, rows = rows_of(tmp_path, text)
    assert rows[0]["request_id"] == "01a24dd4-df74-7d99-b0d1-8ba9532c7e69"
    assert rows[1]["request_id"] == csvimport.row_request_id("bank.csv", 1, ["2026-11-03", "5", ""])
    _, own = rows_of(tmp_path, "amount,request_id,expense_id\n5,mine-1,01a24dd4\n")
    assert own[0]["request_id"] == "mine-1"


def test_spent_on_wins_over_date_and_a_bom_is_no_column_name(tmp_path: Path) -> None:
    header, rows = rows_of(tmp_path, "\ufeffDate,Spent_On,Amount\n2026-01-01,2026-02-02,5\n")
    assert rows[0]["spent_on"] == "2026-02-02"
    assert csvimport.ignored_columns(header) == ["date"]


def test_the_import_columns_are_not_reported_as_ignored(tmp_path: Path) -> None:
    header, rows = rows_of(
        tmp_path, "amount,currency,spent_on,merchant,category_id,note,tags\n5,INR,,x,,,a|b\n"
    )
    assert csvimport.ignored_columns(header) == []
    assert rows[0]["tags"] == ["a", "b"] and "spent_on" not in rows[0]
