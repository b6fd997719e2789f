"""The ds service through Envoy's REST port on a whole mesh (`services.launcher up`) on
PostgreSQL, Redis and NATS: parsing as a dry run, consent (from the user's profile, via
user.profile_updated), ingest booking one expense per transaction in the ledger, the
review queue with corrections that teach, refunds linked and never booked, consent
withdrawn deleting raw messages, another user's reviews NOT_FOUND, and insights."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Callable
from datetime import date
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from services.ds import storage
from services.kit.db.engine import Database
from tests.mesh import Mesh

pytestmark = pytest.mark.e2e
PASSWORD = "violet-harbor-tune-42-ds"
WITHIN_SECONDS = 15.0
TODAY = date.today()
DAY = TODAY.strftime("%d/%m/%y")
RECEIVED = f"{TODAY.isoformat()}T12:00:00+05:30"


def message(sender: str, body: str) -> dict[str, str]:
    return {"sender": sender, "body": body, "received_time": RECEIVED}


def upi_debit(reference: str, amount: str = "450.00", merchant: str = "STARBUCKS COFFEE") -> str:
    return (
        f"Sent Rs.{amount} From HDFC Bank A/C *1234 To {merchant} On {DAY} Ref {reference} "
        "Not You? Call 18002586161/SMS BLOCK UPI to 7308080808"
    )


@pytest.fixture
async def client(ds_mesh: Mesh) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=ds_mesh.base_url, timeout=20, trust_env=False) as http:
        yield http


class Member:
    def __init__(self, client: httpx.AsyncClient, tokens: dict[str, Any]) -> None:
        self.client = client
        self.headers = {"authorization": f"Bearer {tokens['access_token']}"}

    async def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return await self.client.request(method, path, headers=self.headers, **kwargs)

    async def ok(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = await self.call(method, path, **kwargs)
        assert response.status_code == 200, f"{method} {path}: {response.status_code} {response.text}"
        return response.json()

    async def parse(self, *messages: dict[str, str]) -> list[dict[str, Any]]:
        return (await self.ok("POST", "/v1/sms:parse", json={"messages": list(messages)}))["results"]

    async def ingest(self, *messages: dict[str, str]) -> list[dict[str, Any]]:
        return (await self.ok("POST", "/v1/sms:ingest", json={"messages": list(messages)}))["results"]

    async def consent(self, on: bool, senders: list[str]) -> None:
        body = {"sms_auto_import": on, "sms_allowed_senders": senders}
        await self.ok(
            "PATCH",
            "/v1/users/me",
            json={"profile": body, "update_mask": "sms_auto_import,sms_allowed_senders"},
        )

    async def consent_reached_ds(self, on: bool) -> None:
        """ds hears of consent through user.profile_updated: wait until ingest agrees."""
        probe = message("VM-HDFCBK-S", "123456 is your OTP for a txn of Rs.1 on HDFC Bank Card 5678.")

        async def status() -> int:
            return (await self.call("POST", "/v1/sms:ingest", json={"messages": [probe]})).status_code

        await eventually(status, lambda code: code == (200 if on else 400))

    async def expenses(self) -> list[dict[str, Any]]:
        return (await self.ok("GET", "/v1/expenses", params={"page_size": 100})).get("expenses", [])

    async def category(self, name: str) -> str:
        listed = await self.ok("GET", "/v1/categories")
        return next(c["category_id"] for c in listed["categories"] if c["name"] == name)

    async def categories_reached_ds(self) -> str:
        """Reads the user's categories (the ledger creates them on first use) and waits
        until ds's copy suggests Food & dining for a coffee shop."""
        food = await self.category("Food & dining")

        async def suggested() -> str:
            (parsed,) = await self.parse(message("VM-HDFCBK-S", upi_debit("630912345678")))
            return parsed.get("suggested_category_id", "")

        await eventually(suggested, lambda category: category == food)
        return food

    async def spent_so_far(self) -> str:
        listed = (await self.ok("GET", "/v1/insights")).get("insights", [])
        projection = next((i for i in listed if i["type"] == "projection"), None)
        facts = {fact["name"]: fact["value"] for fact in projection["facts"]} if projection else {}
        return facts.get("spent_so_far", "")

    async def reviews(self) -> list[dict[str, Any]]:
        return (await self.ok("GET", "/v1/sms/reviews")).get("reviews", [])


async def sign_up(client: httpx.AsyncClient) -> Member:
    body = {"email": f"ds.{secrets.token_hex(6)}@example.org", "password": PASSWORD, "display_name": "D"}
    response = await client.post("/v1/auth/signup", json=body)
    assert response.status_code == 200, response.text
    return Member(client, response.json())


async def eventually(
    read: Callable[[], Any], check: Callable[[Any], bool], within: float = WITHIN_SECONDS
) -> Any:
    started = time.monotonic()
    while True:
        seen = await read()
        if check(seen):
            return seen
        if time.monotonic() - started > within:
            pytest.fail(f"not seen within {within} s: {seen!r}")
        await asyncio.sleep(0.1)


async def test_parse_is_a_dry_run_in_order_without_consent(client: httpx.AsyncClient) -> None:
    member = await sign_up(client)
    results = await member.parse(
        message("VM-HDFCBK-S", upi_debit("630912345678")),
        message("VM-ICICIT-S", "Your OTP for txn of Rs 450 is 123456"),
        message("VM-RNDBNK-S", "Paid 450 INR at Starbucks"),
    )
    assert [r["outcome"] for r in results] == [
        "SMS_OUTCOME_TRANSACTION",
        "SMS_OUTCOME_NOT_TRANSACTION",
        "SMS_OUTCOME_NEEDS_REVIEW",
    ]
    first = results[0]
    assert (first["amount"], first["currency"], first["direction"]) == ("450.00", "INR", "DIRECTION_DEBIT")
    assert (first["counterparty"], first["account_mask"], first["channel"]) == (
        "Starbucks Coffee",
        "1234",
        "CHANNEL_UPI",
    )
    assert (first["reference"], first["parser"], first["txn_date"]) == (
        "630912345678",
        "hdfc.upi_sent@1",
        TODAY.isoformat(),
    )
    # Merchant rules suggest the user's own category once ds holds a copy of them.
    await member.categories_reached_ds()
    assert await member.reviews() == [] and await member.expenses() == []

    empty = await member.call("POST", "/v1/sms:parse", json={"messages": []})
    assert empty.status_code == 400 and "messages" in empty.text
    bad = await member.call(
        "POST",
        "/v1/sms:parse",
        json={"messages": [{"sender": "VM-HDFCBK-S", "body": "x", "received_time": "05/11"}]},
    )
    assert bad.status_code == 400 and "messages[0].received_time" in bad.text
    too_many = await member.call("POST", "/v1/sms:parse", json={"messages": [message("A", "b")] * 501})
    assert too_many.status_code == 400 and "at most 500" in too_many.text


async def test_ingest_needs_consent_and_books_each_transaction_once(
    client: httpx.AsyncClient, ds_mesh: Mesh
) -> None:
    member = await sign_up(client)
    refused = await member.call(
        "POST", "/v1/sms:ingest", json={"messages": [message("VM-HDFCBK-S", upi_debit("1"))]}
    )
    assert refused.status_code == 400 and "sms_auto_import" in refused.text

    food = await member.categories_reached_ds()
    await member.consent(True, ["HDFCBK", "icici"])
    await member.consent_reached_ds(True)
    card_copy = (
        "Sent Rs.450.00 From HDFC Bank A/C *1234 To STARBUCKS COFFEE On "
        f"{DAY} Ref 630955556666 Not You? Call 18002586161"
    )
    results = await member.ingest(
        message("VM-HDFCBK-S", upi_debit("630955556666")),
        message("VM-HDFCBK-S", upi_debit("630955556666")),  # the same SMS again
        message("AD-HDFCBK-T", card_copy),  # the same transaction, another SMS
        message(
            "VM-KOTAKB-S",
            f"Sent Rs.99.00 from Kotak Bank AC X1234 to a@ybl on {TODAY:%d-%m-%y}.UPI Ref 6309.",
        ),
        message(
            "VM-HDFCBK-S", "Rs.300 will be debited from your A/c XX1234 on 20-11-26 towards NETFLIX mandate."
        ),
    )
    actions = [r["action"] for r in results]
    assert actions == [
        "INGEST_ACTION_BOOKED",
        "INGEST_ACTION_DUPLICATE",
        "INGEST_ACTION_DUPLICATE",
        "INGEST_ACTION_SENDER_NOT_ALLOWED",
        "INGEST_ACTION_IGNORED",
    ]
    expense_id = results[0]["expense_id"]
    assert expense_id and results[1]["expense_id"] == results[2]["expense_id"] == expense_id
    (expense,) = await member.expenses()
    assert (expense["expense_id"], expense["amount"], expense["source"]) == (expense_id, "450.00", "sms")
    assert (expense["merchant"], expense["spent_on"]) == ("Starbucks Coffee", TODAY.isoformat())
    assert expense["category_id"] == food

    # Consent withdrawn: ingest refuses, raw messages are gone.
    await member.ingest(message("VM-HDFCBK-S", "Paid Rs.120 at CHAI POINT on HDFC Bank card"))  # a review
    await member.consent(False, [])
    await member.consent_reached_ds(False)
    db = Database(ds_mesh.env["DATABASE_URL"], schema="ds", pool_size=1)
    try:
        async with db.transaction() as session:
            rows = (await session.execute(select(storage.sms_messages))).all()
    finally:
        await db.dispose()
    assert rows and all(row.body is None and row.sender is None for row in rows)
    assert all(row.state != "pending" for row in rows)


async def test_review_queue_accept_with_corrections_then_reject(client: httpx.AsyncClient) -> None:
    member = await sign_up(client)
    other = await sign_up(client)
    await member.categories_reached_ds()
    await member.consent(True, ["HDFCBK", "RNDBNK"])
    await member.consent_reached_ds(True)
    shopping = await member.category("Shopping")
    results = await member.ingest(
        message("VM-RNDBNK-S", "You paid Rs 1,200 to ZED MART via UPI. Ref 630911112222."),
        message("VM-RNDBNK-S", "Rs 75 debited at some kiosk"),
    )
    assert [r["action"] for r in results] == ["INGEST_ACTION_QUEUED_FOR_REVIEW"] * 2
    first, second = (r["review_id"] for r in results)
    assert [review["review_id"] for review in await member.reviews()] == [first, second]
    assert await other.reviews() == []

    # Another user's review ids answer exactly like unknown ones.
    for path in (f"/v1/sms/reviews/{first}:accept", f"/v1/sms/reviews/{first}:reject"):
        assert (await other.call("POST", path, json={})).status_code == 404
    assert (
        await member.call("POST", f"/v1/sms/reviews/{secrets.token_hex(4)}:accept", json={})
    ).status_code == 400

    corrections = {"counterparty": "Zed Mart", "category_id": shopping, "amount": "1250.00"}
    accepted = await member.ok("POST", f"/v1/sms/reviews/{first}:accept", json={"corrections": corrections})
    assert accepted["state"] == "accepted" and accepted["expense_id"]
    (expense,) = await member.expenses()
    assert (expense["amount"], expense["merchant"], expense["category_id"]) == (
        "1250.00",
        "Zed Mart",
        shopping,
    )
    rejected = await member.ok("POST", f"/v1/sms/reviews/{second}:reject", json={})
    assert rejected["state"] == "rejected"
    assert await member.reviews() == [] and len(await member.expenses()) == 1

    # The correction taught the merchant: its next message suggests the name and category.
    (parsed,) = await member.parse(
        message("VM-RNDBNK-S", "You paid Rs 80 to ZED MART via UPI. Ref 630911113333.")
    )
    assert (parsed["counterparty"], parsed["suggested_category_id"]) == ("Zed Mart", shopping)


async def test_what_the_ledger_refuses_waits_for_review_and_a_bad_correction_is_400(
    client: httpx.AsyncClient,
) -> None:
    """A message the ledger will not book (a phone whose clock says 2099) goes to review
    instead of failing the batch; a correction the ledger or the currency refuses is a 400
    naming the correction, never a 500."""
    member = await sign_up(client)
    await member.categories_reached_ds()
    await member.consent(True, ["HDFCBK"])
    await member.consent_reached_ds(True)
    future = "2099-06-01T12:00:00+05:30"
    results = await member.ingest(
        message("VM-HDFCBK-S", upi_debit("630955550001")),
        {
            "sender": "VM-HDFCBK-S",
            "body": upi_debit("630955550002", merchant="CHAI POINT"),
            "received_time": future,
        },
    )
    assert [r["action"] for r in results] == ["INGEST_ACTION_BOOKED", "INGEST_ACTION_QUEUED_FOR_REVIEW"]
    review = results[1]["review_id"]
    path = f"/v1/sms/reviews/{review}:accept"
    for corrections, field in (
        ({}, "corrections.txn_date"),  # the message's own date, 2099
        ({"txn_date": "2099-01-01"}, "corrections.txn_date"),
        ({"txn_date": TODAY.isoformat(), "amount": "10.999"}, "corrections.amount"),
        (
            {"txn_date": TODAY.isoformat(), "category_id": "0190aaaa-0000-7000-8000-000000000000"},
            "corrections.category_id",
        ),
    ):
        refused = await member.call("POST", path, json={"corrections": corrections})
        assert refused.status_code == 400, (corrections, refused.text)
        violations = refused.json()["details"][0]["field_violations"]
        assert [v["field"] for v in violations] == [field], (corrections, violations)
    assert (
        "decimal places"
        in (
            await member.call(
                "POST", path, json={"corrections": {"txn_date": TODAY.isoformat(), "amount": "10.999"}}
            )
        ).text
    )
    accepted = await member.ok("POST", path, json={"corrections": {"txn_date": TODAY.isoformat()}})
    assert accepted["state"] == "accepted"
    assert sorted(e["merchant"] for e in await member.expenses()) == ["Chai Point", "Starbucks Coffee"]


async def test_a_refund_is_linked_to_its_expense_and_never_booked(client: httpx.AsyncClient) -> None:
    member = await sign_up(client)
    await member.consent(True, ["HDFCBK"])
    await member.consent_reached_ds(True)
    spend = (
        f"Spent Rs.2,499.00 On HDFC Bank Card 5678 At AMAZON PAY INDIA On {TODAY.isoformat()}:10:00:00 "
        "Not You? Call 18002586161"
    )
    (booked,) = await member.ingest(message("AD-HDFCBK-T", spend))
    assert booked["action"] == "INGEST_ACTION_BOOKED"
    # ds links a refund once its copy of the ledger holds the expense (from ledger
    # events); its insights count the same copy.
    await eventually(member.spent_so_far, lambda spent: spent == "2499.00")
    refund = f"Refund of Rs.499.00 from AMAZON PAY INDIA credited to HDFC Bank Card 5678 on {TODAY:%d-%m-%y}"
    (result,) = await member.ingest(message("VM-HDFCBK-S", refund))
    assert result["action"] == "INGEST_ACTION_REFUND_RECORDED"
    assert result["linked_expense_id"] == booked["expense_id"]
    assert result["parsed"]["direction"] == "DIRECTION_CREDIT" and result["parsed"]["kind"] == "refund"
    (expense,) = await member.expenses()
    assert expense["amount"] == "2499.00"


async def test_insights_explain_themselves_in_sentences(client: httpx.AsyncClient) -> None:
    member = await sign_up(client)
    food = await member.category("Food & dining")
    body = {
        "request_id": secrets.token_hex(8),
        "amount": "640.00",
        "currency": "INR",
        "spent_on": TODAY.isoformat(),
        "category_id": food,
        "merchant": "Chai Point",
    }
    await member.ok("POST", "/v1/expenses", json=body)

    await eventually(member.spent_so_far, lambda spent: spent == "640.00")
    answer = await member.ok("GET", "/v1/insights", params={"period": "month"})
    assert answer["period_start"] == TODAY.replace(day=1).isoformat()
    projection = next(i for i in answer["insights"] if i["type"] == "projection")
    assert projection["currency"] == "INR" and projection["low"] and projection["high"]
    assert projection["text"].startswith("At your usual pace you will spend about")
    assert (await member.call("GET", "/v1/insights", params={"period": "decade"})).status_code == 400
