"""A filter as a Milvus boolean expression over a JSON field, true exactly where
:func:`pipeline.filters.python.matches` is.

Milvus does its own thing with missing keys under NOT and has no json_type(), so the
expression is built in negation normal form from two two-valued views of each node:
_milvus_true(n) holds exactly where n is TRUE, _milvus_false(n) exactly where n is FALSE.
Each leaf is then a *positive* comparison, which Milvus evaluates as false on a missing
key or a value of another type, and ``x != v`` becomes ``x < v or x > v`` so that it too
needs x present and of v's kind.
"""

from __future__ import annotations

import re

from pipeline.filters.syntax import And, Compare, CompareOp, In, Node, Not, Scalar

_MILVUS_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class NotExpressible(Exception):
    """The filter has a predicate Milvus cannot express (the message names it)."""


def to_milvus(root: Node, field: str) -> str:
    """The expression over the JSON field ``field``; raises :class:`NotExpressible`."""
    if not _MILVUS_FIELD.match(field):
        raise ValueError(f"{field!r} is not a Milvus field name")
    return _milvus_true(root, field)


def _milvus_true(node: Node, field: str) -> str:
    if isinstance(node, Compare):
        return _milvus_compare(node, field, negated=False)
    if isinstance(node, In):
        ref = json_ref(field, node.path)
        return f"{ref} in [{', '.join(_milvus_literal(v) for v in node.values)}]"
    if isinstance(node, Not):
        return _milvus_false(node.operand, field)
    joiner = " and " if isinstance(node, And) else " or "
    return "(" + joiner.join(_milvus_true(operand, field) for operand in node.operands) + ")"


def _milvus_false(node: Node, field: str) -> str:
    if isinstance(node, Compare):
        return _milvus_compare(node, field, negated=True)
    if isinstance(node, In):
        parts = [_milvus_false(Compare(node.path, "==", v), field) for v in node.values]
        return parts[0] if len(parts) == 1 else "(" + " and ".join(parts) + ")"
    if isinstance(node, Not):
        return _milvus_true(node.operand, field)
    joiner = " or " if isinstance(node, And) else " and "
    return "(" + joiner.join(_milvus_false(operand, field) for operand in node.operands) + ")"


_NEGATED: dict[str, CompareOp] = {
    "==": "!=",
    "!=": "==",
    "<": ">=",
    "<=": ">",
    ">": "<=",
    ">=": "<",
}


def _milvus_compare(node: Compare, field: str, negated: bool) -> str:
    if node.value is None:
        raise NotExpressible("comparing with null")
    ref = json_ref(field, node.path)
    op = _NEGATED[node.op] if negated else node.op
    if isinstance(node.value, bool):
        wanted = node.value if op == "==" else not node.value
        return f"{ref} == {_milvus_literal(wanted)}"
    literal = _milvus_literal(node.value)
    if op == "!=":
        return f"({ref} < {literal} or {ref} > {literal})"
    return f"{ref} {op} {literal}"


def json_ref(field: str, path: tuple[str, ...]) -> str:
    """``field["a"]["b"]``: the key path ``path`` inside the JSON field ``field``."""
    return field + "".join(f"[{_milvus_literal(key)}]" for key in path)


def _milvus_literal(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)  # finite (the tokenizer refuses others); e.g. 1e-05, 2.5
    assert isinstance(value, str)
    return _milvus_string(value)


def _milvus_string(text: str) -> str:
    """A double-quoted Milvus string literal: backslash, quote and control characters
    escaped (Milvus's grammar refuses raw newlines in strings)."""
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'
