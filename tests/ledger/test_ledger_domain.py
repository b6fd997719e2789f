"""Plain rules of the ledger: the category tree, orderings, page tokens, and the
default categories file."""

from __future__ import annotations

import base64
import json
import secrets
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
    PageTokens,
    etag_matches,
    etag_of,
    load_default_categories,
    parse_ordering,
    path_key,
    split_path,
)
from services.ledger.settings import LedgerSettings

NOW = datetime(2026, 1, 1, tzinfo=UTC)
TOKENS = PageTokens(secrets.token_bytes(32))


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
    token = TOKENS.encode(Cursor(key.isoformat(), str(expense_id)), b"query1")
    assert TOKENS.decode(token, b"query1", ordering) == Cursor(key.isoformat(), str(expense_id))
    with pytest.raises(InvalidArgument):
        TOKENS.decode(token, b"query2", ordering)
    with pytest.raises(InvalidArgument):
        TOKENS.decode(token, b"query1", parse_ordering("amount"))


@given(garbage=st.text(max_size=80))
def test_garbage_page_tokens_are_invalid_arguments(garbage: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        TOKENS.decode(garbage, b"query1", parse_ordering(""))
    assert raised.value.violations[0].field == "page_token"


def _unsigned(*values: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(values)).encode()).decode().rstrip("=")


def _refused(token: str, ordering: str = "amount") -> None:
    with pytest.raises(InvalidArgument) as raised:
        TOKENS.decode(token, b"query1", parse_ordering(ordering))
    assert raised.value.violations[0].field == "page_token"


def test_a_page_token_needs_this_services_signature() -> None:
    cursor = Cursor("125000", "7d1f6c1e-0000-4000-8000-000000000000")
    token = TOKENS.encode(cursor, b"query1")
    body, signature = token.split(".")
    _refused(body)  # unsigned, as tokens used to be
    _refused(f"{_unsigned(2, '999999', cursor.expense_id)}.{signature}")  # another position
    # The first character: the last one's low bits are padding, so some changes decode the same.
    _refused(f"{body}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}")
    _refused(PageTokens(secrets.token_bytes(32)).encode(cursor, b"query1"))  # another key
    assert TOKENS.decode(token, b"query1", parse_ordering("amount")) == cursor


@pytest.mark.parametrize(
    ("key", "ordering"),
    [
        ("9" * 30, "amount"),  # beyond BIGINT: once a 500 from the database
        (str(2**63), "amount"),
        ("-1", "amount"),
        ("١٢", "amount"),
        ("1e5", "amount"),
        ("2026-13-01", "spent_on"),
        ("yesterday", "spent_on"),
    ],
)
def test_a_signed_page_token_out_of_range_is_refused(key: str, ordering: str) -> None:
    _refused(TOKENS.encode(Cursor(key, "e"), b"query1"), ordering)


def test_a_signed_page_token_at_the_largest_amount_value_is_accepted() -> None:
    cursor = Cursor(str(2**63 - 1), "e")
    assert TOKENS.decode(TOKENS.encode(cursor, b"q"), b"q", parse_ordering("amount")) == cursor


def test_etags_compare_weakly_quoted_or_bare() -> None:
    """A bare `3` is what a JSON client types after reading `"etag": "\"3\""` (issue 18)."""
    assert etag_matches(etag_of(3), 3) and etag_matches(f"W/{etag_of(3)}", 3) and etag_matches("3", 3)
    assert etag_matches(" 3 ", 3) and etag_matches("*", 3)
    assert not etag_matches(etag_of(3), 4) and not etag_matches("4", 3) and not etag_matches("garbage", 3)
    assert not etag_matches('"3', 3)


def test_default_categories_come_from_the_data_file(tmp_path: Path) -> None:
    configured = load_default_categories(LedgerSettings().default_categories_file)
    assert len(configured) == 11 and configured[0].name == "Food & dining"
    own = tmp_path / "mine.toml"
    own.write_text('[[categories]]\nname = "Only"\ncolor = "#000000"\n')
    assert [c.name for c in load_default_categories(own)] == ["Only"]


def _named(*rows: tuple[str, str, str | None]) -> CategoryTree:
    return CategoryTree.of(Category(cid, "u", name, parent, "", "", NOW, NOW) for cid, name, parent in rows)


def test_a_slash_in_a_category_name_is_escaped_in_its_path_and_read_back() -> None:
    """ "Food/Cafes" (one top-level name) and Food > Cafes no longer share a path: each
    exported path finds its own category again; names without "/" or "\\" export as before."""
    tree = _named(
        ("food", "Food", None),
        ("cafes", "Cafes", "food"),
        ("slash", "Food/Cafes", None),
        ("back", "C:\\Drive", None),
        ("under", "Tea/Coffee", "food"),
    )
    paths = {cid: tree.path(cid) for cid in tree.categories}
    assert paths == {
        "food": "Food",
        "cafes": "Food/Cafes",
        "slash": "Food\\/Cafes",
        "back": "C:\\\\Drive",
        "under": "Food/Tea\\/Coffee",
    }
    index = tree.path_index()
    assert {cid: index[path_key(path)] for cid, path in paths.items()} == {cid: cid for cid in paths}
    assert split_path("Food/Tea\\/Coffee") == ["Food", "Tea/Coffee"]


def test_a_path_exported_before_escaping_still_finds_its_category_unless_ambiguous() -> None:
    """An old file's "Tea/Coffee" (unescaped) finds the category named so when no parent
    and child has that path; "Food/Cafes" is the real Food > Cafes; a lone backslash
    before another character is a plain one."""
    tree = _named(
        ("food", "Food", None),
        ("cafes", "Cafes", "food"),
        ("slash", "Food/Cafes", None),
        ("tea", "Tea/Coffee", None),
        ("back", "A\\B", None),
    )
    index = tree.path_index()
    assert index[path_key("Tea/Coffee")] == "tea"
    assert index[path_key("food/cafes")] == "cafes"
    assert index[path_key("A\\B")] == "back"
    assert path_key("Nowhere/Else") not in index
