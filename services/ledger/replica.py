"""How another service keeps its own copy of the ledger's expenses and categories
from ledger events (reporting and billing do): the copy's rules, in plain Python.

A copy carries the ledger's version, so a late or repeated event never undoes a
newer one, and a deletion stays as a tombstone. Replaying a run of changes over
the stored copies yields, per user, each (old, new) move, from which a consumer
keeps its own rollups exact: "subtract old, add new"."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date

from expense.events.v1 import events_pb2

UNCATEGORIZED_NAME = "Uncategorized"
# Parent links come from events; a bound keeps a corrupt cycle from looping forever.
MAX_CATEGORY_DEPTH = 32


@dataclass(frozen=True)
class ExpenseLine:
    """An expense as a consumer sees it (from ledger events or a ledger stream)."""

    expense_id: str
    amount_minor: int
    currency: str
    spent_on: date
    category_id: str
    merchant: str
    source: str = ""
    version: int = 0


@dataclass(frozen=True)
class StoredExpense:
    """a consumer's copy of an expense; a deleted one stays as a tombstone."""

    line: ExpenseLine
    deleted: bool = False


def supersedes(incoming_version: int, stored: StoredExpense | None) -> bool:
    """Whether a ledger snapshot replaces what the consumer holds. Ledger versions grow
    by one per change, so a late, older snapshot (a redelivery after a newer one)
    changes nothing. Version 0 means unknown (a rebuilt row): arrival order decides,
    except that a deletion stays final."""
    if stored is None:
        return True
    if stored.deleted:
        return incoming_version > stored.line.version
    if incoming_version == 0 or stored.line.version == 0:
        return True
    return incoming_version > stored.line.version


# (user_id, expense_id): which copy an expense change replaces.
ExpenseKey = tuple[str, str]


@dataclass(frozen=True)
class ExpenseChange:
    """What one ledger event says about an expense."""

    user_id: str
    expense_id: str
    # The new state; None for a deletion.
    after: ExpenseLine | None
    # The state the ledger changed (None for a creation).
    before: ExpenseLine | None
    version: int

    @property
    def key(self) -> ExpenseKey:
        return (self.user_id, self.expense_id)


def live_line(stored: StoredExpense | None) -> ExpenseLine | None:
    """What a copy contributes to the rollups (nothing once deleted)."""
    return stored.line if stored is not None and not stored.deleted else None


def replaced_copy(stored: StoredExpense | None, change: ExpenseChange) -> StoredExpense | None:
    """The copy once `change` applies; None when it changes nothing (the consumer
    already holds this or a newer state, or a deletion of nothing it knows)."""
    if not supersedes(change.version, stored):
        return None
    if change.after is not None:
        return StoredExpense(change.after)
    # Kept as a tombstone, so a late copy of an older event cannot bring it back.
    tombstone = change.before or live_line(stored)
    if tombstone is None:
        return None
    known_version = stored.line.version if stored is not None else 0
    return StoredExpense(replace(tombstone, version=max(change.version, known_version)), deleted=True)


def out_of_step(stored: StoredExpense | None, change: ExpenseChange) -> bool:
    """Whether the copy differs from the state the ledger says it changed."""
    current = live_line(stored)
    if current is None or change.before is None:
        return False
    before = change.before
    # Not the category: the ledger moves a deleted category's expenses without an
    # event per expense (reports follow category.changed's reassigned_to instead).
    return (current.amount_minor, current.currency, current.spent_on, current.merchant) != (
        before.amount_minor,
        before.currency,
        before.spent_on,
        before.merchant,
    )


# One expense's (old, new) contribution: None for "nothing" (absent or deleted).
Move = tuple[ExpenseLine | None, ExpenseLine | None]


@dataclass(frozen=True)
class Replay:
    """What a run of expense changes does to the stored copies."""

    # The last state of each copy the changes replaced.
    copies: dict[ExpenseKey, StoredExpense]
    # Per user, each replacement's move, in order.
    moves: dict[str, list[Move]]
    # Copies that were out of step with the ledger when replaced.
    out_of_step: list[ExpenseKey]


def replay(stored: Mapping[ExpenseKey, StoredExpense], changes: Iterable[ExpenseChange]) -> Replay:
    """The changes applied in order over the stored copies, each seeing what the
    ones before it left (so a creation and an update in one batch end right)."""
    copies: dict[ExpenseKey, StoredExpense] = {}
    moves: dict[str, list[Move]] = defaultdict(list)
    stale: list[ExpenseKey] = []
    for change in changes:
        copy = copies.get(change.key, stored.get(change.key))
        replacement = replaced_copy(copy, change)
        if replacement is None:
            continue
        if out_of_step(copy, change):
            stale.append(change.key)
        moves[change.user_id].append((live_line(copy), live_line(replacement)))
        copies[change.key] = replacement
    return Replay(copies, dict(moves), stale)


# ---------------------------------------------------------------- events

ExpensePayload = events_pb2.ExpenseCreated | events_pb2.ExpenseUpdated | events_pb2.ExpenseDeleted


def line_of(snapshot: events_pb2.ExpenseSnapshot) -> ExpenseLine:
    """Raises ValueError for a snapshot with a bad date."""
    return ExpenseLine(
        expense_id=snapshot.expense_id,
        amount_minor=snapshot.amount_minor,
        currency=snapshot.currency,
        spent_on=date.fromisoformat(snapshot.spent_on),
        category_id=snapshot.category_id,
        merchant=snapshot.merchant,
        source=snapshot.source,
        version=snapshot.version,
    )


def expense_change(user_id: str, payload: ExpensePayload) -> ExpenseChange | None:
    """The change an expense event describes; None for anything else, or for one
    without a user or an expense id. Raises ValueError for a bad date."""
    if isinstance(payload, events_pb2.ExpenseCreated):
        line = line_of(payload.expense)
        change = ExpenseChange(user_id, line.expense_id, line, None, line.version)
    elif isinstance(payload, events_pb2.ExpenseUpdated):
        after = line_of(payload.after)
        before = line_of(payload.before) if payload.HasField("before") else None
        change = ExpenseChange(user_id, after.expense_id, after, before, after.version)
    elif isinstance(payload, events_pb2.ExpenseDeleted):
        before = line_of(payload.before)
        # A deletion is the version after the state it deleted (0 stays "unknown").
        version = before.version + 1 if before.version else 0
        change = ExpenseChange(user_id, before.expense_id, None, before, version)
    else:
        return None
    return change if change.user_id and change.expense_id else None


def category_info(change: events_pb2.CategoryChanged) -> CategoryInfo:
    return CategoryInfo(
        change.category_id, change.name, change.parent_id, change.deleted, change.reassigned_to
    )


# ---------------------------------------------------------------- categories


@dataclass(frozen=True)
class CategoryInfo:
    category_id: str
    name: str
    parent_id: str = ""
    deleted: bool = False
    # Where a deleted category's expenses went.
    reassigned_to: str = ""


class CategoryTree:
    """The user's categories as a consumer knows them from category events."""

    def __init__(self, categories: Iterable[CategoryInfo]) -> None:
        self._nodes = {category.category_id: category for category in categories}
        self._children: dict[str, list[str]] = defaultdict(list)
        for category in self._nodes.values():
            if category.parent_id:
                self._children[category.parent_id].append(category.category_id)

    def get(self, category_id: str) -> CategoryInfo | None:
        return self._nodes.get(category_id)

    def __contains__(self, category_id: object) -> bool:
        node = self._nodes.get(category_id) if isinstance(category_id, str) else None
        return node is not None and not node.deleted

    def name(self, category_id: str) -> str:
        if not category_id:
            return UNCATEGORIZED_NAME
        node = self._nodes.get(category_id)
        return node.name if node else ""

    def path_name(self, category_id: str) -> str:
        """ "Food > Groceries" for a nested category."""
        names = [self.name(ancestor) for ancestor in reversed(self._ancestry(category_id))]
        return " > ".join(name for name in names if name) or self.name(category_id)

    def _ancestry(self, category_id: str) -> list[str]:
        """The (live) category, its parent, ... up to its top-level category."""
        chain = [self.resolve(category_id)]
        for _ in range(MAX_CATEGORY_DEPTH):
            node = self._nodes.get(chain[-1])
            if node is None or not node.parent_id or node.parent_id in chain:
                break
            chain.append(node.parent_id)
        return chain

    def top_level(self, category_id: str) -> str:
        return self._ancestry(category_id)[-1]

    def branch_under(self, root: str, category_id: str) -> str:
        """The direct child of root that category_id lies under (root for root itself)."""
        chain = self._ancestry(category_id)
        if root not in chain:
            return category_id
        position = chain.index(root)
        return chain[position - 1] if position > 0 else root

    def children(self, category_id: str) -> list[str]:
        live = [child for child in self._children.get(category_id, []) if child in self]
        return sorted(live, key=lambda child: (self.name(child).casefold(), child))

    def members(self, category_id: str) -> set[str]:
        """The ids whose expenses count for this category: itself, its descendants,
        and deleted categories whose expenses were reassigned into them."""
        subtree = self.subtree(category_id)
        return {known for known in self._nodes if self.resolve(known) in subtree} | {category_id}

    def subtree(self, category_id: str) -> set[str]:
        """The category and every category below it (deleted ones too)."""
        found = {category_id}
        frontier = [category_id]
        for _ in range(MAX_CATEGORY_DEPTH):
            frontier = [
                child for parent in frontier for child in self._children.get(parent, []) if child not in found
            ]
            if not frontier:
                break
            found.update(frontier)
        return found

    def resolve(self, category_id: str) -> str:
        """The live category that now holds a deleted category's expenses. Copies
        keep the id an expense was recorded with; readers follow reassignments."""
        current = category_id
        for _ in range(MAX_CATEGORY_DEPTH):
            node = self._nodes.get(current)
            if node is None or not node.deleted or not node.reassigned_to:
                return current
            current = node.reassigned_to
        return current
