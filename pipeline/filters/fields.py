"""The warning for a filter field no asset has. A comparison on a missing field is UNKNOWN,
so a misspelt field quietly matches nothing; the search names it and what it may have
meant (the index's backend tells which fields exist)."""

from __future__ import annotations

import difflib
from collections.abc import Set

LISTED_FIELDS = 10
"""How many of the known fields a warning lists when none is close to the unknown one."""


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
