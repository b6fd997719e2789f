"""The ds service's plain rules: what a parsed SMS holds, which ones become expenses,
how two messages about one transaction get one request id, when a refund matches an
expense, and what a user's consent allows. No gRPC, no SQL."""

from __future__ import annotations

import enum
import hashlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from services.ds.normalise import merchant_key, minor_units
from services.ledger.replica import Move


class Outcome(enum.Enum):
    TRANSACTION = "TRANSACTION"
    NOT_TRANSACTION = "NOT_TRANSACTION"
    NEEDS_REVIEW = "NEEDS_REVIEW"


class Direction(enum.Enum):
    DEBIT = "DEBIT"
    CREDIT = "CREDIT"


# Debits that are spending; a refund, a card payment or money received never is.
BOOKABLE_KINDS = frozenset({"spend", "transfer", "atm_withdrawal", "bill_payment"})
REFUND_KINDS = frozenset({"refund"})


@dataclass(frozen=True)
class ParsedSms:
    outcome: Outcome
    direction: Direction | None = None
    kind: str = ""
    # For a foreign spend, the amount billed in the account's currency.
    amount: Decimal | None = None
    currency: str = ""
    foreign_amount: Decimal | None = None
    foreign_currency: str = ""
    counterparty: str = ""
    account_mask: str = ""
    channel: str = ""
    balance: Decimal | None = None
    # A card's available limit: never reported as a balance.
    available_limit: Decimal | None = None
    reference: str = ""
    txn_date: date | None = None
    confidence: Decimal = Decimal(0)
    # "<issuer>.<template>@<version>", or the generic extractor's id.
    parser: str = ""
    bank: str = ""
    # Why it is not a transaction, or why it needs review.
    reason: str = ""

    @property
    def amount_minor(self) -> int | None:
        if self.amount is None or not self.currency:
            return None
        return minor_units(self.amount, self.currency)


def not_transaction(reason: str) -> ParsedSms:
    return ParsedSms(Outcome.NOT_TRANSACTION, reason=reason)


def dedupe_key(parsed: ParsedSms) -> str:
    """One key per transaction, whichever SMS reported it (the card's and the bank's):
    the reference when there is one, else bank + mask + amount + date. A UPI RRN or
    UTR is unique on its own; the others are unique per bank."""
    if parsed.reference and len(parsed.reference) >= 10 and parsed.reference.isdigit():
        return f"ref:{parsed.reference}"
    if parsed.reference:
        return f"ref:{parsed.bank}:{parsed.reference.upper()}"
    day = parsed.txn_date.isoformat() if parsed.txn_date else ""
    return f"txn:{parsed.bank}:{parsed.account_mask}:{parsed.amount_minor}:{parsed.currency}:{day}"


def expense_request_id(user_id: str, parsed: ParsedSms) -> str:
    """The ledger request id of the expense a message books: derived, so the same SMS
    ingested twice, or a second SMS of the transaction, finds the first expense."""
    digest = hashlib.sha256(f"{user_id}\n{dedupe_key(parsed)}".encode()).hexdigest()
    return f"sms-{digest[:40]}"


@dataclass(frozen=True)
class Consent:
    """What a user allowed in their profile (user.profile_updated carries it)."""

    auto_import: bool = False
    # DLT entities ("HDFCBK") or issuer ids ("hdfc"), upper-case.
    allowed_senders: frozenset[str] = frozenset()

    def allows(self, entity: str, issuer_id: str) -> bool:
        return self.auto_import and (
            entity.upper() in self.allowed_senders or issuer_id.upper() in self.allowed_senders
        )


@dataclass(frozen=True)
class SpendCopy:
    """An expense as ds knows it from ledger events (for refunds and insights)."""

    expense_id: str
    amount_minor: int
    currency: str
    spent_on: date
    merchant: str
    category_id: str


def matching_expense(
    refund_minor: int,
    currency: str,
    merchant: str,
    refund_on: date,
    candidates: list[SpendCopy],
    window_days: int,
) -> SpendCopy | None:
    """The earlier expense a refund gives money back for: same currency, at most its
    amount, the same merchant (by key), within the window before the refund; the
    closest amount, then the latest, wins."""
    key = merchant_key(merchant)
    fitting = [
        copy
        for copy in candidates
        if copy.currency == currency
        and copy.amount_minor >= refund_minor
        and 0 <= (refund_on - copy.spent_on).days <= window_days
        and key
        and merchant_key(copy.merchant) == key
    ]
    if not fitting:
        return None
    return min(fitting, key=lambda copy: (copy.amount_minor - refund_minor, -copy.spent_on.toordinal()))


def merchant_deltas(moves: Mapping[str, Sequence[Move]]) -> dict[tuple[str, str, date], int]:
    """What the monthly charge counts per merchant change by when each old line becomes
    its new one (the same "subtract old, add new" as the daily rollup)."""
    deltas: dict[tuple[str, str, date], int] = defaultdict(int)
    for user_id, user_moves in moves.items():
        for old, new in user_moves:
            if old is not None:
                deltas[(user_id, merchant_key(old.merchant), old.spent_on.replace(day=1))] -= 1
            if new is not None:
                deltas[(user_id, merchant_key(new.merchant), new.spent_on.replace(day=1))] += 1
    return {key: delta for key, delta in deltas.items() if delta}
