"""A filter as a SQLite JSON1 ``WHERE`` fragment over a JSON text column: NULL where the
filter is UNKNOWN, so ``WHERE`` drops those rows as :func:`pipeline.filters.python.matches`
does."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from pipeline.filters.syntax import And, Compare, In, Kind, Node, Not, kind_of

_SQL_COLUMN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?\Z")
# json_type() names per filter kind; CASE ... END without ELSE is NULL (UNKNOWN) otherwise.
_SQL_TYPES: dict[Kind, str] = {
    "number": "('integer', 'real')",
    "string": "('text')",
    "boolean": "('true', 'false')",
}
_SQL_OPS = {"==": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


def to_sqlite(root: Node, column: str) -> tuple[str, list[Any]]:
    """The ``WHERE`` fragment over ``column`` and its bound parameters."""
    if not _SQL_COLUMN.match(column):
        raise ValueError(f"{column!r} is not a column name")
    parameters: list[Any] = []
    return _to_sql(root, column, parameters), parameters


def _to_sql(node: Node, column: str, parameters: list[Any]) -> str:
    if isinstance(node, Compare | In):
        return _sql_predicate(node, column, parameters)
    if isinstance(node, Not):
        return f"(NOT {_to_sql(node.operand, column, parameters)})"
    joiner = " AND " if isinstance(node, And) else " OR "
    return _balanced(joiner, [_to_sql(operand, column, parameters) for operand in node.operands])


def _balanced(joiner: str, parts: Sequence[str]) -> str:
    """Group n-ary AND/OR as a balanced tree: SQLite caps expression depth at 1000."""
    if len(parts) == 1:
        return parts[0]
    middle = len(parts) // 2
    return f"({_balanced(joiner, parts[:middle])}{joiner}{_balanced(joiner, parts[middle:])})"


def _sql_predicate(node: Compare | In, column: str, parameters: list[Any]) -> str:
    # Field names are identifiers (checked by the tokenizer), so the path is safe inline.
    path = "'$." + ".".join(node.path) + "'"
    json_type = f"json_type({column}, {path})"
    if isinstance(node, Compare) and node.value is None:
        return (
            f"(CASE WHEN {json_type} IS NOT NULL THEN {json_type} {_SQL_OPS[node.op]} 'null' END)"
        )
    values = node.values if isinstance(node, In) else (node.value,)
    kind = kind_of(values[0])
    assert kind is not None and kind != "null"
    # Booleans are compared through json_type: json_extract turns JSON true into 1.
    operand = json_type if kind == "boolean" else f"json_extract({column}, {path})"
    bound = [("true" if v else "false") if kind == "boolean" else v for v in values]
    parameters.extend(bound)
    if isinstance(node, In):
        test = f"{operand} IN ({', '.join('?' * len(bound))})"
    else:
        test = f"{operand} {_SQL_OPS[node.op]} ?"
    return f"(CASE WHEN {json_type} IN {_SQL_TYPES[kind]} THEN {test} END)"
