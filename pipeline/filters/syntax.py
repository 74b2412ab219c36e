"""The filter AST: predicates on a field path, the boolean nodes over them, and the four
kinds of value a literal can have (see :mod:`pipeline.filters` for their meaning)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, TypeAlias

Scalar: TypeAlias = "str | int | float | bool | None"
CompareOp = Literal["==", "!=", "<", "<=", ">", ">="]
Kind = Literal["string", "number", "boolean", "null"]


class FilterError(ValueError):
    """A filter that cannot be parsed (with the 1-based column where it went wrong) or
    cannot be expressed on a backend."""

    def __init__(self, expression: str, reason: str, column: int | None = None) -> None:
        where = f" at column {column}" if column is not None else ""
        super().__init__(f"filter {expression!r}: {reason}{where}")
        self.expression = expression
        self.reason = reason
        self.column = column


@dataclass(frozen=True)
class Compare:
    path: tuple[str, ...]
    op: CompareOp
    value: Scalar


@dataclass(frozen=True)
class In:
    path: tuple[str, ...]
    values: tuple[Scalar, ...]


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class And:
    operands: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    operands: tuple[Node, ...]


Node: TypeAlias = "Compare | In | Not | And | Or"


def kind_of(value: object) -> Kind | None:
    """The filter kind of a JSON value; None for arrays, objects and anything else."""
    if value is None:
        return "null"
    if isinstance(value, bool):  # before int: bool is an int subclass in Python
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return None


def field_paths(node: Node) -> Iterator[tuple[str, ...]]:
    """The field path of every predicate under ``node``, in the order written."""
    if isinstance(node, Compare | In):
        yield node.path
    elif isinstance(node, Not):
        yield from field_paths(node.operand)
    else:
        for operand in node.operands:
            yield from field_paths(operand)
