"""What a request can be refused for, besides a full or slow stage (``gate``); ``errors``
turns each into its status code."""

from __future__ import annotations


class NotFound(Exception):
    """No such index, asset or file (404)."""


class NotReady(Exception):
    """The index is still opening, or could not open (503)."""


class Refused(Exception):
    """A request field the server will not use: ``status`` 403 (policy), 413 (over a
    limit) or 422 (unreadable, of the wrong kind, or a requested size over its limit);
    ``field`` names it in the request, ``limit`` the setting it went over."""

    def __init__(self, status: int, field: str, reason: str, limit: str | None = None) -> None:
        self.status, self.field, self.reason, self.limit = status, field, reason, limit
        super().__init__(f"{field}: {reason}")


class LimitExceeded(Refused):
    """A count over a ``serve.*`` limit (documents, assets, top_k)."""
