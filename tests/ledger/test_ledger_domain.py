"""Plain rules of the ledger: the category tree, orderings, page tokens, and the
default categories file."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.kit.domain.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from services.ledger.domain import (
    Category,
    CategoryTree,
    Cursor,
    decode_page_token,
    encode_page_token,
    etag_matches,
    etag_of,
    load_default_categories,
    parse_ordering,
)
from services.ledger.settings import LedgerSettings

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _tree(*edges: tuple[str, str | None]) -> CategoryTree:
    return CategoryTree.of(
        Category(name, "u", name.title(), parent, "", "", NOW, NOW) for name, parent in edges
    )


def test_depth_and_cycles_are_checked() -> None:
    tree = _tree(("a", None), ("b", "a"), ("c", "b"), ("d", None), ("e", "d"))
    assert tree.subtree("a") == ["a", "b", "c"] or sorted(tree.subtree("a")) == ["a", "b", "c"]
    assert (tree.depth("c"), tree.height("a"), tree.height("c")) == (3, 3, 1)
    tree.check_parent("", "b", 3, "parent_id")
    with pytest.raises(InvalidArgument):
        tree.check_parent("", "c", 3, "parent_id")  # a fourth level
    with pytest.raises(InvalidArgument):
        tree.check_parent("a", "c", 5, "parent_id")  # a cycle
    with pytest.raises(InvalidArgument):
        tree.check_parent("a", "a", 5, "parent_id")
    with pytest.raises(InvalidArgument):
        tree.check_parent("d", "e", 5, "parent_id")
    with pytest.raises(InvalidArgument):
        tree.check_parent("a", "d", 3, "parent_id")  # three levels under a second-level
    with pytest.raises(NotFound):
        tree.check_parent("", "zzz", 3, "parent_id")
    tree.check_parent("b", None, 3, "parent_id")


def test_reassignment_rules() -> None:
    tree = _tree(("a", None), ("b", "a"), ("c", "b"), ("d", None), ("e", "d"))
    with pytest.raises(InvalidArgument):
        tree.check_reassignment("a", "c", 3)
    with pytest.raises(NotFound):
        tree.check_reassignment("a", "nope", 3)
    with pytest.raises(FailedPrecondition):
        tree.check_reassignment("a", "e", 3)  # b's subtree (2 levels) under a second level
    tree.check_reassignment("a", "d", 3)


def test_names_are_compared_without_case_or_extra_spaces() -> None:
    tree = _tree(("food", None))
    with pytest.raises(AlreadyExists):
        tree.check_name_free("  FOOD ")
    tree.check_name_free("Food", except_id="food")
    tree.check_name_free("Foodie")


@pytest.mark.parametrize(
    ("text", "field", "descending"),
    [
        ("", "spent_on", True),
        ("spent_on", "spent_on", False),
        ("amount desc", "amount", True),
        ("amount  asc", "amount", False),
    ],
)
def test_orderings(text: str, field: str, descending: bool) -> None:
    ordering = parse_ordering(text)
    assert (ordering.field, ordering.descending) == (field, descending)


@pytest.mark.parametrize("text", ["merchant", "amount desc asc", "desc", "spent_on DESC"])
def test_bad_orderings(text: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_ordering(text)


@given(key=st.dates(min_value=date(1900, 1, 1), max_value=date(2999, 1, 1)), expense_id=st.uuids())
def test_page_tokens_round_trip_and_are_bound_to_their_query(key: date, expense_id: object) -> None:
    ordering = parse_ordering("spent_on desc")
    token = encode_page_token(Cursor(key.isoformat(), str(expense_id)), "fingerprint1")
    assert decode_page_token(token, "fingerprint1", ordering) == Cursor(key.isoformat(), str(expense_id))
    with pytest.raises(InvalidArgument):
        decode_page_token(token, "fingerprint2", ordering)
    with pytest.raises(InvalidArgument):
        decode_page_token(token, "fingerprint1", parse_ordering("amount"))


@given(garbage=st.text(max_size=80))
def test_garbage_page_tokens_are_invalid_arguments(garbage: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        decode_page_token(garbage, "fingerprint1", parse_ordering(""))
    assert raised.value.violations[0].field == "page_token"


def test_etags_compare_weakly() -> None:
    assert etag_matches(etag_of(3), 3) and etag_matches(f"W/{etag_of(3)}", 3)
    assert not etag_matches(etag_of(3), 4) and not etag_matches("3", 3) and not etag_matches("garbage", 3)


def test_default_categories_come_from_the_data_file(tmp_path: Path) -> None:
    configured = load_default_categories(LedgerSettings().default_categories_file)
    assert len(configured) == 11 and configured[0].name == "Food & dining"
    own = tmp_path / "mine.toml"
    own.write_text('[[categories]]\nname = "Only"\ncolor = "#000000"\n')
    assert [c.name for c in load_default_categories(own)] == ["Only"]
