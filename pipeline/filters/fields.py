"""A filter's fields that no asset has. A comparison on a missing field is UNKNOWN, so a
misspelt field quietly matches nothing; the search names it and what it may have meant."""

from __future__ import annotations

import difflib
from collections.abc import Set

from pipeline.filters.filter import Filter

LISTED_FIELDS = 10
"""How many of the known fields a warning lists when none is close to the unknown one."""


def unknown_fields(parsed: Filter, known: Set[str]) -> list[str]:
    """The fields ``parsed`` reads that are not in ``known``, sorted. A field with known
    fields under it (``dims`` where assets have ``dims.w``) counts as known."""
    return sorted(field for field in parsed.fields() if not _is_known(field, known))


def unknown_field_warning(field: str, known: Set[str]) -> str:
    """That no asset has ``field``, with the nearest known field, or else some of them."""
    ordered = sorted(known)
    nearest = difflib.get_close_matches(field, ordered, n=1)
    if nearest:
        hint = f"did you mean {nearest[0]!r}?"
    elif ordered:
        more = len(ordered) - LISTED_FIELDS
        listed = ", ".join(ordered[:LISTED_FIELDS]) + (f" and {more} more" if more > 0 else "")
        hint = f"fields in the index: {listed}"
    else:
        hint = "the assets have no metadata"
    return f"filter field {field!r}: no asset in the index has it; {hint}"


def _is_known(field: str, known: Set[str]) -> bool:
    nested = field + "."
    return field in known or any(path.startswith(nested) for path in known)
