"""Metadata filters: parsing, errors, and the same meaning in Python and in SQLite."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.filters import (
    MAX_DEPTH,
    MAX_LENGTH,
    And,
    Compare,
    FilterError,
    In,
    Node,
    Not,
    Or,
    kind_of,
    parse_filter,
)
from pipeline.filters.fields import unknown_field_warning

# -- a real SQLite table, the way the index store keeps metadata -----------------------


def sqlite_matches(expression: str, items: list[dict[str, Any]]) -> list[bool]:
    """Which items a real in-memory SQLite (JSON1) selects with ``to_sqlite``."""
    where, parameters = parse_filter(expression).to_sqlite("metadata")
    db = sqlite3.connect(":memory:")
    try:
        db.execute("CREATE TABLE assets (ordinal INTEGER PRIMARY KEY, metadata TEXT)")
        # Like the store: an empty dict is kept as NULL.
        db.executemany(
            "INSERT INTO assets VALUES (?, ?)",
            [(i, json.dumps(item) if item else None) for i, item in enumerate(items)],
        )
        selected = {
            row[0] for row in db.execute(f"SELECT ordinal FROM assets WHERE {where}", parameters)
        }
    finally:
        db.close()
    return [i in selected for i in range(len(items))]


def both_backends(expression: str, metadata: dict[str, Any]) -> tuple[bool, bool]:
    return parse_filter(expression).matches(metadata), sqlite_matches(expression, [metadata])[0]


# -- what users write ------------------------------------------------------------------

DRESS = {"category": "dress", "price": 30, "color": "red", "brand": "zed", "in_stock": True}
EXAMPLES = [
    ('category == "dress" and price < 50', DRESS, True),
    ('category == "dress" and price < 30', DRESS, False),
    ("category == 'dress' AND price <= 30", DRESS, True),
    ('color in ["red", "blue"]', DRESS, True),
    ('color in ["green", "blue"]', DRESS, False),
    ('color not in ["green", "blue"]', DRESS, True),
    ("10 <= price < 50", DRESS, True),
    ("30 < price <= 50", DRESS, False),
    ("50 > price >= 30", DRESS, True),
    ("40 < price", DRESS, False),
    ('not (brand == "acme")', DRESS, True),
    ('NOT brand == "zed"', DRESS, False),
    ('tags != "sale" or in_stock == true', DRESS, True),  # tags missing: UNKNOWN or TRUE
    ('tags != "sale" or in_stock == false', DRESS, False),  # UNKNOWN or FALSE
    ('tags != "sale"', {"tags": "new"}, True),
    ("dims.width > 3", {"dims": {"width": 3.5}}, True),
    ("dims.width > 3", {"dims": {"width": 3}}, False),
    ("dims.width > 3", {"dims": [4]}, False),
    ("dims.width > 3", {"dims": 4}, False),
    ("price > -5.5e0", {"price": -5}, True),
    ("price == 2", {"price": 2.0}, True),
    ("x == null", {"x": None}, True),
    ("x == null", {"x": 0}, False),
    ("x == null", {}, False),  # missing is not null
    ("x != null", {"x": 0}, True),
    ("not x == null", {}, False),
    # Precedence: not > and > or.
    ("a == 1 or a == 2 and b == 3", {"a": 1, "b": 0}, True),
    ("(a == 1 or a == 2) and b == 3", {"a": 1, "b": 0}, False),
    ("not a == 1 and b == 3", {"a": 2, "b": 3}, True),
    ('s == "it\'s" and t == \'say "hi"\\n\'', {"s": "it's", "t": 'say "hi"\n'}, True),
    ('s == "\\u00e9t\\u00E9"', {"s": "été"}, True),
    ('s < "b"', {"s": "a\u00ff"}, True),
    ('s < "b"', {"s": "\u00e9"}, False),  # strings order by code point
]


@pytest.mark.parametrize(("expression", "metadata", "expected"), EXAMPLES)
def test_examples_agree_on_python_and_sqlite(expression: str, metadata: dict, expected: bool):
    assert both_backends(expression, metadata) == (expected, expected)


BOOLEANS_ARE_NOT_NUMBERS = [
    ("flag == true", {"flag": 1}),
    ("flag != false", {"flag": 1}),
    ("flag == false", {"flag": 0}),
    ("x == 1", {"x": True}),
    ("x in [0, 1]", {"x": False}),
    ("x >= 1", {"x": True}),
    ("x != 0", {"x": True}),
    ('x == "1"', {"x": 1}),
    ("x == 1", {"x": "1"}),
    ("x < 10", {"x": "5"}),
    ('x in ["a"]', {"x": ["a"]}),
    ("x == 1", {"x": {"y": 1}}),
]


@pytest.mark.parametrize(("expression", "metadata"), BOOLEANS_ARE_NOT_NUMBERS)
def test_kind_mismatch_is_unknown_so_neither_it_nor_its_negation_matches(
    expression: str, metadata: dict
):
    assert both_backends(expression, metadata) == (False, False)
    assert both_backends(f"not ({expression})", metadata) == (False, False)


@pytest.mark.parametrize("expression", ['brand == "acme"', 'brand != "acme"', "price < 5"])
def test_missing_key_is_unknown_under_not(expression: str):
    assert both_backends(expression, {}) == (False, False)
    assert both_backends(f"not ({expression})", {"other": 1}) == (False, False)


def test_three_valued_and_or():
    missing = {"a": 1}
    assert both_backends("a == 1 or b == 1", missing) == (True, True)  # TRUE or UNKNOWN
    assert both_backends("not (a == 2 and b == 1)", missing) == (True, True)  # not(FALSE and U)
    assert both_backends("not (a == 1 and b == 1)", missing) == (False, False)  # not(UNKNOWN)


def test_keywords_are_case_insensitive():
    lower = parse_filter("not a == true and b in [1] or c == null").root
    upper = parse_filter("NOT a == TRUE AND b IN [1] OR c == NULL").root
    assert lower == upper


def test_the_ast_is_typed():
    root = parse_filter('10 <= price < 50 or color not in ["red"]').root
    assert root == Or(
        (
            And((Compare(("price",), ">=", 10), Compare(("price",), "<", 50))),
            Not(In(("color",), ("red",))),
        )
    )


def test_fields_are_the_paths_every_predicate_reads():
    parsed = parse_filter("not (a == 1) and (b.c in [1, 2] or 3 < d < 5) or a != null")
    assert parsed.fields() == {"a", "b.c", "d"}


def test_unknown_field_warning_suggests_the_nearest_field_or_lists_some():
    known = {"color", "price", "dims.w"}
    assert unknown_field_warning("colour", known) == (
        "filter field 'colour': no asset in the index has it; did you mean 'color'?"
    )
    assert unknown_field_warning("zzz", known) == (
        "filter field 'zzz': no asset in the index has it; fields in the index: "
        "color, dims.w, price"
    )
    many = {f"field{i:02d}" for i in range(12)}
    assert unknown_field_warning("zzz", many).endswith("field09 and 2 more")
    assert unknown_field_warning("zzz", set()).endswith("the assets have no metadata")


# -- errors ------------------------------------------------------------------------------


def test_error_quotes_the_filter_and_points_at_the_column():
    with pytest.raises(FilterError) as caught:
        parse_filter("price << 5")
    assert str(caught.value) == "filter 'price << 5': expected a value at column 8"
    assert caught.value.column == 8


@pytest.mark.parametrize(
    ("expression", "column", "reason"),
    [
        ("", 1, "expected a field name, a value or '('"),
        ("price = 5", 7, "expected '=='"),
        ("price", 6, "expected a comparison operator or 'in'"),
        ("(a == 1", 8, "expected ')'"),
        ("a == 1 b == 2", 8, "expected 'and', 'or' or the end"),
        ("a == 1 and", 11, "expected a field name"),
        ("a in []", 7, "expected a value"),
        ('a in [1, "x"]', 10, "list values must all be"),
        ("a in [null]", 7, "null is not allowed"),
        ("a not b", 7, "expected 'in'"),
        ("a < true", 5, "can only be compared with == or !="),
        ("null >= a", 1, "can only be compared with == or !="),
        ("1 < a > 3", 7, "a range needs"),
        ("1 == 2", 6, "expected a field name"),
        ("a == b", 6, "expected a value"),
        ('a == "open', 11, "unterminated string"),
        ("a == 'x\\q'", 8, "unknown escape"),
        ('a == "\\ud800"', 7, "surrogate"),
        ("a == 1e400", 6, "number out of range"),
        ("a == 99999999999999999999", 6, "64-bit range"),
        ("a.b. == 1", 1, "neither a field name nor a value"),
        ("2x == 1", 1, "neither a field name nor a value"),
        ("a$ == 1", 2, "unexpected character '$'"),
        ("a['b'] == 1", 2, "expected a comparison operator or 'in'"),
        ("a == 1; drop table assets", 7, "';'"),
        ("__import__('os') == 1", 11, "expected a comparison operator"),
    ],
)
def test_parse_errors(expression: str, column: int, reason: str):
    with pytest.raises(FilterError) as caught:
        parse_filter(expression)
    assert caught.value.column == column
    assert reason in str(caught.value)
    assert str(caught.value).startswith(f"filter {expression!r}: ")


def test_length_limit_counts_utf8_bytes():
    pairs, odd = divmod(MAX_LENGTH - len("s == ''"), 2)
    at_limit = "s == '" + "é" * pairs + "x" * odd + "'"
    assert len(at_limit.encode()) == MAX_LENGTH
    parse_filter(at_limit)
    with pytest.raises(FilterError, match=f"longer than {MAX_LENGTH} bytes"):
        parse_filter(at_limit + " ")


def test_depth_limit():
    parse_filter("(" * MAX_DEPTH + "a == 1" + ")" * MAX_DEPTH)
    with pytest.raises(FilterError, match="nested deeper"):
        parse_filter("(" * (MAX_DEPTH + 1) + "a == 1" + ")" * (MAX_DEPTH + 1))
    with pytest.raises(FilterError, match="nested deeper"):
        parse_filter("not " * (MAX_DEPTH + 1) + "a == 1")


def test_longest_flat_filter_runs_in_sqlite():
    """Hundreds of ORs stay under SQLite's expression depth limit of 1000."""
    clause = "a == 1 or "
    expression = clause * ((MAX_LENGTH - 10) // len(clause)) + "a == 2"
    assert sqlite_matches(expression, [{"a": 2}, {"a": 3}, {}]) == [True, False, False]


def test_sql_binds_values_and_never_inlines_them():
    hostile = "x' OR 1=1); DROP TABLE assets; --"
    where, parameters = parse_filter(f'name == "{hostile}"').to_sqlite()
    assert hostile not in where and "DROP" not in where
    assert parameters == [hostile]
    assert sqlite_matches(f'name == "{hostile}"', [{"name": hostile}, {"name": "x"}]) == [
        True,
        False,
    ]


def test_sql_column_name_is_checked():
    parse_filter("a == 1").to_sqlite("assets.metadata")
    with pytest.raises(ValueError, match="not a column name"):
        parse_filter("a == 1").to_sqlite("metadata) OR (1")


# -- Milvus ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "milvus"),
    [
        ('category == "dress"', 'metadata["category"] == "dress"'),
        (
            'category == "dress" and price < 50',
            '(metadata["category"] == "dress" and metadata["price"] < 50)',
        ),
        ('color in ["red", "blue"]', 'metadata["color"] in ["red", "blue"]'),
        ("10 <= price < 50", '(metadata["price"] >= 10 and metadata["price"] < 50)'),
        ("dims.width > 3.5", 'metadata["dims"]["width"] > 3.5'),
        ("x >= -2", 'metadata["x"] >= -2'),
        ("x < 1e-05", 'metadata["x"] < 1e-05'),
        ("flag == true", 'metadata["flag"] == true'),
        ("flag != true", 'metadata["flag"] == false'),
        ("not flag == false", 'metadata["flag"] == true'),
        # != and negations need the key present and of the literal's kind.
        ('brand != "acme"', '(metadata["brand"] < "acme" or metadata["brand"] > "acme")'),
        ('not (brand == "acme")', '(metadata["brand"] < "acme" or metadata["brand"] > "acme")'),
        ("not price < 5", 'metadata["price"] >= 5'),
        ('not brand != "a"', 'metadata["brand"] == "a"'),
        (
            "x not in [1, 2]",
            '((metadata["x"] < 1 or metadata["x"] > 1) and '
            '(metadata["x"] < 2 or metadata["x"] > 2))',
        ),
        (
            "not (a == 1 or b > 2)",
            '((metadata["a"] < 1 or metadata["a"] > 1) and metadata["b"] <= 2)',
        ),
        (
            "not (a == 1 and not b > 2)",
            '((metadata["a"] < 1 or metadata["a"] > 1) or metadata["b"] > 2)',
        ),
    ],
)
def test_to_milvus(expression: str, milvus: str):
    assert parse_filter(expression).to_milvus() == milvus


def test_to_milvus_escapes_strings():
    expression = r"""s == "a\"b\\c\nd'e\u0001" """
    expected = r'meta["s"] == "a\"b\\c\u000ad' + "'" + r'e\u0001"'
    assert parse_filter(expression).to_milvus("meta") == expected


def test_to_milvus_refuses_what_it_cannot_express():
    with pytest.raises(FilterError, match="null cannot be expressed in Milvus"):
        parse_filter("a == 1 or b == null").to_milvus()
    with pytest.raises(ValueError, match="not a Milvus field name"):
        parse_filter("a == 1").to_milvus('metadata"]')


# -- differential: random metadata and random filters ------------------------------------

# Each example draws a small palette of values that both the metadata and the filter's
# literals come from: one group of look-alikes (1 vs 1.0 vs true vs "1"; exact int/float
# order at 2**53; code-point order) plus a few others, so comparisons often meet equal
# values and same-looking values of another kind.
LOOKALIKES = [
    [1, 1.0, True, "1"],
    [0, -1, False, None, ""],
    [2**53 + 1, float(2**53), 2**53, 1.5],
    ["a", "b", "B", "é", "\U0001f600"],
    ["a'b", 'q"', "\\", "x\ny", "1"],
]
SCALARS = sorted({repr(v): v for group in LOOKALIKES for v in group}.values(), key=repr)
PATHS = [("a",), ("b",), ("d", "e")]


def metadata_dicts(palette: list[Any]) -> st.SearchStrategy[dict[str, Any]]:
    values = st.recursive(
        st.sampled_from(palette),
        lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.just("e"), inner),
        max_leaves=3,
    )
    return st.dictionaries(st.sampled_from(["a", "b", "d"]), values, max_size=3)


@st.composite
def predicates(draw: st.DrawFn, palette: list[Any]) -> Node:
    path = draw(st.sampled_from(PATHS))
    value = draw(st.sampled_from(palette))
    if value is not None and draw(st.booleans()):
        same_kind = [v for v in palette if kind_of(v) == kind_of(value)]
        return In(path, tuple(draw(st.lists(st.sampled_from(same_kind), min_size=1, max_size=3))))
    ordering = [] if value is None or isinstance(value, bool) else ["<", "<=", ">", ">="]
    return Compare(path, draw(st.sampled_from(["==", "!=", *ordering])), value)


def filters(palette: list[Any]) -> st.SearchStrategy[Node]:
    return st.recursive(
        predicates(palette),
        lambda inner: (
            inner.map(Not)
            | st.lists(inner, min_size=2, max_size=3).map(lambda xs: And(tuple(xs)))
            | st.lists(inner, min_size=2, max_size=3).map(lambda xs: Or(tuple(xs)))
        ),
        max_leaves=6,
    )


@st.composite
def cases(draw: st.DrawFn) -> tuple[Node, list[dict[str, Any]]]:
    palette = draw(st.sampled_from(LOOKALIKES)) + draw(
        st.lists(st.sampled_from(SCALARS), max_size=2)
    )
    items = draw(st.lists(metadata_dicts(palette), min_size=1, max_size=8))
    return draw(filters(palette)), items


def render(node: Node) -> str:
    """Filter text for an AST; every compound operand is parenthesised."""
    if isinstance(node, Compare):
        return f"{'.'.join(node.path)} {node.op} {render_value(node.value)}"
    if isinstance(node, In):
        return f"{'.'.join(node.path)} in [{', '.join(render_value(v) for v in node.values)}]"
    if isinstance(node, Not):
        return f"not ({render(node.operand)})"
    joiner = " and " if isinstance(node, And) else " OR "
    return joiner.join(f"({render(operand)})" for operand in node.operands)


def render_value(value: Any) -> str:
    if isinstance(value, str) and "'" not in value:
        return "'" + value.replace("\\", "\\\\").replace("\n", "\\n") + "'"
    return json.dumps(value, ensure_ascii=False)  # true/false/null, numbers, "strings"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases())
def test_python_and_sqlite_agree(case: tuple[Node, list[dict[str, Any]]]):
    root, items = case
    expression = render(root)
    parsed = parse_filter(expression)
    assert parsed.root == root  # the text means exactly the generated tree
    assert [parsed.matches(item) for item in items] == sqlite_matches(expression, items)
