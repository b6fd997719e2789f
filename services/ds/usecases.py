"""The ds service's use cases: parsing (a dry run), ingest with consent, the review
queue, and insights. Writes run in one unit of work each; the ledger is called outside
any transaction, with a request id derived from the transaction (domain.dedupe_key), so
a retry, a racing twin or a second SMS of the transaction finds the same expense."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal

from expense.ledger.v1 import ledger_pb2
from services.billing.subscriptions import Charge, DetectionRules, detect_subscriptions
from services.ds import storage
from services.ds.categories import MerchantRules, UserCategoryData
from services.ds.domain import (
    REFUND_KINDS,
    Direction,
    Outcome,
    ParsedSms,
    dedupe_key,
    expense_request_id,
    matching_expense,
)
from services.ds.insights import History, Insight, InsightRules
from services.ds.normalise import merchant_key
from services.ds.parser import SmsParser, bookable, sender_header
from services.ds.sentences import Sentences
from services.ds.settings import DsSettings
from services.ds.storage import Calendar, StoredMessage
from services.kit.consistency import Consistency, WrittenVersion
from services.kit.db.engine import Database
from services.kit.db.unit_of_work import UnitsOfWork
from services.kit.domain.errors import FailedPrecondition, InvalidArgument, NotFound
from services.kit.domain.ids import new_id
from services.kit.domain.money import MoneyError, format_amount, parse_amount
from services.kit.domain.periods import last_periods, period_containing, today_in
from services.kit.domain.timestamps import utcnow
from services.ledger.client import LedgerClient

log = logging.getLogger(__name__)
SOURCE = "sms"
# The ledger's fields of a booked SMS, as AcceptSmsReview's corrections name them.
CORRECTION_FIELDS = {
    "expense.amount": "corrections.amount",
    "expense.currency": "corrections.currency",
    "expense.spent_on": "corrections.txn_date",
    "expense.category_id": "corrections.category_id",
    "expense.merchant": "corrections.counterparty",
}


@dataclass(frozen=True)
class SmsInput:
    sender: str
    body: str
    received: datetime


@dataclass(frozen=True)
class Suggested:
    parsed: ParsedSms
    category_id: str


@dataclass(frozen=True)
class Ingested:
    parsed: ParsedSms
    category_id: str
    # "booked", "duplicate", "pending", "refund", "credit", "ignored", "sender_not_allowed".
    action: str
    expense_id: str = ""
    review_id: str = ""
    linked_expense_id: str = ""


@dataclass(frozen=True)
class Corrections:
    amount: Decimal | None = None
    currency: str = ""
    counterparty: str = ""
    category_id: str = ""
    txn_date: date | None = None


class Sms:
    def __init__(
        self,
        db: Database,
        units: UnitsOfWork,
        parser: SmsParser,
        rules: MerchantRules,
        ledger: LedgerClient,
        settings: DsSettings,
    ) -> None:
        self.db = db
        self.units = units
        self.parser = parser
        self.rules = rules
        self.ledger = ledger
        self.settings = settings

    async def parse(self, user_id: str, messages: Sequence[SmsInput]) -> list[Suggested]:
        """Stores nothing; reads the user's categories and merchant rules to suggest."""
        parsed = [self.parser.parse(m.sender, m.body, m.received) for m in messages]
        return await self._suggest(user_id, parsed)

    async def _suggest(self, user_id: str, parsed: Sequence[ParsedSms]) -> list[Suggested]:
        keys = {merchant_key(p.counterparty) for p in parsed if p.counterparty}
        async with self.db.read() as connection:
            data = UserCategoryData(
                names=await storage.category_names(connection, user_id),
                taught=await storage.merchant_rules_of(connection, user_id, keys),
                usual=await storage.usual_categories(connection, user_id, keys),
            )
        results = []
        for item in parsed:
            taught = data.taught.get(merchant_key(item.counterparty)) if item.counterparty else None
            # The name the user gave this merchant, when they corrected it.
            named = replace(item, counterparty=taught[1]) if taught and taught[1] else item
            category = self.rules.suggest(named.counterparty, data) if named.counterparty else ""
            results.append(Suggested(named, category))
        return results

    async def ingest(self, user_id: str, messages: Sequence[SmsInput]) -> list[Ingested]:
        """Each transaction once: the first message of a dedupe key is worked (up to
        `ingest_concurrency` at a time), later ones in the call are its duplicates."""
        async with self.db.read() as connection:
            consent = await storage.load_consent(connection, user_id)
        if not consent.auto_import:
            raise FailedPrecondition("SMS import is off: turn on sms_auto_import in your profile first")
        suggested = await self.parse(user_id, messages)
        results: list[Ingested | None] = []
        first_of_key: dict[str, int] = {}
        duplicates: list[tuple[int, int]] = []  # (message, the first message of its key)
        for index, (message, item) in enumerate(zip(messages, suggested, strict=True)):
            header = sender_header(message.sender)
            entity = header.entity if header else ""
            if not consent.allows(entity, item.parsed.bank):
                results.append(Ingested(item.parsed, item.category_id, "sender_not_allowed"))
            elif item.parsed.outcome is Outcome.NOT_TRANSACTION:
                results.append(Ingested(item.parsed, item.category_id, "ignored"))
            else:
                key = dedupe_key(item.parsed)
                if key in first_of_key:
                    duplicates.append((index, first_of_key[key]))
                else:
                    first_of_key[key] = index
                results.append(None)
        limit = asyncio.Semaphore(self.settings.ingest_concurrency)
        firsts = list(first_of_key.values())
        # Ids in the call's order, before the work runs concurrently: reviews are listed by
        # id, oldest first, so the messages of one call keep their order there.
        message_ids = {index: new_id() for index in firsts}

        async def work(index: int) -> Ingested:
            async with limit:
                return await self._ingest_one(user_id, messages[index], suggested[index], message_ids[index])

        for index, result in zip(firsts, await asyncio.gather(*(work(i) for i in firsts)), strict=True):
            results[index] = result
        for index, first in duplicates:
            done = results[first]
            assert done is not None
            item = suggested[index]
            results[index] = Ingested(
                item.parsed, item.category_id, "duplicate", done.expense_id, done.review_id
            )
        return [result for result in results if result is not None]

    async def _ingest_one(
        self, user_id: str, message: SmsInput, item: Suggested, message_id: str
    ) -> Ingested:
        parsed = item.parsed
        key = dedupe_key(parsed)
        async with self.db.read() as connection:
            known = await storage.find_message_by_key(connection, user_id, key)
        if known is not None:
            return Ingested(parsed, item.category_id, "duplicate", known.expense_id, _review_id(known))
        now = utcnow()
        stored = StoredMessage(
            message_id=message_id,
            user_id=user_id,
            dedupe_key=key,
            state="pending",
            sender=message.sender.strip()[:32],
            body=message.body,
            received_at=message.received,
            parsed=parsed,
            expense_id="",
            linked_expense_id="",
            created_at=now,
        )
        expense = None
        if bookable(parsed, self.settings.auto_book_confidence):
            expense = await self._book_or_review(user_id, parsed, item.category_id)
        if expense is not None:
            stored = replace(stored, state="booked", expense_id=expense.expense_id)
            action = "booked"
        elif parsed.outcome is Outcome.TRANSACTION and parsed.direction is Direction.CREDIT:
            if parsed.kind in REFUND_KINDS:
                linked = await self._refunded_expense(user_id, parsed)
                stored = replace(stored, state="refund", linked_expense_id=linked)
                action = "refund"
            else:
                stored = replace(stored, state="credit")
                action = "credit"
        else:
            action = "pending"
        async with self.units.begin() as unit:
            added = await storage.add_message(unit.session, stored)
        if not added:  # a twin of this transaction committed first
            async with self.db.read() as connection:
                twin = await storage.find_message_by_key(connection, user_id, key)
            expense_id = twin.expense_id if twin else stored.expense_id
            return Ingested(parsed, item.category_id, "duplicate", expense_id, _review_id(twin))
        return Ingested(
            parsed,
            item.category_id,
            action,
            stored.expense_id,
            stored.message_id if action == "pending" else "",
            stored.linked_expense_id,
        )

    async def _book_or_review(
        self, user_id: str, parsed: ParsedSms, category_id: str
    ) -> ledger_pb2.Expense | None:
        """None when the ledger refuses what the message says (a phone's clock years off,
        an amount over the ledger's limit): the message waits for review, where the person
        corrects it, rather than failing the whole batch."""
        try:
            return await self._book(user_id, parsed, category_id, parsed.counterparty)
        except InvalidArgument as refused:
            log.info("SMS left for review: the ledger refused it", extra={"refused": refused.message})
            return None

    async def _book(
        self, user_id: str, parsed: ParsedSms, category_id: str, merchant: str
    ) -> ledger_pb2.Expense:
        assert parsed.amount_minor is not None and parsed.txn_date is not None
        request = ledger_pb2.CreateExpenseRequest(
            request_id=expense_request_id(user_id, parsed),
            amount=format_amount(parsed.amount_minor, parsed.currency),
            currency=parsed.currency,
            spent_on=parsed.txn_date.isoformat(),
            category_id=category_id,
            merchant=merchant[:200],
            note=_note(parsed),
        )
        return await self.ledger.create_expense_for(user_id, SOURCE, request, CORRECTION_FIELDS)

    async def _refunded_expense(self, user_id: str, parsed: ParsedSms) -> str:
        minor, day = parsed.amount_minor, parsed.txn_date
        if minor is None or day is None or not parsed.counterparty:
            return ""
        start = day - timedelta(days=self.settings.refund_window_days)
        async with self.db.read() as connection:
            candidates = await storage.refund_candidates(
                connection, user_id, merchant_key(parsed.counterparty), parsed.currency, start, day
            )
        match = matching_expense(
            minor, parsed.currency, parsed.counterparty, day, candidates, self.settings.refund_window_days
        )
        return match.expense_id if match else ""

    # ------------------------------------------------------------ reviews

    async def reviews(self, user_id: str, after: str, limit: int) -> list[StoredMessage]:
        async with self.db.read() as connection:
            return await storage.pending_reviews(connection, user_id, after, limit)

    async def _reviewable(self, user_id: str, review_id: str) -> StoredMessage:
        async with self.db.read() as connection:
            message = await storage.find_message(connection, user_id, review_id)
        if message is None or message.state not in ("pending", "accepted", "rejected"):
            raise NotFound("review", review_id)
        return message

    async def accept(self, user_id: str, review_id: str, corrections: Corrections) -> StoredMessage:
        message = await self._reviewable(user_id, review_id)
        if message.state == "accepted":
            return message  # a retried accept
        if message.state != "pending":
            raise FailedPrecondition(f"the review is already {message.state}")
        parsed = _corrected(message.parsed, corrections)
        if parsed.amount is None or parsed.txn_date is None:
            raise InvalidArgument.of("corrections.amount", "the message has no amount: give one")
        if not parsed.currency:
            raise InvalidArgument.of("corrections.currency", "the message has no currency: give one")
        try:  # more decimals than the currency has: a correction's, or a misread kept for review
            parse_amount(format(parsed.amount, "f"), parsed.currency)
        except MoneyError as error:
            raise InvalidArgument.of("corrections.amount", str(error)) from None
        original = message.parsed.counterparty
        category_id = corrections.category_id or (await self._suggest(user_id, [parsed]))[0].category_id
        expense = await self._book(user_id, parsed, category_id, parsed.counterparty)
        now = utcnow()
        async with self.units.begin() as unit:
            await storage.settle_message(unit.session, review_id, "accepted", expense.expense_id, parsed, now)
            # A correction teaches: this merchant (as the bank writes it) is this name and category.
            if corrections.category_id or corrections.counterparty:
                for name in {original, parsed.counterparty} - {""}:
                    await storage.learn_merchant(
                        unit.session, user_id, merchant_key(name), parsed.counterparty, category_id, now
                    )
        return replace(message, state="accepted", expense_id=expense.expense_id, parsed=parsed)

    async def reject(self, user_id: str, review_id: str) -> StoredMessage:
        message = await self._reviewable(user_id, review_id)
        if message.state == "rejected":
            return message
        if message.state != "pending":
            raise FailedPrecondition(f"the review is already {message.state}")
        async with self.units.begin() as unit:
            await storage.settle_message(unit.session, review_id, "rejected", "", message.parsed, utcnow())
        return replace(message, state="rejected")


def _review_id(message: StoredMessage | None) -> str:
    return message.message_id if message is not None and message.state == "pending" else ""


def _note(parsed: ParsedSms) -> str:
    parts = [f"SMS {parsed.parser}"]
    if parsed.foreign_amount is not None:
        parts.append(f"{parsed.foreign_currency} {parsed.foreign_amount}")
    if parsed.reference:
        parts.append(f"ref {parsed.reference}")
    return ", ".join(parts)


def _corrected(parsed: ParsedSms, corrections: Corrections) -> ParsedSms:
    changes: dict[str, object] = {}
    if corrections.amount is not None:
        changes["amount"] = corrections.amount
    if corrections.currency:
        changes["currency"] = corrections.currency
    if corrections.counterparty:
        changes["counterparty"] = corrections.counterparty
    if corrections.txn_date is not None:
        changes["txn_date"] = corrections.txn_date
    return replace(parsed, **changes)


# ---------------------------------------------------------------- insights


@dataclass(frozen=True)
class InsightReport:
    period: str
    start: date
    end: date
    insights: list[Insight]
    # The user's locale and category names, for the sentences.
    locale: str
    category_names: dict[str, str]


@dataclass(frozen=True)
class ExplainedReport:
    report: InsightReport
    # Each insight's sentence ("" while the templating service does not answer).
    texts: list[str]


class InsightComputer:
    """The user's insights from ds's copies: deterministic, no other service involved."""

    def __init__(self, db: Database, settings: DsSettings, default_calendar: Calendar) -> None:
        self.db = db
        self.settings = settings.insights
        self.rules = InsightRules(settings.insights)
        self.default_calendar = default_calendar
        self.detection = DetectionRules()

    async def compute(self, user_id: str, period_kind: str, now: datetime | None = None) -> InsightReport:
        moment = now or utcnow()
        async with self.db.read() as connection:
            calendar = await storage.load_calendar(connection, user_id, self.default_calendar)
            today = today_in(calendar.time_zone, moment)
            current = period_containing(period_kind, today, calendar.first_day_of_week)
            before = current.start - timedelta(days=1)
            count = self.settings.history_periods
            past = list(reversed(last_periods(period_kind, before, count, calendar.first_day_of_week)))
            start = min(past[-1].start, today - timedelta(days=self.settings.projection_lookback_days))
            rows = await storage.daily_rows(connection, user_id, start, today)
            since = today - timedelta(days=self.settings.subscription_lookback_days)
            charges = await storage.recurring_charges(
                connection,
                user_id,
                since,
                self.detection.min_occurrences,
                self.settings.subscription_max_charges,
            )
            names = await storage.category_names(connection, user_id)
        series = detect_subscriptions(
            (Charge(r.expense_id, r.spent_on, r.merchant, r.amount_minor, r.currency) for r in charges),
            today,
            self.detection,
        )
        first_charges = {r.expense_id: r.spent_on for r in charges}
        insights = self.rules.all(History(rows), current, past, today, series, first_charges)
        return InsightReport(period_kind, current.start, current.end, insights, calendar.locale, names)


class Insights:
    """GetInsights: the computed insights with their sentences (the templating service)."""

    def __init__(self, computer: InsightComputer, sentences: Sentences, consistency: Consistency) -> None:
        self.computer = computer
        self.sentences = sentences
        self.consistency = consistency

    async def of(
        self, user_id: str, period_kind: str, written: WrittenVersion | None = None
    ) -> ExplainedReport:
        if written is not None:
            # Read-your-writes: the insights include the write once ds's copy holds it.
            await self.consistency.wait_for(user_id, written)
        report = await self.computer.compute(user_id, period_kind)
        texts = await self.sentences.render(report.insights, report.locale, report.category_names)
        return ExplainedReport(report, texts)
