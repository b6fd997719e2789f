"""Export and import through Envoy on a whole SQLite mesh (issue 18, item 6): the export is
a CSV download (google.api.HttpBody) of any date range with notes, tags and category
paths; importing it into another account recreates the same rows; importing it back into
the same account changes nothing; the second export equals the first but for the ids and
the source, which are the ledger's."""

from __future__ import annotations

import csv
import io
import secrets
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.mesh import Mesh

pytestmark = pytest.mark.e2e
PASSWORD = "violet-harbor-tune-42-export"
HEADER = "date,amount,currency,category,merchant,note,tags,source,expense_id"


@pytest.fixture
async def http(mesh_sqlite: Mesh) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=mesh_sqlite.base_url, timeout=30, trust_env=False) as client:
        yield client


async def sign_up(http: httpx.AsyncClient) -> dict[str, str]:
    body = {"email": f"export.{secrets.token_hex(6)}@example.org", "password": PASSWORD, "display_name": "E"}
    answer = await http.post("/v1/auth/signup", json=body)
    assert answer.status_code == 200, answer.text
    headers = {"authorization": f"Bearer {answer.json()['access_token']}"}
    categories = (await http.get("/v1/categories", headers=headers)).json()["categories"]
    food = next(c["category_id"] for c in categories if c["name"] == "Food & dining")
    cafes = await http.post("/v1/categories", json={"name": "Cafes", "parent_id": food}, headers=headers)
    assert cafes.status_code == 200, cafes.text
    headers["cafes"] = cafes.json()["category_id"]
    # A name whose slash would read as Food & dining > Cafes in an unescaped path.
    slash = await http.post("/v1/categories", json={"name": "Food & dining/Cafes"}, headers=headers)
    assert slash.status_code == 200, slash.text
    headers["slash"] = slash.json()["category_id"]
    return headers


def without_ledger_columns(text: str) -> list[list[str]]:
    """Rows minus source and expense_id (the ledger's own)."""
    return [row[:7] for row in csv.reader(io.StringIO(text))]


async def test_export_import_export(http: httpx.AsyncClient) -> None:
    owner = await sign_up(http)
    cafes, slash = owner.pop("cafes"), owner.pop("slash")
    spending = [
        {
            "amount": "4.50",
            "spent_on": "2026-01-11",
            "category_id": cafes,
            "merchant": "Bean There",
            "note": 'flat white, "large"\nsecond line',
            "tags": ["work", "daily"],
        },
        {"amount": "12000.00", "spent_on": "2026-01-31", "merchant": "Air Lines", "note": "=1+1"},
        {
            "amount": "300",
            "currency": "JPY",
            "spent_on": "2026-02-01",
            "merchant": "Konbini",
            "tags": ["trip"],
        },
        {"amount": "7.00", "spent_on": "2025-12-31", "merchant": "Out of range"},
        {"amount": "2.00", "spent_on": "2026-03-01", "merchant": "Slash Cafe", "category_id": slash},
    ]
    for fields in spending:
        created = await http.post(
            "/v1/expenses",
            json={"request_id": secrets.token_hex(8), "currency": "INR", **fields},
            headers=owner,
        )
        assert created.status_code == 200, created.text

    path = "/v1/expenses:export?from=2026-01-01&to=2026-12-31&format=csv"
    exported = await http.get(path, headers={**owner, "accept": "text/csv"})
    assert exported.status_code == 200, exported.text
    assert exported.headers["content-type"] == "text/csv; charset=utf-8"
    assert (
        exported.headers["content-disposition"] == 'attachment; filename="expenses-2026-01-01-2026-12-31.csv"'
    )
    text = exported.text
    lines = list(csv.reader(io.StringIO(text)))
    assert ",".join(lines[0]) == HEADER
    assert [row[0] for row in lines[1:]] == ["2026-01-11", "2026-01-31", "2026-02-01", "2026-03-01"]
    assert lines[4][3] == "Food & dining\\/Cafes"
    assert lines[1][3:7] == [
        "Food & dining/Cafes",
        "Bean There",
        'flat white, "large"\nsecond line',
        "work|daily",
    ]
    assert lines[2][5] == "'=1+1"  # a formula to a spreadsheet: quoted

    other = await sign_up(http)
    ids = {"cafes": other.pop("cafes"), "slash": other.pop("slash")}
    imported = await http.post("/v1/expenses:import", json={"csv": text}, headers=other)
    assert imported.status_code == 200, imported.text
    assert imported.json()["created_count"] == 4, imported.json()
    again = await http.get(path, headers={**other, "accept": "text/csv"})
    assert without_ledger_columns(again.text) == without_ledger_columns(text)
    listed = (await http.get("/v1/expenses", headers=other)).json()["expenses"]
    placed = {e["merchant"]: e.get("category_id", "") for e in listed}
    assert (placed["Bean There"], placed["Slash Cafe"]) == (ids["cafes"], ids["slash"])

    # Read back into the same account: every row is its own expense already.
    back = await http.post("/v1/expenses:import", json={"csv": text}, headers=owner)
    assert back.status_code == 200, back.text
    assert back.json()["duplicate_count"] == 4 and back.json()["created_count"] == 0
    assert (await http.get(path, headers=owner)).text == text  # byte-identical


async def test_a_bad_export_range_names_the_field(http: httpx.AsyncClient) -> None:
    owner = await sign_up(http)
    del owner["cafes"], owner["slash"]
    refused = await http.get("/v1/expenses:export?from=2026-02-01&to=2026-01-01", headers=owner)
    assert refused.status_code == 400, refused.text
    assert refused.json()["details"][0]["field_violations"][0]["field"] == "to"


# An HDFC statement as its CSV export writes it: account details before the header, dates
# dd/mm/yy, debit and credit columns with thousands separators, a closing line.
HDFC = """HDFC BANK Ltd.,,,,,,
Account No :,50100012345678,,,,,
Date,Narration,Chq./Ref.No.,Value Dt,Withdrawal Amt.,Deposit Amt.,Closing Balance
02/11/26,UPI-SWIGGY-SWIGGY8@YBL-4711,000000431,02/11/26,"1,249.50",,"98,750.50"
03/11/26,NEFT CR-SALARY ACME,N30012,03/11/26,,"85,000.00","183,750.50"
05/11/26,POS 4321 BIG BAZAAR,000000432,05/11/26,612.00,,"183,138.50"
31/13/26,POS 4321 BAD DATE,000000433,31/13/26,10.00,,"183,128.50"
,,,,,,
STATEMENT SUMMARY :-,,,,,,
"""


async def test_a_bank_statement_imports_by_a_named_mapping_once(http: httpx.AsyncClient) -> None:
    headers = await sign_up(http)
    del headers["cafes"], headers["slash"]
    body = {"csv": HDFC, "mapping": "hdfc"}
    answer = await http.post("/v1/expenses:import", json=body, headers=headers)
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [r["status"] for r in results] == ["created", "skipped", "created", "invalid", "skipped"]
    assert results[1]["errors"][0]["field"] == "Deposit Amt."
    assert results[3]["errors"][0]["field"] == "spent_on"
    listed = (await http.get("/v1/expenses?order_by=spent_on", headers=headers)).json()["expenses"]
    got = [(e["spent_on"], e["amount"], e["currency"], e["merchant"], e["note"]) for e in listed]
    assert got == [
        ("2026-11-02", "1249.50", "INR", "UPI-SWIGGY-SWIGGY8@YBL-4711", "ref 000000431"),
        ("2026-11-05", "612.00", "INR", "POS 4321 BIG BAZAAR", "ref 000000432"),
    ]
    again = (await http.post("/v1/expenses:import", json=body, headers=headers)).json()
    assert (again.get("created_count", 0), again["duplicate_count"], again["skipped_count"]) == (0, 2, 2)


async def test_a_client_maps_its_own_columns_and_bad_mappings_are_400s(http: httpx.AsyncClient) -> None:
    headers = await sign_up(http)
    del headers["cafes"], headers["slash"]
    text = "When;What;Money\n"  # a semicolon file is not CSV: its one column names none of them
    mapping = {"date": "Txn Day", "merchant": "Payee", "amount": "Amount (USD)", "currency": "USD"}
    own = "Txn Day,Payee,Amount (USD)\n2026-10-04,Coffee Shop,-3.00\n2026-10-05,Book Store,18.25 Dr\n"
    body = {"csv": own, "column_mapping": {**mapping, "date_formats": ["%Y-%m-%d"]}}
    answer = await http.post("/v1/expenses:import", json=body, headers=headers)
    assert answer.status_code == 200, answer.text
    assert [r["status"] for r in answer.json()["results"]] == ["skipped", "created"]
    listed = (await http.get("/v1/expenses", headers=headers)).json()["expenses"]
    assert [(e["merchant"], e["amount"], e["currency"]) for e in listed] == [("Book Store", "18.25", "USD")]
    for wrong, field in [
        ({"csv": own, "mapping": "nobank"}, "mapping"),
        ({"csv": text, "column_mapping": mapping}, "csv"),
        ({"csv": own, "column_mapping": {"merchant": "Payee"}}, "column_mapping.date"),
        ({"rows": [{"amount": "1.00"}], "mapping": "hdfc"}, "csv"),
    ]:
        refused = await http.post("/v1/expenses:import", json=wrong, headers=headers)
        assert refused.status_code == 400, refused.text
        assert refused.json()["details"][0]["field_violations"][0]["field"] == field
