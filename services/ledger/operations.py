"""The ledger's use cases. Each write is one transaction holding the change,
its append-only ledger entry and its outbox event, so an event exists exactly
when its change committed. Every query is scoped to the caller's user id."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from expense.events.v1 import events_pb2
from expense.ledger.v1 import ledger_pb2
from services.kit.db.engine import Database
from services.kit.db.idempotency import stored_answers_of
from services.kit.db.sql import Query, insert_many, one_round_trip
from services.kit.domain.errors import (
    Aborted,
    FailedPrecondition,
    FieldViolation,
    NotFound,
    ResourceExhausted,
)
from services.kit.domain.ids import new_id
from services.kit.domain.timestamps import utcnow
from services.kit.domain.validation import violations_of
from services.kit.events.outbox import Outbox
from services.ledger import storage
from services.ledger.domain import (
    Category,
    CategoryTree,
    Cursor,
    DefaultCategory,
    Expense,
    ExpenseFilter,
    LedgerEntry,
    apply_expense_changes,
    decode_page_token,
    encode_page_token,
    entry,
    etag_matches,
    with_money_pair,
)
from services.ledger.inputs import CategoryInput, ExpenseInput, ImportRowInput, ListInput, validate
from services.ledger.settings import LedgerSettings

IMPORT_METHOD = "ImportExpenses"
IMPORT_ATTEMPTS = 3
# Users known to have their default categories, remembered per process.
SEEDED_CACHE_MAX = 100_000


@dataclass(frozen=True)
class Page:
    expenses: list[Expense]
    next_page_token: str
    total_size: int


@dataclass(frozen=True)
class ImportRow:
    """One row to import: what the client sent (fingerprinted before defaults
    were applied) and the values to validate."""

    fingerprint: str
    data: dict[str, Any]


@dataclass(frozen=True)
class NewExpense:
    """One expense to create: by whom, for whom, with which validated fields."""

    actor: str
    user_id: str
    fields: ExpenseInput
    source: str


@dataclass
class RowOutcome:
    status: str  # "created", "duplicate" or "invalid"
    expense_id: str = ""
    errors: list[FieldViolation] = field(default_factory=list)


def expense_snapshot(expense: Expense) -> events_pb2.ExpenseSnapshot:
    return events_pb2.ExpenseSnapshot(
        expense_id=expense.expense_id,
        amount_minor=expense.amount_minor,
        currency=expense.currency,
        spent_on=expense.spent_on.isoformat(),
        category_id=expense.category_id or "",
        merchant=expense.merchant,
        source=expense.source,
        version=expense.version,
    )


def category_changed(
    category: Category, *, deleted: bool = False, reassigned_to: str = ""
) -> events_pb2.CategoryChanged:
    return events_pb2.CategoryChanged(
        category_id=category.category_id,
        name=category.name,
        parent_id=category.parent_id or "",
        deleted=deleted,
        reassigned_to=reassigned_to,
    )


def not_found(expense_id: str) -> NotFound:
    """The same answer for a missing id and for another user's id."""
    return NotFound("expense", expense_id)


class Ledger:
    def __init__(
        self, db: Database, outbox: Outbox, settings: LedgerSettings, defaults: Sequence[DefaultCategory]
    ) -> None:
        self.db = db
        self.outbox = outbox
        self.settings = settings
        self.defaults = tuple(defaults)
        self._seeded: set[str] = set()

    # ------------------------------------------------------------ categories

    async def ensure_categories(self, user_id: str) -> None:
        """Gives a user the default categories on first use: exactly once, even
        when several first requests race (the owner row is claimed by one of them)."""
        if user_id in self._seeded:
            return
        async with self.db.transaction() as session:
            if not await storage.is_category_owner(session, user_id):
                now = utcnow()
                if await storage.claim_category_owner(session, user_id, now):
                    seeded = [
                        Category(new_id(), user_id, default.name, None, default.color, default.icon, now, now)
                        for default in self.defaults
                    ]
                    await storage.insert_categories(session, seeded)
                    await self.outbox.add_many(session, [(user_id, category_changed(c)) for c in seeded])
        if len(self._seeded) >= SEEDED_CACHE_MAX:
            self._seeded.clear()
        self._seeded.add(user_id)

    async def list_categories(self, user_id: str) -> list[Category]:
        await self.ensure_categories(user_id)
        async with self.db.read() as connection:
            return await storage.user_categories(connection, user_id)

    async def create_category(self, session: AsyncSession, user_id: str, fields: CategoryInput) -> Category:
        """Runs in the caller's transaction (idempotent creates share it)."""
        tree = await self._locked_tree(session, user_id)
        if len(tree.categories) >= self.settings.max_categories:
            raise ResourceExhausted(f"at most {self.settings.max_categories} categories per user")
        assert fields.name is not None
        tree.check_name_free(fields.name)
        tree.check_parent("", fields.parent_id, self.settings.max_category_depth, "parent_id")
        now = utcnow()
        category = Category(
            new_id(), user_id, fields.name, fields.parent_id, fields.color or "", fields.icon or "", now, now
        )
        await storage.insert_categories(session, [category])
        await self.outbox.add(session, user_id, category_changed(category))
        return category

    async def update_category(self, user_id: str, category_id: str, fields: CategoryInput) -> Category:
        await self.ensure_categories(user_id)
        async with self.db.transaction() as session:
            tree = await self._locked_tree(session, user_id)
            current = tree.get(category_id)
            changes = fields.changes()
            if "name" in changes:
                tree.check_name_free(changes["name"], except_id=category_id)
            if "parent_id" in changes:
                tree.check_parent(
                    category_id, changes["parent_id"], self.settings.max_category_depth, "category.parent_id"
                )
            updated = replace(current, **changes, update_time=utcnow())
            await storage.save_category(session, updated)
            await self.outbox.add(session, user_id, category_changed(updated))
        return updated

    async def delete_category(self, actor: str, user_id: str, category_id: str, reassign_to: str) -> int:
        """Refused while expenses or subcategories use the category, unless they move
        to reassign_to. Returns how many expenses moved."""
        await self.ensure_categories(user_id)
        async with self.db.transaction() as session:
            tree = await self._locked_tree(session, user_id)
            category = tree.get(category_id)
            # Locked before its expenses are read, so no new expense can join it meanwhile.
            await storage.lock_category(session, user_id, category_id)
            children = [tree.get(child) for child in tree.children.get(category_id, ())]
            moved = 0
            if reassign_to:
                tree.check_reassignment(category_id, reassign_to, self.settings.max_category_depth)
                moved = await self._move_expenses(session, actor, user_id, category_id, reassign_to)
                for child in children:
                    moved_child = replace(child, parent_id=reassign_to, update_time=utcnow())
                    await storage.save_category(session, moved_child)
                    await self.outbox.add(session, user_id, category_changed(moved_child))
            elif children:
                raise FailedPrecondition(
                    "the category has subcategories: move or delete them, or set reassign_to"
                )
            elif await storage.has_live_expenses(session, user_id, category_id):
                raise FailedPrecondition("expenses use the category: set reassign_to to move them to another")
            await storage.delete_category(session, user_id, category_id)
            changed = category_changed(category, deleted=True, reassigned_to=reassign_to)
            await self.outbox.add(session, user_id, changed)
        return moved

    async def lock_categories(self, session: AsyncSession, user_id: str) -> None:
        """Serialises changes to one user's category tree until the transaction ends."""
        await storage.lock_category_tree(session, user_id)

    async def _locked_tree(self, session: AsyncSession, user_id: str) -> CategoryTree:
        await self.lock_categories(session, user_id)
        return CategoryTree.of(await storage.user_categories(session, user_id))

    async def _move_expenses(
        self, session: AsyncSession, actor: str, user_id: str, source: str, target: str
    ) -> int:
        """Moves a category's expenses, each with its audit entry; consumers learn of
        the move from the category.changed event (reassigned_to), not one event per expense."""
        before = await storage.expenses_in_categories(session, user_id, [source], for_update=True)
        now = utcnow()
        await storage.move_expenses(session, user_id, [source], target, now)
        after = [apply_expense_changes(expense, {"category_id": target}, now) for expense in before]
        await storage.add_entries(
            session, [entry("update", actor, now, b, a) for b, a in zip(before, after, strict=True)]
        )
        return len(after)

    async def _require_categories(
        self, session: AsyncSession, user_id: str, category_ids: Sequence[str | None]
    ) -> None:
        """The categories exist and are the caller's; share-locked so that a
        concurrent delete waits for this transaction (and then sees its expense)."""
        wanted = {category_id for category_id in category_ids if category_id}
        found = await storage.find_categories(session, user_id, wanted, share_lock=True)
        missing = sorted(wanted - found)
        if missing:
            raise NotFound("category", missing[0])

    # -------------------------------------------------------------- expenses

    async def create_expense(
        self, session: AsyncSession, actor: str, user_id: str, fields: ExpenseInput, source: str
    ) -> Expense:
        """Runs in the caller's transaction (idempotent creates share it)."""
        [outcome] = await self.create_expenses(session, [NewExpense(actor, user_id, fields, source)])
        if isinstance(outcome, NotFound):
            raise outcome
        return outcome

    @staticmethod
    def categories_read(session: AsyncSession, requests: Sequence[NewExpense]) -> Query:
        """The read of create_expenses (share-locking the categories the requests name),
        for a caller to send with reads of its own in one round trip; storage.owned_in()
        reads its rows."""
        wanted = [(r.user_id, r.fields.category_id) for r in requests if r.fields.category_id]
        return storage.owned_categories_query(session.bind.dialect.name, wanted)

    async def create_expenses(
        self,
        session: AsyncSession,
        requests: Sequence[NewExpense],
        owned: set[tuple[str, str]] | None = None,
    ) -> list[Expense | NotFound]:
        """Creates of any users in the caller's transaction (a group commit), one
        outcome per request: a request naming a category that is not its user's gets
        NotFound (as a missing one would) and is not created; the others are. The
        categories are share-locked as in _require_categories, by categories_read(),
        unless the caller ran it and gives what it found (`owned`)."""
        if owned is None:
            owned = storage.owned_in(await session.execute(*self.categories_read(session, requests)))
        now = utcnow()
        outcomes: list[Expense | NotFound] = []
        created: list[tuple[str, Expense]] = []
        for request in requests:
            category_id = request.fields.category_id
            if category_id and (request.user_id, category_id) not in owned:
                outcomes.append(NotFound("category", category_id))
                continue
            expense = self._new_expense(request.user_id, request.fields, request.source, now)
            outcomes.append(expense)
            created.append((request.actor, expense))
        await self._add_created(session, created, now)
        return outcomes

    async def _add_created(
        self, session: AsyncSession, created: Sequence[tuple[str, Expense]], now: datetime
    ) -> None:
        """New expenses (with their actors) and their audit entries and expense.created events."""
        expenses = [expense for _, expense in created]
        await storage.insert_expenses(session, expenses)
        await storage.add_entries(
            session, [entry("create", actor, now, None, expense) for actor, expense in created]
        )
        await self.outbox.add_many(
            session,
            [
                (
                    expense.user_id,
                    events_pb2.ExpenseCreated(expense=expense_snapshot(expense)),
                )
                for expense in expenses
            ],
        )

    @staticmethod
    def _new_expense(user_id: str, fields: ExpenseInput, source: str, now: datetime) -> Expense:
        assert fields.amount is not None and fields.currency is not None and fields.spent_on is not None
        return Expense(
            expense_id=new_id(),
            user_id=user_id,
            amount_minor=fields.amount,
            currency=fields.currency,
            spent_on=fields.spent_on,
            category_id=fields.category_id,
            merchant=fields.merchant or "",
            note=fields.note or "",
            tags=fields.tags or (),
            source=source,
            version=1,
            create_time=now,
            update_time=now,
        )

    async def get_expense(self, user_id: str, expense_id: str) -> Expense:
        async with self.db.read() as connection:
            expense = await storage.find_expense(connection, user_id, expense_id)
        if expense is None:
            raise not_found(expense_id)
        return expense

    async def update_expense(
        self, actor: str, user_id: str, expense_id: str, etag: str, requested: Mapping[str, Any]
    ) -> Expense:
        """Changes the requested fields if etag (when given) still matches. The row is
        locked, then written only at the version read: of concurrent updates carrying
        the same etag exactly one wins; the others see a new version and get ABORTED."""
        async with self.db.transaction() as session:
            current = await storage.find_expense(session, user_id, expense_id, for_update=True)
            if current is None:
                raise not_found(expense_id)
            fields = validate(
                ExpenseInput, with_money_pair(current, requested), self.settings, prefix="expense."
            )
            if etag and not etag_matches(etag, current.version):
                raise Aborted("the expense changed since it was read: get it again and retry")
            changes = fields.changes()
            if changes.get("category_id"):
                await self._require_categories(session, user_id, [changes["category_id"]])
            now = utcnow()
            updated = apply_expense_changes(current, changes, now)
            if not await storage.save_expense(session, updated, current.version):
                raise Aborted("the expense changed since it was read: get it again and retry")
            await storage.add_entries(session, [entry("update", actor, now, current, updated)])
            message = events_pb2.ExpenseUpdated(
                before=expense_snapshot(current), after=expense_snapshot(updated)
            )
            await self.outbox.add(session, user_id, message)
        return updated

    async def delete_expense(self, actor: str, user_id: str, expense_id: str, etag: str) -> None:
        """Soft delete: gone from lists and reports, its history kept."""
        async with self.db.transaction() as session:
            current = await storage.find_expense(session, user_id, expense_id, for_update=True)
            if current is None:
                raise not_found(expense_id)
            if etag and not etag_matches(etag, current.version):
                raise Aborted("the expense changed since it was read: get it again and retry")
            now = utcnow()
            deleted = current._replace(version=current.version + 1, update_time=now, delete_time=now)
            if not await storage.save_expense(session, deleted, current.version):
                raise Aborted("the expense changed since it was read: get it again and retry")
            await storage.add_entries(session, [entry("delete", actor, now, current, None)])
            message = events_pb2.ExpenseDeleted(before=expense_snapshot(current))
            await self.outbox.add(session, user_id, message)

    async def history(self, user_id: str, expense_id: str) -> list[LedgerEntry]:
        async with self.db.read() as connection:
            entries = await storage.entries_of(connection, user_id, expense_id)
        if not entries:
            raise not_found(expense_id)
        return entries

    async def list_expenses(self, user_id: str, query: ListInput) -> Page:
        fingerprint = query.fingerprint()
        cursor = (
            decode_page_token(query.page_token, fingerprint, query.order_by) if query.page_token else None
        )
        # Outside a transaction: the category tree may be read in another snapshot
        # than the page, which is harmless; the page and its count share one statement.
        async with self.db.read() as connection:
            category_ids = None
            if query.category_id:
                tree = CategoryTree.of(await storage.user_categories(connection, user_id))
                tree.get(query.category_id)
                category_ids = tuple(tree.subtree(query.category_id))
            where = ExpenseFilter(
                from_date=query.from_date,
                to_date=query.to_date,
                category_ids=category_ids,
                text=query.q,
                min_value=query.min_amount,
                max_value=query.max_amount,
                tag_key=query.tag,
            )
            rows, total = await storage.list_expenses(
                connection,
                user_id,
                where,
                query.order_by,
                cursor,
                query.page_size + 1,
                self.settings.max_counted_rows,
            )
        page = rows[: query.page_size]
        token = ""
        if len(rows) > query.page_size:
            last = page[-1]
            token = encode_page_token(Cursor(query.order_by.key_of(last), last.expense_id), fingerprint)
        return Page(page, token, total)

    # ---------------------------------------------------------------- import

    async def import_expenses(self, actor: str, user_id: str, rows: Sequence[ImportRow]) -> list[RowOutcome]:
        """Creates the valid rows not imported before, all in one transaction; a row
        whose request_id was imported already is a duplicate (same row) or invalid."""
        outcomes: list[RowOutcome | None] = [None] * len(rows)
        candidates: dict[int, ImportRowInput] = {}
        first_index: dict[str, int] = {}
        repeats: dict[int, int] = {}
        for index, row in enumerate(rows):
            try:
                fields = ImportRowInput.model_validate(row.data, context=self.settings)
            except ValidationError as error:
                outcomes[index] = RowOutcome("invalid", errors=violations_of(error))
                continue
            earlier = first_index.setdefault(fields.request_id, index)
            if earlier == index:
                candidates[index] = fields
            elif rows[earlier].fingerprint == row.fingerprint:
                repeats[index] = earlier
            else:
                outcomes[index] = RowOutcome("invalid", errors=[_reused_request_id()])
        if candidates:
            await self.ensure_categories(user_id)
        for attempt in range(IMPORT_ATTEMPTS):
            try:
                async with self.db.transaction() as session:
                    stored = await self._import_batch(session, actor, user_id, candidates, rows)
                break
            except IntegrityError:
                # A concurrent import stored one of these request ids first: the retry sees it.
                if attempt == IMPORT_ATTEMPTS - 1:
                    raise
        outcomes_by_index = {**{i: o for i, o in enumerate(outcomes) if o is not None}, **stored}
        for index, earlier in repeats.items():
            first = outcomes_by_index[earlier]
            outcomes_by_index[index] = (
                first if first.status == "invalid" else RowOutcome("duplicate", first.expense_id)
            )
        return [outcomes_by_index[index] for index in range(len(rows))]

    async def _import_batch(
        self,
        session: AsyncSession,
        actor: str,
        user_id: str,
        candidates: Mapping[int, ImportRowInput],
        rows: Sequence[ImportRow],
    ) -> dict[int, RowOutcome]:
        if not candidates:
            return {}
        keys = {fields.request_id: index for index, fields in candidates.items()}
        stored = await self._stored_import_keys(session, user_id, list(keys))
        wanted_categories = {fields.category_id for fields in candidates.values() if fields.category_id}
        known_categories = await storage.find_categories(session, user_id, wanted_categories, share_lock=True)
        outcomes: dict[int, RowOutcome] = {}
        created: list[tuple[ImportRowInput, Expense]] = []
        now = utcnow()
        for index, fields in candidates.items():
            previous = stored.get(fields.request_id)
            if previous is not None:
                fingerprint, expense_id = previous
                outcomes[index] = (
                    RowOutcome("duplicate", expense_id)
                    if fingerprint == rows[index].fingerprint
                    else RowOutcome("invalid", errors=[_reused_request_id()])
                )
            elif fields.category_id and fields.category_id not in known_categories:
                outcomes[index] = RowOutcome(
                    "invalid", errors=[FieldViolation("category_id", "no such category")]
                )
            else:
                expense = self._new_expense(user_id, fields, "import", now)
                created.append((fields, expense))
                outcomes[index] = RowOutcome("created", expense.expense_id)
        async with one_round_trip(session):
            await self._add_created(session, [(actor, expense) for _, expense in created], now)
            await self._store_import_keys(
                session,
                user_id,
                [(f.request_id, rows[keys[f.request_id]].fingerprint, e) for f, e in created],
                now,
            )
        return outcomes

    async def _stored_import_keys(
        self, session: AsyncSession, user_id: str, request_ids: list[str]
    ) -> dict[str, tuple[str, str]]:
        """{request_id: (fingerprint, expense_id)} of rows imported before."""
        table = storage.idempotency_keys
        stored = await stored_answers_of(session, table, user_id, IMPORT_METHOD, request_ids)
        return {
            request_id: (answer.fingerprint, _imported_expense_id(answer.response))
            for request_id, answer in stored.items()
        }

    async def _store_import_keys(
        self, session: AsyncSession, user_id: str, created: list[tuple[str, str, Expense]], now: datetime
    ) -> None:
        if not created:
            return
        # Sorted, so concurrent imports with overlapping ids lock keys in one order (no deadlock).
        rows = [
            {
                "user_id": user_id,
                "method": IMPORT_METHOD,
                "request_id": request_id,
                "fingerprint": fingerprint,
                "response": ledger_pb2.ImportRowResult(
                    status="created", expense_id=expense.expense_id
                ).SerializeToString(),
                "created_at": now,
            }
            for request_id, fingerprint, expense in sorted(created, key=lambda item: item[0])
        ]
        await insert_many(session, storage.idempotency_keys, rows)

    # --------------------------------------------------------------- streams

    async def stream_expenses(self, user_id: str) -> AsyncIterator[list[Expense]]:
        """Every live expense of one user (or of everyone when user_id is empty), in
        batches, each read by its own statement (its own snapshot)."""
        size = self.settings.stream_batch_size
        user_after: tuple[date, str] | None = None
        all_after = ""
        while True:
            async with self.db.read() as connection:
                if user_id:
                    batch = await storage.stream_expenses(connection, user_id, user_after, size)
                else:
                    batch = await storage.stream_all_expenses(connection, all_after, size)
            if batch:
                yield batch
            if len(batch) < size:
                return
            user_after = (batch[-1].spent_on, batch[-1].expense_id)
            all_after = batch[-1].expense_id

    async def stream_categories(self, user_id: str) -> AsyncIterator[list[Category]]:
        size = self.settings.stream_batch_size
        after = ""
        while True:
            async with self.db.read() as connection:
                batch = await storage.stream_categories(connection, user_id or None, after, size)
            if batch:
                yield batch
            if len(batch) < size:
                return
            after = batch[-1].category_id


def _reused_request_id() -> FieldViolation:
    return FieldViolation("request_id", "already used for a different row")


def _imported_expense_id(response: bytes) -> str:
    return ledger_pb2.ImportRowResult.FromString(response).expense_id
