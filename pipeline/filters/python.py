"""The reference evaluator: a filter over an item's metadata in Python, with SQL's
three-valued (Kleene) logic; the SQLite and Milvus translations are held to it."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from pipeline.filters.syntax import And, Compare, CompareOp, In, Node, Not, Scalar, kind_of

Truth = bool | None  # None is UNKNOWN
_MISSING = object()


def matches(root: Node, metadata: Mapping[str, Any] | None) -> bool:
    """Whether an item with this metadata passes: the filter is TRUE, not UNKNOWN."""
    return _evaluate(root, metadata or {}) is True


def _evaluate(node: Node, metadata: Mapping[str, Any]) -> Truth:
    if isinstance(node, Compare):
        return _compare(_lookup(metadata, node.path), node.op, node.value)
    if isinstance(node, In):
        return _kleene_or(_compare(_lookup(metadata, node.path), "==", v) for v in node.values)
    if isinstance(node, Not):
        inner = _evaluate(node.operand, metadata)
        return None if inner is None else not inner
    if isinstance(node, And):
        return _kleene_and(_evaluate(operand, metadata) for operand in node.operands)
    return _kleene_or(_evaluate(operand, metadata) for operand in node.operands)


def _lookup(metadata: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = metadata
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return _MISSING
        value = value[key]
    return value


_PYTHON_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _compare(actual: Any, op: CompareOp, literal: Scalar) -> Truth:
    if actual is _MISSING:
        return None
    if literal is None:
        return (actual is None) == (op == "==")
    if kind_of(actual) != kind_of(literal):
        return None
    return _PYTHON_OPS[op](actual, literal)


def _kleene_and(values: Iterator[Truth]) -> Truth:
    result: Truth = True
    for value in values:
        if value is False:
            return False
        if value is None:
            result = None
    return result


def _kleene_or(values: Iterator[Truth]) -> Truth:
    result: Truth = False
    for value in values:
        if value is True:
            return True
        if value is None:
            result = None
    return result
