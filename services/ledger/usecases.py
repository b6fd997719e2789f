"""The ledger's use cases, one method per RPC. Each write runs in a unit of work
(services/kit/db/unit_of_work.py) holding the change, its append-only ledger entry,
its outbox events and its AIP-155 answer: they commit together or not at all.
Concurrent creates share one unit of work (a group commit). Reads run outside any
transaction. Every query is scoped to the caller's user id."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from expense.events.v1 import events_pb2
from expense.ledger.v1 import ledger_pb2
from services.kit.db.group_commit import GroupCommitter
from services.kit.db.idempotency import NewAnswer, RequestKey, StoredAnswer
from services.kit.db.sql import Query, one_round_trip
from services.kit.db.unit_of_work import UnitOfWork, UnitsOfWork
from services.kit.domain.errors import (
    Aborted,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
)
from services.kit.domain.ids import new_id
from services.kit.domain.timestamps import utcnow
from services.kit.domain.validation import violations_of
from services.ledger import storage
from services.ledger.convert import (
    category_changed,
    category_proto,
    expense_proto,
    expense_snapshot,
    imported_row,
)
from services.ledger.domain import (
    Category,
    CategoryTree,
    Count,
    Cursor,
    DefaultCategory,
    Expense,
    ExpenseFilter,
    LedgerEntry,
    PageTokens,
    RowOutcome,
    apply_expense_changes,
    entry,
    etag_matches,
    with_money_pair,
)
from services.ledger.inputs import CategoryInput, ExpenseInput, ImportRowInput, ListInput, validate
from services.ledger.settings import LedgerSettings

CREATE_EXPENSE = "CreateExpense"
CREATE_CATEGORY = "CreateCategory"
IMPORT_METHOD = "ImportExpenses"
CREATE_SOURCE = "manual"  # what an expense created through CreateExpense records as its source
IMPORT_ATTEMPTS = 3
# Users known to have their default categories, remembered per process.
SEEDED_CACHE_MAX = 100_000


@dataclass(frozen=True)
class Page:
    expenses: list[Expense]
    next_page_token: str
    # None when the request skipped the count.
    total: Count | None


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


@dataclass(frozen=True)
class PendingCreate:
    """A CreateExpense waiting for its group commit, with its AIP-155 key (if any)."""

    expense: NewExpense
    key: RequestKey | None
    fingerprint: str


def create_conflict(create: PendingCreate) -> RequestKey | None:
    """Creates with one request id go in successive batches: the later sees the earlier's answer."""
    return create.key


def request_key(user_id: str, method: str, request_id: str) -> RequestKey | None:
    """The AIP-155 key of a call; none without a request_id (each call then runs)."""
    return RequestKey(user_id, method, request_id) if request_id else None


def replayed(answer: StoredAnswer, request_fingerprint: str) -> ledger_pb2.Expense | InvalidArgument:
    """A stored answer to a create, or the refusal of a reused request id, as a value."""
    try:
        return answer.replay(request_fingerprint, ledger_pb2.Expense)
    except InvalidArgument as error:
        return error


def not_found(expense_id: str) -> NotFound:
    """The same answer for a missing id and for another user's id."""
    return NotFound("expense", expense_id)


class Ledger:
    def __init__(
        self,
        units: UnitsOfWork,
        settings: LedgerSettings,
        defaults: Sequence[DefaultCategory],
        page_tokens: PageTokens,
    ) -> None:
        self.units = units
        self.db = units.db  # for reads, which need no unit of work
        self.settings = settings
        self.defaults = tuple(defaults)
        self.page_tokens = page_tokens
        self._seeded: set[str] = set()
        batching = settings.create_batching
        self.creates = GroupCommitter(
            self._create_batch,
            self._create_alone,
            max_batch_size=batching.max_batch_size,
            max_concurrent_batches=batching.max_concurrent_batches,
            conflict_key=create_conflict,
            linger=batching.linger_ms / 1000,
        )

    # ------------------------------------------------------------ categories

    async def ensure_categories(self, user_id: str) -> None:
        """Gives a user the default categories on first use: exactly once, even
        when several first requests race (the owner row is claimed by one of them)."""
        if user_id in self._seeded:
            return
        async with self.units.begin() as unit:
            if not await storage.is_category_owner(unit.session, user_id):
                now = utcnow()
                if await storage.claim_category_owner(unit.session, user_id, now):
                    seeded = [
                        Category(new_id(), user_id, default.name, None, default.color, default.icon, now, now)
                        for default in self.defaults
                    ]
                    await storage.insert_categories(unit.session, seeded)
                    await unit.publish_all([(user_id, category_changed(c)) for c in seeded])
        if len(self._seeded) >= SEEDED_CACHE_MAX:
            self._seeded.clear()
        self._seeded.add(user_id)

    async def list_categories(self, user_id: str) -> list[Category]:
        await self.ensure_categories(user_id)
        async with self.db.read() as connection:
            return await storage.user_categories(connection, user_id)

    async def create_category(
        self, user_id: str, fields: CategoryInput, request_id: str, request_fingerprint: str
    ) -> ledger_pb2.Category:
        """With a request_id, a retry gets the first answer back (AIP-155)."""
        await self.ensure_categories(user_id)

        async def work(unit: UnitOfWork) -> ledger_pb2.Category:
            return category_proto(await self._add_category(unit, user_id, fields))

        async def lock(unit: UnitOfWork) -> None:
            # The tree's lock, taken before the stored answer is looked up: a
            # concurrent retry waiting on it then finds the answer.
            await storage.lock_category_tree(unit.session, user_id)

        key = request_key(user_id, CREATE_CATEGORY, request_id)
        return await self.units.once(key, request_fingerprint, ledger_pb2.Category, work, lock)

    async def _add_category(self, unit: UnitOfWork, user_id: str, fields: CategoryInput) -> Category:
        tree = await self._locked_tree(unit.session, user_id)
        if len(tree.categories) >= self.settings.max_categories:
            raise ResourceExhausted(f"at most {self.settings.max_categories} categories per user")
        assert fields.name is not None
        tree.check_name_free(fields.name)
        tree.check_parent("", fields.parent_id, self.settings.max_category_depth, "parent_id")
        now = utcnow()
        category = Category(
            new_id(), user_id, fields.name, fields.parent_id, fields.color or "", fields.icon or "", now, now
        )
        await storage.insert_categories(unit.session, [category])
        await unit.publish(user_id, category_changed(category))
        return category

    async def update_category(self, user_id: str, category_id: str, fields: CategoryInput) -> Category:
        await self.ensure_categories(user_id)
        async with self.units.begin() as unit:
            tree = await self._locked_tree(unit.session, user_id)
            current = tree.get(category_id)
            changes = fields.changes()
            if "name" in changes:
                tree.check_name_free(changes["name"], except_id=category_id)
            if "parent_id" in changes:
                tree.check_parent(
                    category_id, changes["parent_id"], self.settings.max_category_depth, "category.parent_id"
                )
            updated = replace(current, **changes, update_time=utcnow())
            await storage.save_category(unit.session, updated)
            await unit.publish(user_id, category_changed(updated))
        return updated

    async def delete_category(self, actor: str, user_id: str, category_id: str, reassign_to: str) -> int:
        """Refused while expenses or subcategories use the category, unless they move
        to reassign_to. Returns how many expenses moved."""
        await self.ensure_categories(user_id)
        async with self.units.begin() as unit:
            tree = await self._locked_tree(unit.session, user_id)
            category = tree.get(category_id)
            # Locked before its expenses are read, so no new expense can join it meanwhile.
            await storage.lock_category(unit.session, user_id, category_id)
            children = [tree.get(child) for child in tree.children.get(category_id, ())]
            moved = 0
            if reassign_to:
                tree.check_reassignment(category_id, reassign_to, self.settings.max_category_depth)
                moved = await self._move_expenses(unit.session, actor, user_id, category_id, reassign_to)
                for child in children:
                    moved_child = replace(child, parent_id=reassign_to, update_time=utcnow())
                    await storage.save_category(unit.session, moved_child)
                    await unit.publish(user_id, category_changed(moved_child))
            elif children:
                raise FailedPrecondition(
                    "the category has subcategories: move or delete them, or set reassign_to"
                )
            elif await storage.has_live_expenses(unit.session, user_id, category_id):
                raise FailedPrecondition("expenses use the category: set reassign_to to move them to another")
            await storage.delete_category(unit.session, user_id, category_id)
            await unit.publish(user_id, category_changed(category, deleted=True, reassigned_to=reassign_to))
        return moved

    async def _locked_tree(self, session: AsyncSession, user_id: str) -> CategoryTree:
        """The user's categories, their changes serialised until the transaction ends."""
        await storage.lock_category_tree(session, user_id)
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

    # --------------------------------------------------------------- creates

    async def create_expense(
        self,
        user_id: str,
        fields: ExpenseInput,
        request_id: str,
        request_fingerprint: str,
        source: str = CREATE_SOURCE,
    ) -> ledger_pb2.Expense:
        """Joins the next group commit, answered exactly as if written alone; with a
        request_id, a retry gets the first answer back (AIP-155)."""
        await self.ensure_categories(user_id)
        expense = NewExpense(user_id, user_id, fields, source)
        key = request_key(user_id, CREATE_EXPENSE, request_id)
        return await self.creates.submit(PendingCreate(expense, key, request_fingerprint))

    async def _create_batch(
        self, creates: list[PendingCreate], next_may_start: Callable[[], None]
    ) -> list[ledger_pb2.Expense | Exception]:
        """Many creates in one unit of work, each answered as _create_alone would answer it."""
        written = False
        try:
            async with self.units.begin() as unit:
                outcomes = await self._write_creates(unit, creates)
                written = True
                next_may_start()  # only the COMMIT is left
        except DBAPIError as error:
            if written and error.connection_invalidated:
                # Lost during COMMIT, so the batch may have been stored: retrying each
                # create alone could store it twice. Each caller gets the error instead.
                return [error] * len(creates)
            raise
        return outcomes

    async def _write_creates(
        self, unit: UnitOfWork, creates: list[PendingCreate]
    ) -> list[ledger_pb2.Expense | Exception]:
        """AIP-155 as UnitsOfWork.once does it: a retried request id gets its stored
        answer (or INVALID_ARGUMENT for a different request); the other creates run.
        The stored answers and the categories are read in one round trip."""
        keys = [create.key for create in creates if create.key is not None]
        categories_read = self._categories_read(unit.session, [create.expense for create in creates])
        stored, [category_rows] = await unit.stored_answers_with(keys, [categories_read])
        replays = {
            index: replayed(stored[create.key], create.fingerprint)
            for index, create in enumerate(creates)
            if create.key is not None and create.key in stored
        }
        fresh = [create for index, create in enumerate(creates) if index not in replays]
        created = iter(await self._create_fresh(unit, fresh, storage.owned_in(category_rows)))
        return [replays[index] if index in replays else next(created) for index in range(len(creates))]

    async def _create_fresh(
        self, unit: UnitOfWork, creates: list[PendingCreate], owned: set[tuple[str, str]]
    ) -> list[ledger_pb2.Expense | Exception]:
        """The creates not answered before, and their answers, in one round trip."""
        async with one_round_trip(unit.session):
            outcomes = [
                outcome if isinstance(outcome, Exception) else expense_proto(outcome)
                for outcome in await self._create_expenses(unit, [c.expense for c in creates], owned)
            ]
            await unit.store_answers(
                [
                    NewAnswer(create.key, create.fingerprint, outcome)
                    for create, outcome in zip(creates, outcomes, strict=True)
                    if create.key is not None and isinstance(outcome, ledger_pb2.Expense)
                ]
            )
        return outcomes

    async def _create_alone(self, create: PendingCreate) -> ledger_pb2.Expense:
        """One create in its own unit of work: the fallback of a failed batch."""

        async def work(unit: UnitOfWork) -> ledger_pb2.Expense:
            [outcome] = await self._create_expenses(unit, [create.expense])
            if isinstance(outcome, NotFound):
                raise outcome
            return expense_proto(outcome)

        return await self.units.once(create.key, create.fingerprint, ledger_pb2.Expense, work)

    @staticmethod
    def _categories_read(session: AsyncSession, requests: Sequence[NewExpense]) -> Query:
        """The read of _create_expenses (share-locking the categories the requests name),
        for a caller to send with reads of its own in one round trip; storage.owned_in()
        reads its rows."""
        wanted = [(r.user_id, r.fields.category_id) for r in requests if r.fields.category_id]
        return storage.owned_categories_query(session.bind.dialect.name, wanted)

    async def _create_expenses(
        self, unit: UnitOfWork, requests: Sequence[NewExpense], owned: set[tuple[str, str]] | None = None
    ) -> list[Expense | NotFound]:
        """Creates of any users in one unit of work, one outcome per request: a request
        naming a category that is not its user's gets NotFound (as a missing one would)
        and is not created; the others are. The categories are share-locked as in
        _require_categories, by _categories_read(), unless the caller ran it and gives
        what it found (`owned`)."""
        if owned is None:
            read = self._categories_read(unit.session, requests)
            owned = storage.owned_in(await unit.session.execute(*read))
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
        await self._add_created(unit, created, now)
        return outcomes

    async def _add_created(
        self, unit: UnitOfWork, created: Sequence[tuple[str, Expense]], now: datetime
    ) -> None:
        """New expenses (with their actors) and their audit entries and expense.created events."""
        expenses = [expense for _, expense in created]
        await storage.insert_expenses(unit.session, expenses)
        await storage.add_entries(
            unit.session, [entry("create", actor, now, None, expense) for actor, expense in created]
        )
        await unit.publish_all(
            [
                (expense.user_id, events_pb2.ExpenseCreated(expense=expense_snapshot(expense)))
                for expense in expenses
            ]
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

    # -------------------------------------------------------------- expenses

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
        async with self.units.begin() as unit:
            current = await storage.find_expense(unit.session, user_id, expense_id, for_update=True)
            if current is None:
                raise not_found(expense_id)
            fields = validate(
                ExpenseInput, with_money_pair(current, requested), self.settings, prefix="expense."
            )
            if etag and not etag_matches(etag, current.version):
                raise Aborted(
                    "the expense changed since it was read: get it again and retry", "ETAG_MISMATCH"
                )
            changes = fields.changes()
            if changes.get("category_id"):
                await self._require_categories(unit.session, user_id, [changes["category_id"]])
            now = utcnow()
            updated = apply_expense_changes(current, changes, now)
            if not await storage.save_expense(unit.session, updated, current.version):
                raise Aborted(
                    "the expense changed since it was read: get it again and retry", "ETAG_MISMATCH"
                )
            await storage.add_entries(unit.session, [entry("update", actor, now, current, updated)])
            message = events_pb2.ExpenseUpdated(
                before=expense_snapshot(current), after=expense_snapshot(updated)
            )
            await unit.publish(user_id, message)
        return updated

    async def delete_expense(self, actor: str, user_id: str, expense_id: str, etag: str) -> int:
        """Soft delete: gone from lists and reports, its history kept. Returns the
        deletion's version (the deleted state's, plus one)."""
        async with self.units.begin() as unit:
            current = await storage.find_expense(unit.session, user_id, expense_id, for_update=True)
            if current is None:
                raise not_found(expense_id)
            if etag and not etag_matches(etag, current.version):
                raise Aborted(
                    "the expense changed since it was read: get it again and retry", "ETAG_MISMATCH"
                )
            now = utcnow()
            deleted = current._replace(version=current.version + 1, update_time=now, delete_time=now)
            if not await storage.save_expense(unit.session, deleted, current.version):
                raise Aborted(
                    "the expense changed since it was read: get it again and retry", "ETAG_MISMATCH"
                )
            await storage.add_entries(unit.session, [entry("delete", actor, now, current, None)])
            await unit.publish(user_id, events_pb2.ExpenseDeleted(before=expense_snapshot(current)))
        return deleted.version

    async def history(self, user_id: str, expense_id: str) -> list[LedgerEntry]:
        async with self.db.read() as connection:
            entries = await storage.entries_of(connection, user_id, expense_id)
        if not entries:
            raise not_found(expense_id)
        return entries

    async def list_expenses(self, user_id: str, query: ListInput) -> Page:
        page_query = query.page_query()
        cursor = None
        if query.page_token:
            cursor = self.page_tokens.decode(query.page_token, page_query, query.order_by)
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
                currency=query.currency,
            )
            rows, total = await storage.list_expenses(
                connection,
                user_id,
                where,
                query.order_by,
                cursor,
                query.page_size + 1,
                None if query.skip_total_size else self.settings.max_counted_rows,
            )
        page = rows[: query.page_size]
        token = ""
        if len(rows) > query.page_size:
            last = page[-1]
            token = self.page_tokens.encode(Cursor(query.order_by.key_of(last), last.expense_id), page_query)
        return Page(page, token, total)

    # ---------------------------------------------------------------- import

    async def import_expenses(self, actor: str, user_id: str, rows: Sequence[ImportRow]) -> list[RowOutcome]:
        """Creates the valid rows not imported before, all in one unit of work; a row
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
                async with self.units.begin() as unit:
                    stored = await self._import_batch(unit, actor, user_id, candidates, rows)
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
        unit: UnitOfWork,
        actor: str,
        user_id: str,
        candidates: Mapping[int, ImportRowInput],
        rows: Sequence[ImportRow],
    ) -> dict[int, RowOutcome]:
        if not candidates:
            return {}
        keys = {fields.request_id: index for index, fields in candidates.items()}
        stored = await self._stored_import_keys(unit, user_id, list(keys))
        wanted_categories = {fields.category_id for fields in candidates.values() if fields.category_id}
        known_categories = await storage.find_categories(
            unit.session, user_id, wanted_categories, share_lock=True
        )
        # An exported row read back into the same account: its request id is the expense's id.
        own = await storage.live_expense_ids(unit.session, user_id, list(keys))
        outcomes: dict[int, RowOutcome] = {}
        created: list[tuple[ImportRowInput, Expense]] = []
        now = utcnow()
        for index, fields in candidates.items():
            if fields.request_id in own:
                outcomes[index] = RowOutcome("duplicate", fields.request_id)
                continue
            previous = stored.get(fields.request_id)
            refused = _refused_row(fields, rows[index].fingerprint, previous, known_categories)
            if refused is not None:
                outcomes[index] = refused
                continue
            expense = self._new_expense(user_id, fields, "import", now)
            created.append((fields, expense))
            outcomes[index] = RowOutcome("created", expense.expense_id)
        async with one_round_trip(unit.session):
            await self._add_created(unit, [(actor, expense) for _, expense in created], now)
            await self._store_import_keys(
                unit, user_id, [(f.request_id, rows[keys[f.request_id]].fingerprint, e) for f, e in created]
            )
        return outcomes

    @staticmethod
    async def _stored_import_keys(
        unit: UnitOfWork, user_id: str, request_ids: list[str]
    ) -> dict[str, tuple[str, str]]:
        """{request_id: (fingerprint, expense_id)} of rows imported before (a thousand
        ids at a time, in one query)."""
        stored = await unit.stored_answers([RequestKey(user_id, IMPORT_METHOD, rid) for rid in request_ids])
        return {
            key.request_id: (answer.fingerprint, _imported_expense_id(answer.response))
            for key, answer in stored.items()
        }

    @staticmethod
    async def _store_import_keys(
        unit: UnitOfWork, user_id: str, created: list[tuple[str, str, Expense]]
    ) -> None:
        """Each created row's answer, under its (request_id, fingerprint)."""
        await unit.store_answers(
            [
                NewAnswer(
                    RequestKey(user_id, IMPORT_METHOD, request_id),
                    fingerprint,
                    imported_row(expense.expense_id),
                )
                for request_id, fingerprint, expense in created
            ]
        )

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

    async def category_tree(self, user_id: str) -> CategoryTree:
        async with self.db.read() as connection:
            return CategoryTree.of(await storage.user_categories(connection, user_id))

    async def export_expenses(
        self, user_id: str, first: date | None, last: date | None
    ) -> AsyncIterator[tuple[CategoryTree, list[Expense]]]:
        """One user's live expenses spent in [first, last], oldest first, in batches (each
        its own statement, so a long export holds no snapshot), with their category tree."""
        size = self.settings.stream_batch_size
        async with self.db.read() as connection:
            tree = CategoryTree.of(await storage.user_categories(connection, user_id))
        after: tuple[date, str] | None = None
        while True:
            async with self.db.read() as connection:
                batch = await storage.stream_expenses(connection, user_id, after, size, (first, last))
            if batch:
                yield tree, batch
            if len(batch) < size:
                return
            after = (batch[-1].spent_on, batch[-1].expense_id)

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


def _refused_row(
    fields: ImportRowInput, fingerprint: str, previous: tuple[str, str] | None, known_categories: set[str]
) -> RowOutcome | None:
    """A row imported before (a duplicate, or invalid if the row differs) or naming
    a category that is not the user's; None for a row to create."""
    if previous is not None:
        stored_fingerprint, expense_id = previous
        if stored_fingerprint == fingerprint:
            return RowOutcome("duplicate", expense_id)
        return RowOutcome("invalid", errors=[_reused_request_id()])
    if fields.category_id and fields.category_id not in known_categories:
        return RowOutcome("invalid", errors=[FieldViolation("category_id", "no such category")])
    return None


def _reused_request_id() -> FieldViolation:
    return FieldViolation("request_id", "already used for a different row")


def _imported_expense_id(response: bytes) -> str:
    return ledger_pb2.ImportRowResult.FromString(response).expense_id
