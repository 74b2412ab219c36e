"""A parsed filter: the text the user wrote, its AST, and each backend's reading of it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.filters import milvus, python, sql
from pipeline.filters.syntax import FilterError, Node, field_paths


@dataclass(frozen=True)
class Filter:
    """A parsed filter: the text the user wrote and its AST."""

    expression: str
    root: Node

    def __str__(self) -> str:
        return self.expression

    def fields(self) -> frozenset[str]:
        """The dotted paths of the fields the filter reads (``dims.w``)."""
        return frozenset(".".join(path) for path in field_paths(self.root))

    def matches(self, metadata: Mapping[str, Any] | None) -> bool:
        """Whether an item with this metadata passes (the filter is TRUE, not UNKNOWN)."""
        return python.matches(self.root, metadata)

    def to_sqlite(self, column: str = "metadata") -> tuple[str, list[Any]]:
        """A ``WHERE`` fragment over a JSON text column, and its bound parameters. The
        fragment is NULL where the filter is UNKNOWN, so ``WHERE`` drops those rows."""
        return sql.to_sqlite(self.root, column)

    def to_milvus(self, field: str = "metadata") -> str:
        """A Milvus boolean expression over the JSON field ``field``, true exactly where
        :meth:`matches` is (see :mod:`pipeline.filters.milvus`)."""
        try:
            return milvus.to_milvus(self.root, field)
        except milvus.NotExpressible as exc:
            raise FilterError(self.expression, f"{exc} cannot be expressed in Milvus") from None
