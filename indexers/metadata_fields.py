"""Which metadata fields an index's assets have, as the dotted paths a filter names them by
(``dims.w`` for ``{"dims": {"w": 3}}``), counted per asset so deletes can take them away."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from typing import Any


def field_paths(metadata: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    """The paths of the leaves of ``metadata``: a key holding a non-empty object gives its
    keys' paths instead. Arrays are leaves (a filter cannot look inside one), and a key with
    a dot in it reads as a nested path (a filter cannot name such a key)."""
    for key, value in metadata.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield from field_paths(value, f"{path}.")
        else:
            yield path


class FieldCounts:
    """Per field path, how many assets have it. Callers add an asset's metadata when it is
    written and remove the same metadata when it is replaced or deleted."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._fields: frozenset[str] | None = frozenset()

    @classmethod
    def of(cls, metadata: Iterable[Mapping[str, Any]]) -> FieldCounts:
        counts = cls()
        for one in metadata:
            counts.add(one)
        return counts

    def add(self, metadata: Mapping[str, Any]) -> None:
        self._counts.update(set(field_paths(metadata)))
        self._fields = None

    def remove(self, metadata: Mapping[str, Any]) -> None:
        for path in set(field_paths(metadata)):
            self._counts[path] -= 1
            if self._counts[path] <= 0:
                del self._counts[path]
        self._fields = None

    def fields(self) -> frozenset[str]:
        """The paths at least one asset has (worked out again only after a change)."""
        if self._fields is None:
            self._fields = frozenset(self._counts)
        return self._fields
