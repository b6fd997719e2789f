"""Bank statement rows by column mapping (services/ledger/statements.py), without a mesh:
the shipped mappings load and each reads its bank's shape; amounts, credits, dates and the
request ids derived from the rows; a malformed header line of either CSV reader."""

from __future__ import annotations

import pytest

from services.kit.domain.errors import InvalidArgument
from services.ledger.api import csv_rows
from services.ledger.settings import LedgerSettings
from services.ledger.statements import ColumnMapping, Skipped, load_mappings, statement_rows

MAPPINGS = load_mappings(LedgerSettings().import_mappings_file)

# One debit and one credit per bank, in each bank's own header and date format.
STATEMENTS = {
    "hdfc": "Date,Narration,Chq./Ref.No.,Value Dt,Withdrawal Amt.,Deposit Amt.,Closing Balance\n"
    "02/11/26,UPI-ZOMATO,0001,02/11/26,450.00,,100.00\n03/11/26,SALARY,0002,03/11/26,,900.00,1000.00\n",
    "icici": "S No.,Value Date,Transaction Date,Cheque Number,Transaction Remarks,"
    "Withdrawal Amount (INR ),Deposit Amount (INR ),Balance (INR )\n"
    "1,02/11/2026,02/11/2026,-,UPI/ZOMATO,450.00,0.00,100.00\n2,03/11/2026,03/11/2026,-,SALARY,0.00,900.00,1000\n",
    "sbi": "Txn Date,Value Date,Description,Ref No./Cheque No.,Debit,Credit,Balance\n"
    "2 Nov 2026,2 Nov 2026,TO TRANSFER-UPI/ZOMATO,TRF123,450.00,,100.00\n"
    "3 Nov 2026,3 Nov 2026,BY SALARY,TRF124,,900.00,1000.00\n",
    "debit_credit": "Date,Description,Debit,Credit\n02/11/2026,ZOMATO,450.00,\n03/11/2026,SALARY,,900.00\n",
    "signed_amount": "Date,Description,Amount\n02/11/2026,ZOMATO,450.00\n03/11/2026,SALARY,-900.00\n",
}


@pytest.mark.parametrize("name", sorted(STATEMENTS))
def test_each_shipped_mapping_reads_its_banks_statement(name: str) -> None:
    spent, credit = statement_rows(STATEMENTS[name], MAPPINGS[name], 100)
    assert isinstance(spent, dict) and isinstance(credit, Skipped)
    assert (spent["spent_on"], spent["amount"]) == ("2026-11-02", "450.00")
    assert "ZOMATO" in spent["merchant"]
    assert "credit" in credit.reason


def test_request_ids_follow_the_rows_so_a_repeat_import_dedupes() -> None:
    mapping = MAPPINGS["signed_amount"]
    text = "Date,Description,Amount\n01/11/2026,Tea,10.00\n01/11/2026,Tea,10.00\n02/11/2026,Tea,10.00\n"
    first = [row["request_id"] for row in statement_rows(text, mapping, 100) if isinstance(row, dict)]
    again = [row["request_id"] for row in statement_rows(text, mapping, 100) if isinstance(row, dict)]
    assert first == again and len(set(first)) == 3  # two equal rows are two expenses


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("1,234.50", "1234.50"),
        ("₹ 99.00", "99.00"),
        ("12.00 Dr", "12.00"),
        ("12.00 Cr", None),
        ("(12.00)", None),
        ("0.00", None),
        ("", None),
        ("twelve", "twelve"),  # left as written: the ledger's validation names the amount
    ],
)
def test_amounts(written: str, expected: str | None) -> None:
    text = f'Date,Description,Amount\n02/11/2026,Shop,"{written}"\n'
    [row] = statement_rows(text, MAPPINGS["signed_amount"], 100)
    assert (row["amount"] if isinstance(row, dict) else None) == expected


def test_a_header_after_the_preamble_and_no_header_at_all() -> None:
    mapping = ColumnMapping(date="Day", merchant="Payee", amount="Out")
    rows = statement_rows("Bank of Nowhere\nPeriod,Nov\nDay,Payee,Out\n2026-11-02,Shop,5.00\n", mapping, 10)
    assert [row["merchant"] for row in rows if isinstance(row, dict)] == ["Shop"]
    with pytest.raises(InvalidArgument):
        statement_rows("a,b,c\n1,2,3\n", mapping, 10)
    with pytest.raises(InvalidArgument):
        ColumnMapping(date="Day", amount="Out", debit="Out").check()


def test_a_malformed_header_line_is_the_clients_mistake() -> None:
    """A bare carriage return inside a field stops the csv module on the header line, of a
    statement and of a plain import alike (found by tests/test_api_fuzz_e2e.py: a 500)."""
    for read in (
        lambda: statement_rows("|3$\r\U00074108s", MAPPINGS["icici"], 10),
        lambda: csv_rows('r\rx"y\n', 10),
    ):
        with pytest.raises(InvalidArgument) as raised:
            read()
        assert raised.value.violations[0].field == "csv"
