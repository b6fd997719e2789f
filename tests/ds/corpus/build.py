# ruff: noqa: E501 -- each format is one SMS body, kept on one line to read as the message does
"""Writes the labelled SMS corpus (tests/ds/corpus/*.jsonl) from the issuer formats
below, written for this project after the public shapes of Indian and foreign bank
alerts (no real customer message). Deterministic: `python tests/ds/corpus/build.py`
rewrites the same files. The labels come from the values filled in, never from the
parser. hand_written.jsonl (messages outside these formats) is kept by hand."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

HERE = Path(__file__).parent
IST = timezone(timedelta(hours=5, minutes=30))
MERCHANTS = [
    ("STARBUCKS COFFEE", "Starbucks Coffee"),
    ("AMAZON PAY INDIA", "Amazon Pay India"),
    ("SWIGGY", "Swiggy"),
    ("ZOMATO LTD", "Zomato Ltd"),
    ("BIG BAZAAR", "Big Bazaar"),
    ("UBER INDIA", "Uber India"),
    ("APOLLO PHARMACY", "Apollo Pharmacy"),
    ("BOOKMYSHOW", "Bookmyshow"),
    ("RELIANCE FRESH", "Reliance Fresh"),
    ("IRCTC", "Irctc"),
    ("DMART READY", "Dmart Ready"),
    ("CHAI POINT", "Chai Point"),
    ("Flipkart Internet", "Flipkart Internet"),
    ("Blinkit", "Blinkit"),
    ("M/S A.B. MART", "A.B. Mart"),
]
VPAS = [
    "starbucks@ybl",
    "swiggy.stores@axb",
    "zomato@hdfcbank",
    "bharatpe.90012@icici",
    "paytmqr281@paytm",
    "rahul.sharma@okicici",
    "priya.k@oksbi",
    "blinkit.payu@hdfcbank",
]
PEOPLE = [
    ("RAHUL SHARMA", "Rahul Sharma"),
    ("PRIYA K", "Priya K"),
    ("ACME CORP PVT LTD", "Acme Corp Pvt Ltd"),
]
FOREIGN = [
    ("NETFLIX.COM", "Netflix.Com", "USD"),
    ("SPOTIFY", "Spotify", "USD"),
    ("AIRBNB", "Airbnb", "EUR"),
    ("APPLE.COM/BILL", "Apple.Com/Bill", "USD"),
]


def indian(amount: Decimal, decimals: bool = True) -> str:
    """1,23,456.78 grouping."""
    whole, _, fraction = f"{amount:.2f}".partition(".")
    head, tail = whole[:-3], whole[-3:]
    groups = []
    while len(head) > 2:
        groups.insert(0, head[-2:])
        head = head[:-2]
    if head:
        groups.insert(0, head)
    text = ",".join([*groups, tail]) if groups else tail
    return f"{text}.{fraction}" if decimals else text


def plain(amount: Decimal, decimals: bool = True) -> str:
    return f"{amount:.2f}" if decimals else str(int(amount))


def western(amount: Decimal) -> str:
    return f"{amount:,.2f}"


DATE_STYLES: dict[str, Callable[[date], str]] = {
    "dd/mm/yy": lambda d: d.strftime("%d/%m/%y"),
    "dd-mm-yy": lambda d: d.strftime("%d-%m-%y"),
    "dd-mm-yyyy": lambda d: d.strftime("%d-%m-%Y"),
    "dd/mm/yyyy": lambda d: d.strftime("%d/%m/%Y"),
    "ddMONyy": lambda d: d.strftime("%d%b%y"),
    "dd-MON-yy": lambda d: d.strftime("%d-%b-%y").upper(),
    "dd-Mon-yy": lambda d: d.strftime("%d-%b-%y"),
    "dd-MON-yyyy": lambda d: d.strftime("%d-%b-%Y").upper(),
    "dd-Mon-yyyy": lambda d: d.strftime("%d-%b-%Y"),
    "iso:time": lambda d: d.strftime("%Y-%m-%d") + ":14:22:10",
    "dd Mon yyyy": lambda d: d.strftime("%d %b %Y"),
    "yyyy:mm:dd": lambda d: d.strftime("%Y:%m:%d"),
}


@dataclass(frozen=True)
class Format:
    issuer: str
    sender: str
    text: str
    direction: str
    kind: str
    date_style: str
    party: str = "merchant"  # merchant | vpa | person | atm | none | foreign
    money: Callable[[Decimal], str] = plain
    with_balance: bool = False
    with_reference: bool = True


FORMATS = [
    Format(
        "hdfc",
        "VM-HDFCBK-S",
        "Sent Rs.{amt} From HDFC Bank A/C *{mask} To {party} On {date} Ref {ref} Not You? Call 18002586161/SMS BLOCK UPI to 7308080808",
        "DEBIT",
        "spend",
        "dd/mm/yy",
    ),
    Format(
        "hdfc",
        "AD-HDFCBK-T",
        "Spent Rs.{amt} On HDFC Bank Card {mask} At {party} On {date} Not You? To Block+Reissue Call 18002586161/SMS BLOCK CC {mask} to 7308080808",
        "DEBIT",
        "spend",
        "iso:time",
        money=western,
        with_reference=False,
    ),
    Format(
        "hdfc",
        "AD-HDFCBK-T",
        "Spent {fcur} {famt} (approx INR {amt}) On HDFC Bank Card {mask} At {party} On {date} Not You? Call 18002586161",
        "DEBIT",
        "spend",
        "iso:time",
        party="foreign",
        money=western,
        with_reference=False,
    ),
    Format(
        "hdfc",
        "VK-HDFCBK-S",
        "Update! INR {amt} debited from HDFC Bank XX{mask} on {date}. Info: IMPS-{ref}-{party}. Avl bal:INR {bal}",
        "DEBIT",
        "transfer",
        "dd-MON-yy",
        party="person",
        money=western,
        with_balance=True,
    ),
    Format(
        "hdfc",
        "VM-HDFCBK-S",
        "Money Received - INR {amt} in your HDFC Bank A/c xx{mask} on {date} by VPA {party} (UPI Ref No {ref}). Avl bal: INR {bal}",
        "CREDIT",
        "credit",
        "dd-mm-yy",
        party="vpa",
        money=western,
        with_balance=True,
    ),
    Format(
        "hdfc",
        "VM-HDFCBK-T",
        "Rs.{amt} withdrawn from HDFC Bank Card xx{mask} at {party} on {date}. Avl bal: Rs.{bal} Not you? Call 18002586161",
        "DEBIT",
        "atm_withdrawal",
        "iso:time",
        party="atm",
        money=plain,
        with_balance=True,
        with_reference=False,
    ),
    Format(
        "hdfc",
        "VM-HDFCBK-T",
        "Refund of Rs.{amt} from {party} credited to HDFC Bank Card {mask} on {date}",
        "CREDIT",
        "refund",
        "dd-mm-yy",
        with_reference=False,
    ),
    Format(
        "icici",
        "VM-ICICIT-S",
        "ICICI Bank Acct XX{mask} debited for Rs {amt} on {date}; {party} credited. UPI:{ref}. Call 18002662 for dispute. SMS BLOCK {mask} to 9215676766.",
        "DEBIT",
        "spend",
        "dd-Mon-yy",
    ),
    Format(
        "icici",
        "JD-ICICIT-S",
        "INR {amt} spent using ICICI Bank Card XX{mask} on {date} on {party}. Avl Limit: INR {bal}. If not you, call 1800 2662/SMS BLOCK {mask} to 9215676766",
        "DEBIT",
        "spend",
        "dd-Mon-yy",
        money=western,
        with_balance=True,
        with_reference=False,
    ),
    Format(
        "icici",
        "JD-ICICIT-S",
        "{fcur} {famt} spent using ICICI Bank Card XX{mask} on {date} on {party}. Avl Limit: INR {bal}. If not you, call 1800 2662/SMS BLOCK {mask} to 9215676766",
        "DEBIT",
        "spend",
        "dd-Mon-yy",
        party="foreign_only",
        money=western,
        with_balance=True,
        with_reference=False,
    ),
    Format(
        "icici",
        "VM-ICICIB-S",
        "ICICI Bank Account XX{mask} credited:Rs. {amt} on {date}. Info NEFT-{ref}-{party}. Available Balance is Rs. {bal}.",
        "CREDIT",
        "credit",
        "dd-Mon-yy",
        party="person",
        money=western,
        with_balance=True,
    ),
    Format(
        "icici",
        "VM-ICICIB-S",
        "Dear Customer, Rs {amt} has been credited to your ICICI Bank Credit Card XX{mask} on {date} as refund from {party}.",
        "CREDIT",
        "refund",
        "dd-Mon-yy",
        with_reference=False,
    ),
    Format(
        "sbi",
        "JD-SBIUPI-S",
        "Dear UPI user A/C X{mask} debited by {amt} on date {date} trf to {party} Refno {ref}. If not u? call 1800111109. -SBI",
        "DEBIT",
        "spend",
        "ddMONyy",
    ),
    Format(
        "sbi",
        "JD-SBIUPI-S",
        "Dear SBI User, your A/c X{mask}-credited by Rs.{amt} on {date} transfer from {party} Ref No {ref} -SBI",
        "CREDIT",
        "credit",
        "ddMONyy",
        party="person",
    ),
    Format(
        "sbi",
        "BZ-SBICRD-T",
        "Rs.{amt} spent on your SBI Credit Card ending {mask} at {party} on {date}. Trxn. not done by you? Report at https://sbicard.com/Dispute",
        "DEBIT",
        "spend",
        "dd/mm/yy",
        money=indian,
        with_reference=False,
    ),
    Format(
        "sbi",
        "VM-SBIINB-S",
        "Your A/C XXXXX{mask} Debited INR {amt} on {date} -Transferred to {party}. Avl Balance INR {bal}-SBI",
        "DEBIT",
        "transfer",
        "dd/mm/yy",
        party="person",
        money=indian,
        with_balance=True,
        with_reference=False,
    ),
    Format(
        "axis",
        "AX-AXISBK-S",
        "INR {amt} debited A/c no. XX{mask} {date}, 14:22:10 UPI/P2M/{ref}/{party} Not you? SMS BLOCKUPI Cust ID to 919951860002 Axis Bank",
        "DEBIT",
        "spend",
        "dd-mm-yy",
        money=western,
    ),
    Format(
        "axis",
        "AX-AXISBK-T",
        "Spent INR {amt} Axis Bank Card no. XX{mask} {date} 14:22:10 IST {party} Avl Limit: INR {bal} Not you? SMS BLOCK {mask} to 919951860002",
        "DEBIT",
        "spend",
        "dd-mm-yy",
        money=western,
        with_balance=True,
        with_reference=False,
    ),
    Format(
        "axis",
        "AX-AXISBK-S",
        "INR {amt} credited to A/c no. XX{mask} on {date} at 14:22:10 IST. Info- UPI/P2A/{ref}/{party}. Avl Bal- INR {bal} - Axis Bank",
        "CREDIT",
        "credit",
        "dd-mm-yy",
        party="person",
        money=western,
        with_balance=True,
    ),
    Format(
        "kotak",
        "VM-KOTAKB-S",
        "Sent Rs.{amt} from Kotak Bank AC X{mask} to {party} on {date}.UPI Ref {ref}. Not you, https://kotak.com/KBANKT/Fraud",
        "DEBIT",
        "spend",
        "dd-mm-yy",
        party="vpa",
    ),
    Format(
        "kotak",
        "VM-KOTAKB-S",
        "Received Rs.{amt} in your Kotak Bank AC X{mask} from {party} on {date}.UPI Ref:{ref}.",
        "CREDIT",
        "credit",
        "dd-mm-yy",
        party="vpa",
    ),
    Format(
        "kotak",
        "VM-KOTAKB-T",
        "Rs.{amt} spent on Kotak Credit Card x{mask} on {date} at {party}. Avl limit Rs.{bal}. Not you? Call 18602662666",
        "DEBIT",
        "spend",
        "dd/mm/yyyy",
        money=western,
        with_balance=True,
        with_reference=False,
    ),
    Format(
        "bob",
        "BP-BOBTXN-S",
        "Rs.{amt} Dr. from A/C XXXXXX{mask} and Cr. to {party}. Ref:{ref}. AvlBal:Rs{bal}({date} 14:22:10). Not you? Call 18005700-BOB",
        "DEBIT",
        "spend",
        "yyyy:mm:dd",
        party="vpa",
        with_balance=True,
    ),
    Format(
        "bob",
        "BP-BOBTXN-S",
        "Rs.{amt} Credited to A/c ...{mask} thru UPI/{ref} by {party}. Total Bal:Rs.{bal}CR. Avlbl Amt:Rs.{bal}({date} 14:22:10) - Bank of Baroda",
        "CREDIT",
        "credit",
        "dd-mm-yyyy",
        party="vpa",
        with_balance=True,
    ),
    Format(
        "idfc",
        "VM-IDFCFB-S",
        "Your A/C XXXXXXX{mask} is debited by INR {amt} on {date} 14:22. New Bal :INR {bal}. UPI Ref {ref} to {party}. Not you? Call 18001082888 - IDFC FIRST Bank",
        "DEBIT",
        "spend",
        "dd/mm/yy",
        party="vpa",
        money=western,
        with_balance=True,
    ),
    Format(
        "idfc",
        "VM-IDFCFB-T",
        "INR {amt} spent on your IDFC FIRST Bank Credit Card ending XX{mask} at {party} on {date} at 02:22 PM. Avl Limit: INR {bal}",
        "DEBIT",
        "spend",
        "dd-MON-yyyy",
        money=western,
        with_balance=True,
        with_reference=False,
    ),
    Format(
        "indusind",
        "VM-INDUSB-S",
        "Your A/C 2XXXXX{mask} has been debited with INR {amt} towards UPI/{ref}/{party} on {date}. Avl Bal INR {bal}. If not done by you call 18602677777 -IndusInd Bank",
        "DEBIT",
        "spend",
        "dd-mm-yyyy",
        party="vpa",
        money=western,
        with_balance=True,
    ),
    Format(
        "indusind",
        "VM-INDUSB-T",
        "INR {amt} spent on IndusInd Card XX{mask} on {date} at {party}. Avl Lmt: INR {bal}",
        "DEBIT",
        "spend",
        "dd-mm-yyyy",
        money=western,
        with_balance=True,
        with_reference=False,
    ),
    Format(
        "yes",
        "VM-YESBNK-S",
        "INR {amt} debited from A/c XX{mask} on {date} for UPI-{ref}-{party}. Avl Bal INR {bal}. Not you? Call 18001200 - YES BANK",
        "DEBIT",
        "spend",
        "dd-MON-yy",
        party="vpa",
        money=western,
        with_balance=True,
    ),
    Format(
        "yes",
        "VM-YESBNK-T",
        "INR {amt} spent on YES BANK Card X{mask} @{party} {date} 02:22:10 PM. Avl Lmt INR {bal}. SMS BLKCC {mask} to 9840909000 if not you",
        "DEBIT",
        "spend",
        "dd-mm-yyyy",
        money=western,
        with_balance=True,
        with_reference=False,
    ),
    Format(
        "canara",
        "VM-CANBNK-S",
        "An amount of INR {amt} has been DEBITED to your account XXX{mask} on {date} towards UPI/{ref}/{party}. Total Avail.bal INR {bal}. - Canara Bank",
        "DEBIT",
        "spend",
        "dd/mm/yyyy",
        party="vpa",
        money=western,
        with_balance=True,
    ),
    Format(
        "canara",
        "VM-CANBNK-S",
        "An amount of INR {amt} has been CREDITED to your account XXX{mask} on {date} towards UPI/{ref}/{party}. Total Avail.bal INR {bal}. - Canara Bank",
        "CREDIT",
        "credit",
        "dd/mm/yyyy",
        party="vpa",
        money=western,
        with_balance=True,
    ),
    Format(
        "pnb",
        "VM-PNBSMS-S",
        "Ac XX{mask} debited INR {amt} on {date} by UPI ref {ref} to {party}. Aval Bal INR {bal} CR. Not you? call 18001800 -PNB",
        "DEBIT",
        "spend",
        "dd-mm-yy",
        party="vpa",
        with_balance=True,
    ),
    Format(
        "pnb",
        "VM-PNBSMS-S",
        "Ac XX{mask} credited INR {amt} on {date} by UPI ref {ref} from {party}. Aval Bal INR {bal} CR -PNB",
        "CREDIT",
        "credit",
        "dd-mm-yy",
        party="vpa",
        with_balance=True,
    ),
    Format(
        "union",
        "VM-UNIONB-S",
        "A/c *{mask} Debited for Rs:{amt} on {date} 14:22:10 by Mob Bk ref no {ref} Avl Bal Rs:{bal}.If not you, Call 1800222243 -Union Bank of India",
        "DEBIT",
        "spend",
        "dd-mm-yyyy",
        party="none",
        with_balance=True,
    ),
    Format(
        "au",
        "VM-AUBANK-S",
        "Debited INR {amt} from your AU Bank A/c XX{mask} to {party} on {date}. UPI Ref {ref}. Bal INR {bal}. Not you? Call 1800-1200-1200",
        "DEBIT",
        "spend",
        "dd-mm-yy",
        party="vpa",
        money=western,
        with_balance=True,
    ),
    Format(
        "onecard",
        "VM-ONECRD-S",
        "Rs. {amt} spent on your OneCard Credit Card ending {mask} at {party} on {date}. Avl limit: Rs. {bal}",
        "DEBIT",
        "spend",
        "dd-Mon-yyyy",
        money=western,
        with_balance=True,
        with_reference=False,
    ),
    Format(
        "slice",
        "VM-SLICEIT-S",
        "Rs {amt} spent at {party} using your slice card XX{mask} on {date}. Available limit Rs {bal}",
        "DEBIT",
        "spend",
        "dd Mon yyyy",
        money=indian,
        with_balance=True,
        with_reference=False,
    ),
    Format(
        "paytm",
        "VM-IPAYTM-S",
        "Paid Rs.{amt} to {party} from Paytm Balance. Updated Balance: Rs.{bal}. Txn ID: {ref}",
        "DEBIT",
        "spend",
        "dd-mm-yy",
        with_balance=True,
    ),
    Format(
        "paytm",
        "VM-PAYTMB-S",
        "Rs.{amt} paid to {party} from Paytm Payments Bank a/c XX{mask}. UPI Ref: {ref}.",
        "DEBIT",
        "spend",
        "dd-mm-yy",
    ),
    Format(
        "phonepe",
        "VM-PHONPE-S",
        "Paid Rs.{amt} to {party} from PhonePe Wallet. Txn ID T{ref}. Wallet balance Rs.{bal}",
        "DEBIT",
        "spend",
        "dd-mm-yy",
        with_balance=True,
    ),
    Format(
        "phonepe",
        "VM-PHONPE-S",
        "Received Rs.{amt} from {party} in your PhonePe Wallet. Txn ID T{ref}.",
        "CREDIT",
        "credit",
        "dd-mm-yy",
        party="person",
    ),
]
# Formats whose messages carry no date: the parser takes the arrival date.
UNDATED = {"paytm", "phonepe"}


def fill(fmt: Format, rng: random.Random, index: int) -> dict[str, object]:
    day = date(2026, 11, 1) + timedelta(days=rng.randrange(0, 30))
    received = datetime.combine(day, datetime.min.time(), IST) + timedelta(hours=9 + rng.randrange(0, 12))
    amount = Decimal(
        rng.choice([rng.randrange(10, 999), rng.randrange(1000, 99999), rng.randrange(100000, 250000)])
    )
    amount += Decimal(rng.choice([0, 50, 99, 75])) / 100
    balance = Decimal(rng.randrange(1000, 400000)) + Decimal(rng.randrange(0, 100)) / 100
    mask = f"{rng.randrange(0, 10000):04d}"
    reference = str(rng.randrange(10**11, 10**12))
    expect: dict[str, object] = {
        "is_transaction": True,
        "direction": fmt.direction,
        "kind": fmt.kind,
        "account_mask": mask if "{mask}" in fmt.text else "",
    }
    values = {"mask": mask, "ref": reference, "date": DATE_STYLES[fmt.date_style](day)}
    if fmt.party == "vpa":
        party = rng.choice(VPAS)
        values["party"], expect["counterparty"] = party, party
    elif fmt.party == "person":
        values["party"], expect["counterparty"] = rng.choice(PEOPLE)
    elif fmt.party == "atm":
        values["party"] = f"ATM MUMBAI {rng.choice(['ANDHERI', 'DADAR', 'BANDRA'])}"
        expect["counterparty"] = values["party"].title()
    elif fmt.party in ("foreign", "foreign_only"):
        raw, normal, currency = rng.choice(FOREIGN)
        foreign = Decimal(rng.randrange(100, 9999)) / 100
        values.update(party=raw, fcur=currency, famt=f"{foreign:.2f}")
        expect["counterparty"] = normal
        if fmt.party == "foreign":
            expect.update(foreign_amount=f"{foreign:.2f}", foreign_currency=currency)
            amount = (foreign * 84).quantize(Decimal("0.01"))
        else:
            amount, expect["currency"] = foreign, currency
    elif fmt.party == "none":
        expect["counterparty"] = ""
    else:
        values["party"], expect["counterparty"] = rng.choice(MERCHANTS)
    decimals = fmt.money is western or index % 3 != 0
    values["amt"] = fmt.money(amount) if fmt.money is western else fmt.money(amount, decimals)
    if not decimals:
        amount = Decimal(int(amount))
    values["bal"] = plain(balance) if fmt.money is plain else western(balance)
    expect.setdefault("currency", "INR")
    expect["amount"] = str(amount.quantize(Decimal("0.01")))
    if fmt.with_balance and "Lmt" not in fmt.text and "Limit" not in fmt.text and "limit" not in fmt.text:
        expect["balance"] = str(balance)
    if fmt.with_reference:
        expect["reference"] = ("T" if "Txn ID T" in fmt.text else "") + reference
    expect["txn_date"] = (received.date() if fmt.issuer in UNDATED else day).isoformat()
    return {
        "sender": fmt.sender,
        "body": fmt.text.format(**values),
        "received_time": received.isoformat(),
        "issuer": fmt.issuer,
        "expect": expect,
    }


def main() -> None:
    rng = random.Random(20261107)
    by_issuer: dict[str, list[dict[str, object]]] = {}
    for index, fmt in enumerate(FORMATS * 8):
        by_issuer.setdefault(fmt.issuer, []).append(fill(fmt, rng, index))
    for issuer, rows in by_issuer.items():
        with (HERE / f"issuer_{issuer}.jsonl").open("w") as out:
            for row in rows:
                out.write(json.dumps(row, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
