"""Which metadata fields an index's assets have, as the dotted paths a filter names them by
(``dims.w`` for ``{"dims": {"w": 3}}``)."""

from __future__ import annotations

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


FIELD_SAMPLE = 100_000
"""Assets whose metadata :func:`fields_of` reads at most: enough to name the fields of an
index for a suggestion, without reading a million assets' metadata to make one."""


def fields_of(metadata: Iterable[Mapping[str, Any]]) -> frozenset[str]:
    """Every path in any of ``metadata``."""
    return frozenset(path for one in metadata for path in field_paths(one))
