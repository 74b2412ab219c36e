"""The error an evaluation stops with: the message says what to do."""

from __future__ import annotations


class EvalError(ValueError):
    """An evaluation that cannot start or go on (a non-empty --out without --resume, an
    --out begun with other settings, a store that does not read back)."""
