"""Billing's use cases: each write one unit of work (with its alerts and events),
each read on a read connection. The owner is always the verified caller's id."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Collection, Sequence
from dataclasses import replace
from datetime import date, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from expense.billing.v1 import billing_pb2
from expense.ledger.v1 import ledger_pb2
from services.billing import storage
from services.billing.convert import (
    alert_proto,
    bill_proto,
    budget_proto,
    occurrence_proto,
    period_proto,
    suggestion_proto,
)
from services.billing.domain import (
    RULE_DESCRIPTIONS,
    RULE_TYPES,
    Bill,
    Budget,
    Settlement,
    first_open,
    occurrence_views,
)
from services.billing.inputs import BillInput, BudgetInput, payment_amount
from services.billing.matching import merchant_key, payee_matches
from services.billing.recurrence import parse_recurrence
from services.billing.rules import RuleChecks, budget_views, past_periods, refresh_budgets
from services.billing.settings import BillingSettings
from services.billing.storage import Calendar
from services.billing.subscriptions import Charge, DetectionRules, Suggestion, detect_subscriptions
from services.kit.consistency import Consistency, WrittenVersion
from services.kit.db.engine import Database, Queryable
from services.kit.db.idempotency import RequestKey
from services.kit.db.unit_of_work import UnitOfWork, UnitsOfWork
from services.kit.domain.errors import Aborted, FailedPrecondition, InvalidArgument, NotFound
from services.kit.domain.etags import etag_matches
from services.kit.domain.ids import new_id
from services.kit.domain.money import format_amount
from services.kit.domain.periods import period_containing, today_in
from services.kit.domain.timestamps import utcnow
from services.kit.domain.validation import validated
from services.kit.responses import ResponseCache
from services.ledger.client import LedgerClient
from services.ledger.replica import CategoryTree
from services.user.settings import ProfileDefaults

# The namespace of the request ids billing sends the ledger for bill payments.
PAYMENT_NAMESPACE = uuid.UUID("5b0c7a4e-3f1d-4c8e-9a57-2d6b1e0f9c31")
# The ledger's fields of a payment's expense, as PayBillOccurrence names them.
PAYMENT_FIELDS = {
    "expense.amount": "amount",
    "expense.spent_on": "paid_on",
    "expense.category_id": "bill.category_id",
}
MAX_OCCURRENCES = 1000


class Calendars:
    """Each user's time zone and first day of week, as billing heard them from the
    user service's events; the configured defaults until then."""

    def __init__(self, defaults: ProfileDefaults) -> None:
        self.default = Calendar(defaults.time_zone, defaults.first_day_of_week)

    async def of(self, connection: Queryable, user_id: str, *, lock: bool = False) -> Calendar:
        """`lock`: see storage.load_calendars."""
        return (await self.of_all(connection, [user_id], lock=lock))[user_id]

    async def of_all(
        self, connection: Queryable, user_ids: Collection[str], *, lock: bool = False
    ) -> dict[str, Calendar]:
        """Each user's calendar, in one query."""
        found = await storage.load_calendars(connection, user_ids, lock=lock)
        return {user_id: found.get(user_id, self.default) for user_id in user_ids}

    async def today(self, connection: Queryable, user_id: str) -> tuple[Calendar, date]:
        return (await self.todays(connection, [user_id]))[user_id]

    async def todays(
        self, connection: Queryable, user_ids: Collection[str]
    ) -> dict[str, tuple[Calendar, date]]:
        """Each user's calendar and today in it, in one query."""
        now = utcnow()
        calendars = await self.of_all(connection, user_ids)
        return {
            user_id: (calendar, today_in(calendar.time_zone, now)) for user_id, calendar in calendars.items()
        }


class CategoryCopies:
    """The user's category tree as billing's copy has it; when the copy does not know a
    category yet (its event still on the way, right after a signup), the ledger's tree.
    Only the consumer writes the copy: two writers of one user's categories, in different
    orders, could deadlock."""

    def __init__(self, ledger: LedgerClient) -> None:
        self.ledger = ledger

    async def tree_with(self, session: AsyncSession, user_id: str, category_id: str | None) -> CategoryTree:
        tree = await storage.category_tree(session, user_id)
        if not category_id or category_id in tree:
            return tree
        tree = CategoryTree(await self.ledger.categories(user_id))
        if category_id not in tree:
            raise InvalidArgument.of("category_id", "no such category")
        return tree


def changed_category(current: Budget | Bill, fields: Any) -> str | None:
    """The category an update must find: a new one. The one it has may have been deleted
    since; that must not make every other change (the amount...) fail naming it."""
    wanted = fields.category_id or ""
    return wanted if wanted != current.category_id else None


def request_key(user_id: str, method: str, request_id: str) -> RequestKey | None:
    return RequestKey(user_id, method, request_id) if request_id else None


def check_etag(etag: str, current: str) -> None:
    if etag and not etag_matches(etag, current):
        raise Aborted(
            "the resource changed since it was read: read it again and retry (etag mismatch)", "ETAG_MISMATCH"
        )


class Budgets:
    def __init__(
        self,
        db: Database,
        units: UnitsOfWork,
        settings: BillingSettings,
        calendars: Calendars,
        categories: CategoryCopies,
        checks: RuleChecks,
        statuses: ResponseCache,
    ) -> None:
        self.db = db
        self.units = units
        self.settings = settings
        self.calendars = calendars
        self.categories = categories
        self.checks = checks
        # Answers of get and list, per user; invalidated by every change to the user's
        # budgets or spending (here and in events.py), else kept status_cache_seconds.
        self.statuses = statuses
        self.consistency = Consistency(
            db,
            storage.expense_version,
            settings.consistency_wait_seconds,
            settings.consistency_poll_seconds,
            "budgets",
        )

    async def create(
        self, user_id: str, fields: BudgetInput, request_id: str, fingerprint: str
    ) -> billing_pb2.Budget:
        async def work(unit: UnitOfWork) -> billing_pb2.Budget:
            session = unit.session
            if await storage.count_budgets(session, user_id) >= self.settings.max_budgets:
                raise FailedPrecondition(f"at most {self.settings.max_budgets} budgets per user")
            calendar, today = await self.calendars.today(session, user_id)
            tree = await self.categories.tree_with(session, user_id, fields.category_id)
            now = utcnow()
            start = fields.start_date or today
            first = period_containing(fields.period, start, calendar.first_day_of_week)
            budget = Budget(
                budget_id=new_id(),
                user_id=user_id,
                category_id=fields.category_id or "",
                period=fields.period,
                currency=fields.currency,
                rollover=fields.rollover,
                thresholds=fields.thresholds,
                start_date=start,
                amounts=((first.start, fields.amount),),
                arming=0,
                version=1,
                created_at=now,
                updated_at=now,
            )
            await storage.save_budget(session, budget, new=True)
            await refresh_budgets(session, [budget], tree, calendar)
            [view] = await budget_views(session, [budget], tree, calendar, today)
            await self.checks.after_budget_change(unit, view)
            return budget_proto(view)

        key = request_key(user_id, "CreateBudget", request_id)
        created = await self.units.once(key, fingerprint, billing_pb2.Budget, work)
        await self.statuses.invalidate([user_id])
        return created

    async def get(
        self, user_id: str, budget_id: str, written: WrittenVersion | None = None
    ) -> billing_pb2.Budget:
        if written is not None:
            # Read-your-writes: computed once the write is in the spend copy, never from the
            # cache (an entry computed just before the event may not be invalidated yet).
            await self.consistency.wait_for(user_id, written)
            return await self._get(user_id, budget_id)
        return await self.statuses.get_or_compute(
            user_id, ("get", budget_id), billing_pb2.Budget, lambda: self._get(user_id, budget_id)
        )

    async def _get(self, user_id: str, budget_id: str) -> billing_pb2.Budget:
        async with self.db.read() as connection:
            budget = await storage.load_budget(connection, user_id, budget_id)
            if budget is None:
                raise NotFound("budget", budget_id)
            calendar, today = await self.calendars.today(connection, user_id)
            tree = await storage.category_tree(connection, user_id)
            [view] = await budget_views(connection, [budget], tree, calendar, today)
        return budget_proto(view)

    async def list(
        self, user_id: str, page_size: int, page_token: str, written: WrittenVersion | None = None
    ) -> billing_pb2.ListBudgetsResponse:
        size = page_size_of(page_size, self.settings)
        after = decode_page_token(page_token, "budgets")
        if written is not None:
            await self.consistency.wait_for(user_id, written)
            return await self._list(user_id, size, after)
        return await self.statuses.get_or_compute(
            user_id,
            ("list", str(size), after),
            billing_pb2.ListBudgetsResponse,
            lambda: self._list(user_id, size, after),
        )

    async def _list(self, user_id: str, size: int, after: str) -> billing_pb2.ListBudgetsResponse:
        async with self.db.read() as connection:
            found = await storage.load_budgets(connection, user_id, after=after, limit=size + 1)
            calendar, today = await self.calendars.today(connection, user_id)
            tree = await storage.category_tree(connection, user_id)
            views = await budget_views(connection, found[:size], tree, calendar, today)
        next_token = encode_page_token("budgets", found[size - 1].budget_id) if len(found) > size else ""
        return billing_pb2.ListBudgetsResponse(
            budgets=[budget_proto(v) for v in views], next_page_token=next_token
        )

    async def update(
        self, user_id: str, budget_id: str, etag: str, requested: dict[str, Any]
    ) -> billing_pb2.Budget:
        async with self.units.begin() as unit:
            session = unit.session
            budget = await storage.load_budget(session, user_id, budget_id, lock=True)
            if budget is None:
                raise NotFound("budget", budget_id)
            check_etag(etag, budget.etag)
            calendar, today = await self.calendars.today(session, user_id)
            fields = validated_budget({**budget_data(budget), **requested}, self.settings)
            tree = await self.categories.tree_with(session, user_id, changed_category(budget, fields))
            changed = _updated_budget(budget, fields, calendar, today)
            await storage.save_budget(session, changed, new=False)
            if changed.category_id != budget.category_id:
                await refresh_budgets(session, [changed], tree, calendar)
            [view] = await budget_views(session, [changed], tree, calendar, today)
            await self.checks.after_budget_change(unit, view)
        await self.statuses.invalidate([user_id])
        return budget_proto(view)

    async def delete(self, user_id: str, budget_id: str, etag: str) -> None:
        async with self.units.begin() as unit:
            budget = await storage.load_budget(unit.session, user_id, budget_id, lock=True)
            if budget is None:
                raise NotFound("budget", budget_id)
            check_etag(etag, budget.etag)
            await storage.delete_budget(unit.session, budget_id)
        await self.statuses.invalidate([user_id])

    async def history(
        self, user_id: str, budget_id: str, count: int
    ) -> billing_pb2.ListBudgetHistoryResponse:
        limit = min(count or self.settings.history_default_periods, self.settings.history_max_periods)
        async with self.db.read() as connection:
            budget = await storage.load_budget(connection, user_id, budget_id)
            if budget is None:
                raise NotFound("budget", budget_id)
            calendar, today = await self.calendars.today(connection, user_id)
            current = period_containing(budget.period, today, calendar.first_day_of_week)
            if budget.first_period(calendar.first_day_of_week).start >= current.start:
                return billing_pb2.ListBudgetHistoryResponse(currency=budget.currency)
            spending = await storage.budget_spending(connection, [budget_id])
        periods = past_periods(budget, calendar, current.previous(), spending[budget_id])
        newest = [period_proto(figures, budget.currency) for figures in reversed(periods)][:limit]
        return billing_pb2.ListBudgetHistoryResponse(periods=newest, currency=budget.currency)


def budget_data(budget: Budget) -> dict[str, Any]:
    """A stored budget as the text fields a client sends."""
    return {
        "category_id": budget.category_id,
        "period": budget.period,
        "amount": format_amount(budget.current_amount, budget.currency),
        "currency": budget.currency,
        "rollover": budget.rollover,
        "thresholds": list(budget.thresholds),
        "start_date": budget.start_date.isoformat(),
    }


def validated_budget(data: dict[str, Any], settings: BillingSettings) -> BudgetInput:
    return validated(BudgetInput, data, prefix="budget.", context=settings)


def _updated_budget(budget: Budget, fields: BudgetInput, calendar: Calendar, today: date) -> Budget:
    """The fields applied; a new amount (or currency) counts from the current period on."""
    changed = replace(
        budget,
        category_id=fields.category_id or "",
        rollover=fields.rollover,
        thresholds=fields.thresholds,
        version=budget.version + 1,
        updated_at=utcnow(),
    )
    current = max(
        period_containing(budget.period, today, calendar.first_day_of_week),
        budget.first_period(calendar.first_day_of_week),
        key=lambda period: period.start,
    )
    if fields.currency != budget.currency:
        first = budget.first_period(calendar.first_day_of_week)
        return replace(
            changed,
            currency=fields.currency,
            amounts=((first.start, fields.amount),),
            arming=budget.arming + 1,
        )
    if fields.amount != budget.current_amount:
        return changed.with_amount(fields.amount, current)
    return changed


# ---------------------------------------------------------------- page tokens


def page_size_of(requested: int, settings: BillingSettings) -> int:
    if requested < 0:
        raise InvalidArgument.of("page_size", "must not be negative")
    return min(requested or settings.default_page_size, settings.max_page_size)


def encode_page_token(kind: str, last_id: str, flags: str = "") -> str:
    return base64.urlsafe_b64encode(json.dumps([kind, last_id, flags]).encode()).decode().rstrip("=")


def decode_page_token(token: str, kind: str, flags: str = "") -> str:
    """The last id of the previous page. A token only positions the caller within their
    own rows (every query is the caller's); anything malformed or of another list is 400."""
    if not token:
        return ""
    invalid = InvalidArgument.of("page_token", "invalid page token, or issued for a different query")
    try:
        found = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, binascii.Error):
        raise invalid from None
    if not (isinstance(found, list) and len(found) == 3 and found[0] == kind and found[2] == flags):
        raise invalid
    if not isinstance(found[1], str) or not is_uuid_text(found[1]):
        raise invalid
    return found[1]


def is_uuid_text(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


# ---------------------------------------------------------------- bills


class Bills:
    def __init__(
        self,
        db: Database,
        units: UnitsOfWork,
        settings: BillingSettings,
        calendars: Calendars,
        categories: CategoryCopies,
        ledger: LedgerClient,
    ) -> None:
        self.db = db
        self.categories = categories
        self.units = units
        self.settings = settings
        self.calendars = calendars
        self.ledger = ledger

    async def create(
        self, user_id: str, fields: BillInput, request_id: str, fingerprint: str
    ) -> billing_pb2.Bill:
        recurrence = parse_recurrence(fields.recurrence, fields.first_due)

        async def work(unit: UnitOfWork) -> billing_pb2.Bill:
            session = unit.session
            if await storage.count_bills(session, user_id) >= self.settings.max_bills:
                raise FailedPrecondition(f"at most {self.settings.max_bills} bills per user")
            await self.categories.tree_with(session, user_id, fields.category_id)
            now = utcnow()
            bill = Bill(
                bill_id=new_id(),
                user_id=user_id,
                payee=fields.payee,
                amount_minor=fields.amount,
                currency=fields.currency,
                category_id=fields.category_id or "",
                recurrence=recurrence.text,
                first_due=fields.first_due,
                remind_days_before=fields.remind_days_before,
                autopay=fields.autopay,
                version=1,
                created_at=now,
                updated_at=now,
            )
            await storage.save_bill(session, bill, merchant_key(bill.payee), new=True)
            return await self._proto(session, bill)

        key = request_key(user_id, "CreateBill", request_id)
        return await self.units.once(key, fingerprint, billing_pb2.Bill, work)

    async def get(self, user_id: str, bill_id: str) -> billing_pb2.Bill:
        async with self.db.read() as connection:
            return await self._proto(connection, await self._bill(connection, user_id, bill_id))

    async def list(self, user_id: str, page_size: int, page_token: str) -> billing_pb2.ListBillsResponse:
        size = page_size_of(page_size, self.settings)
        after = decode_page_token(page_token, "bills")
        async with self.db.read() as connection:
            found = await storage.load_bills(connection, user_id, after=after, limit=size + 1)
            bills = await self._protos(connection, found[:size])
        next_token = encode_page_token("bills", found[size - 1].bill_id) if len(found) > size else ""
        return billing_pb2.ListBillsResponse(bills=bills, next_page_token=next_token)

    async def update(
        self, user_id: str, bill_id: str, etag: str, requested: dict[str, Any]
    ) -> billing_pb2.Bill:
        async with self.units.begin() as unit:
            session = unit.session
            bill = await self._bill(session, user_id, bill_id, lock=True)
            check_etag(etag, bill.etag)
            fields = validated(
                BillInput, {**bill_data(bill), **requested}, prefix="bill.", context=self.settings
            )
            recurrence = parse_recurrence(fields.recurrence, fields.first_due, field="bill.recurrence")
            await self.categories.tree_with(session, user_id, changed_category(bill, fields))
            changed = replace(
                bill,
                payee=fields.payee,
                amount_minor=fields.amount,
                currency=fields.currency,
                category_id=fields.category_id or "",
                recurrence=recurrence.text,
                first_due=fields.first_due,
                remind_days_before=fields.remind_days_before,
                autopay=fields.autopay,
                version=bill.version + 1,
                updated_at=utcnow(),
            )
            await storage.save_bill(session, changed, merchant_key(changed.payee), new=False)
            return await self._proto(session, changed)

    async def delete(self, user_id: str, bill_id: str, etag: str) -> None:
        async with self.units.begin() as unit:
            bill = await self._bill(unit.session, user_id, bill_id, lock=True)
            check_etag(etag, bill.etag)
            await storage.delete_bill(unit.session, bill_id)

    async def occurrences(
        self, user_id: str, bill_id: str, start: date | None, end: date | None
    ) -> billing_pb2.ListBillOccurrencesResponse:
        async with self.db.read() as connection:
            bill = await self._bill(connection, user_id, bill_id)
            _, today = await self.calendars.today(connection, user_id)
            window = timedelta(days=self.settings.occurrence_window_days)
            start, end = start or today - window, end or today + window
            due_dates = parse_recurrence(bill.recurrence, bill.first_due).occurrences(start, end)[
                :MAX_OCCURRENCES
            ]
            settled = await storage.load_settlements(connection, [bill_id], start, end)
        views = occurrence_views(
            bill,
            due_dates,
            {due: settlement for (_, due), settlement in settled.items()},
            today,
            self.settings.alerts.overdue_grace_days,
        )
        return billing_pb2.ListBillOccurrencesResponse(
            occurrences=[occurrence_proto(view, bill.currency) for view in views]
        )

    async def pay(
        self, user_id: str, bill_id: str, due_on: date, amount: str, paid_on: date | None
    ) -> billing_pb2.BillOccurrence:
        """Creates the payment's expense in the ledger with a request id derived from the
        occurrence, so a retry (or a second click) finds the same expense, then records it."""
        async with self.db.read() as connection:
            bill = await self._bill(connection, user_id, bill_id)
            _, today = await self.calendars.today(connection, user_id)
            settled = (await storage.load_settlements(connection, [bill_id], due_on, due_on)).get(
                (bill_id, due_on)
            )
            tree = await storage.category_tree(connection, user_id) if bill.category_id else None
        self._check_occurrence(bill, due_on)
        if settled is not None:
            return self._occurrence(bill, settled_as(settled, "paid"))
        amount_minor = payment_amount(amount, bill.currency) or bill.amount_minor
        expense = await self.ledger.create_expense_for(
            user_id,
            "recurring",
            ledger_pb2.CreateExpenseRequest(
                request_id=str(uuid.uuid5(PAYMENT_NAMESPACE, f"{bill_id}/{due_on}")),
                amount=format_amount(amount_minor, bill.currency),
                currency=bill.currency,
                spent_on=(paid_on or today).isoformat(),
                category_id=live_category(tree, bill.category_id),
                merchant=bill.payee,
                note=f"{bill.payee}, due {due_on}",
            ),
            PAYMENT_FIELDS,
        )
        return await self._record(bill, Settlement(due_on, "paid", expense.expense_id, amount_minor))

    async def skip(self, user_id: str, bill_id: str, due_on: date) -> billing_pb2.BillOccurrence:
        async with self.db.read() as connection:
            bill = await self._bill(connection, user_id, bill_id)
            settled = (await storage.load_settlements(connection, [bill_id], due_on, due_on)).get(
                (bill_id, due_on)
            )
        self._check_occurrence(bill, due_on)
        if settled is not None:
            return self._occurrence(bill, settled_as(settled, "skipped"))
        return await self._record(bill, Settlement(due_on, "skipped", "", 0))

    async def _record(self, bill: Bill, settlement: Settlement) -> billing_pb2.BillOccurrence:
        """Stores the settlement; an occurrence settled meanwhile keeps its first one."""
        async with self.units.begin() as unit:
            if not await storage.settle(unit.session, bill.bill_id, settlement, utcnow()):
                key = (bill.bill_id, settlement.due_on)
                found = await storage.load_settlements(
                    unit.session, [bill.bill_id], settlement.due_on, settlement.due_on
                )
                settlement = found[key]
        return self._occurrence(bill, settlement)

    def _occurrence(self, bill: Bill, settlement: Settlement) -> billing_pb2.BillOccurrence:
        amount = settlement.amount_minor if settlement.status == "paid" else bill.amount_minor
        return billing_pb2.BillOccurrence(
            due_date=settlement.due_on.isoformat(),
            amount=format_amount(amount, bill.currency),
            currency=bill.currency,
            status=settlement.status,
            expense_id=settlement.expense_id,
        )

    @staticmethod
    def _check_occurrence(bill: Bill, due_on: date) -> None:
        if due_on not in parse_recurrence(bill.recurrence, bill.first_due).occurrences(due_on, due_on):
            raise InvalidArgument.of("due_date", "not an occurrence of this bill")

    async def suggestions(self, user_id: str) -> list[Suggestion]:
        rules = self.settings.subscriptions
        async with self.db.read() as connection:
            _, today = await self.calendars.today(connection, user_id)
            rows = await storage.charges_since(
                connection, user_id, today - timedelta(days=rules.lookback_days), rules.min_occurrences
            )
            bills = await storage.load_bills(connection, user_id)
        charges = [Charge(r.expense_id, r.spent_on, r.merchant, r.amount_minor, r.currency) for r in rows]
        detection = DetectionRules(
            min_occurrences=rules.min_occurrences, amount_tolerance_percent=rules.amount_tolerance_percent
        )
        similarity = self.settings.matching.payee_similarity
        known = [(merchant_key(bill.payee), bill.currency) for bill in bills]
        return [
            suggestion
            for suggestion in detect_subscriptions(charges, today, detection)
            if not any(
                currency == suggestion.currency and payee_matches(key, suggestion.merchant_key, similarity)
                for key, currency in known
            )
        ]

    async def list_suggestions(self, user_id: str) -> billing_pb2.ListBillSuggestionsResponse:
        found = await self.suggestions(user_id)
        return billing_pb2.ListBillSuggestionsResponse(suggestions=[suggestion_proto(s) for s in found])

    async def accept(
        self,
        user_id: str,
        suggestion_id: str,
        category_id: str,
        remind_days_before: int,
        request_id: str,
        fingerprint: str,
    ) -> billing_pb2.Bill:
        found = {s.suggestion_id: s for s in await self.suggestions(user_id)}.get(suggestion_id)
        if found is None:
            raise NotFound("suggestion", suggestion_id)
        data = {
            "payee": found.payee,
            "amount": format_amount(found.amount_minor, found.currency),
            "currency": found.currency,
            "category_id": category_id,
            "recurrence": found.recurrence,
            "first_due": found.next_due.isoformat(),
            "remind_days_before": remind_days_before,
            "autopay": False,
        }
        fields = validated(BillInput, data, context=self.settings)
        return await self.create(user_id, fields, request_id, fingerprint)

    async def _bill(self, connection: Queryable, user_id: str, bill_id: str, lock: bool = False) -> Bill:
        bill = await storage.load_bill(connection, user_id, bill_id, lock=lock)
        if bill is None:
            raise NotFound("bill", bill_id)
        return bill

    async def _proto(self, connection: Queryable, bill: Bill) -> billing_pb2.Bill:
        return (await self._protos(connection, [bill]))[0]

    @staticmethod
    async def _protos(connection: Queryable, bills: Sequence[Bill]) -> list[billing_pb2.Bill]:
        """The bills with their next_due: the earliest occurrence not paid or skipped,
        however old (ListBillOccurrences calls the older ones overdue), read in one query."""
        settled = await storage.settled_since_first_due(connection, [bill.bill_id for bill in bills])
        protos = []
        for bill in bills:
            due_dates = parse_recurrence(bill.recurrence, bill.first_due).each()
            due_on = first_open(due_dates, settled[bill.bill_id])
            protos.append(bill_proto(bill, due_on.isoformat() if due_on else ""))
        return protos


def settled_as(settled: Settlement, wanted: str) -> Settlement:
    """A retried pay (skip) answers the first one's settlement; paying a skipped occurrence
    (skipping a paid one) is refused: a 200 saying "skipped" to a payment recorded nothing."""
    if settled.status != wanted:
        raise FailedPrecondition(f"the occurrence of {settled.due_on} is {settled.status} already")
    return settled


def live_category(tree: CategoryTree | None, category_id: str) -> str:
    """Where a bill's category's expenses go now: a deleted category's reassignment,
    else none (the ledger refuses an expense in a deleted category)."""
    if tree is None or not category_id:
        return category_id
    live = tree.resolve(category_id)
    known = tree.get(live)
    return "" if known is not None and known.deleted else live


def bill_data(bill: Bill) -> dict[str, Any]:
    return {
        "payee": bill.payee,
        "amount": format_amount(bill.amount_minor, bill.currency),
        "currency": bill.currency,
        "category_id": bill.category_id,
        "recurrence": bill.recurrence,
        "first_due": bill.first_due.isoformat(),
        "remind_days_before": bill.remind_days_before,
        "autopay": bill.autopay,
    }


# ---------------------------------------------------------------- alerts


class Alerts:
    def __init__(self, db: Database, units: UnitsOfWork, settings: BillingSettings) -> None:
        self.db = db
        self.units = units
        self.settings = settings

    async def list(
        self, user_id: str, page_size: int, page_token: str, unacknowledged_only: bool
    ) -> billing_pb2.ListAlertsResponse:
        size = page_size_of(page_size, self.settings)
        flags = "open" if unacknowledged_only else ""
        before = decode_page_token(page_token, "alerts", flags)
        async with self.db.read() as connection:
            found = await storage.list_alerts(connection, user_id, before, size + 1, unacknowledged_only)
        next_token = encode_page_token("alerts", found[size - 1].alert_id, flags) if len(found) > size else ""
        return billing_pb2.ListAlertsResponse(
            alerts=[alert_proto(a) for a in found[:size]], next_page_token=next_token
        )

    async def acknowledge(self, user_id: str, alert_id: str) -> billing_pb2.Alert:
        async with self.units.begin() as unit:
            alert = await storage.acknowledge_alert(unit.session, user_id, alert_id, utcnow())
        if alert is None:
            raise NotFound("alert", alert_id)
        return alert_proto(alert)

    async def settings_of(self, user_id: str) -> billing_pb2.AlertSettings:
        async with self.db.read() as connection:
            muted = await storage.muted_rules(connection, user_id)
        return _settings_proto(muted)

    async def mute(self, user_id: str, rule_types: tuple[str, ...]) -> billing_pb2.AlertSettings:
        async with self.units.begin() as unit:
            await storage.set_muted_rules(unit.session, user_id, rule_types)
        return _settings_proto(set(rule_types))


def _settings_proto(muted: set[str]) -> billing_pb2.AlertSettings:
    return billing_pb2.AlertSettings(
        rules=[
            billing_pb2.AlertRule(type=rule, description=RULE_DESCRIPTIONS[rule], muted=rule in muted)
            for rule in RULE_TYPES
        ]
    )
