"""What a request can be refused for, besides bad media (``media_in.MediaRefused``) and a
full or slow stage (``gate``); ``errors`` turns each into its status code."""

from __future__ import annotations


class NotFound(Exception):
    """No such index, asset or file (404)."""


class NotReady(Exception):
    """The index is still opening, or could not open (503)."""


class LimitExceeded(Exception):
    """A count over a ``serve.*`` limit (413, or 422 for a requested size)."""

    def __init__(self, status: int, field: str, reason: str, limit: str) -> None:
        self.status, self.field, self.reason, self.limit = status, field, reason, limit
        super().__init__(f"{field}: {reason}")
