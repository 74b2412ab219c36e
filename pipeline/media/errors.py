"""The one error every media loader raises for input it cannot use."""

from __future__ import annotations


class MediaError(Exception):
    """A file or buffer that cannot be used: ``item`` names it, ``reason`` says why."""

    def __init__(self, item: object, reason: str) -> None:
        self.item = str(item)
        self.reason = reason
        super().__init__(f"{self.item}: {reason}")

    def __reduce__(self) -> tuple[type[MediaError], tuple[str, str]]:
        # Decode workers may run in other processes; keep both fields across pickling.
        return type(self), (self.item, self.reason)
