"""The text channel interface: recall over asset texts beside the CLIP index.

A channel keeps its own copy of the texts it indexes, keyed by asset id; ``add`` upserts
and ``delete`` removes. Changes live in memory until ``save`` writes them under the
index directory (``DIR/channels/<name>/``, see :mod:`indexers.text_channels.storage`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple, Protocol, runtime_checkable

from typing_extensions import Self

CHANNELS_FOLDER = "channels"


class ChannelHit(NamedTuple):
    """One recalled document: its asset id and the channel's score (higher is better)."""

    id: str
    score: float


class TextChannelError(RuntimeError):
    """A channel that cannot be built, loaded or used; the message says why."""


class ChannelNotFoundError(TextChannelError):
    """No saved channel in the directory given."""


class IncompatibleChannelError(TextChannelError):
    """A saved channel whose vectors the given settings cannot search (another model)."""


@runtime_checkable
class TextChannel(Protocol):
    name: str

    def add(self, ids: Sequence[str], texts: Sequence[str]) -> None:
        """Insert or replace documents by id. Every item is checked first: one bad item
        adds nothing."""
        ...

    def delete(self, ids: Sequence[str]) -> int:
        """Remove documents by id (unknown ids are ignored); returns how many existed."""
        ...

    def search(self, queries: Sequence[str], k: int) -> list[list[ChannelHit]]:
        """Up to ``k`` hits per query, best first."""
        ...

    def ids(self) -> set[str]: ...

    def __len__(self) -> int: ...

    def save(self, directory: Path) -> None:
        """Write the channel to ``directory`` atomically: a reader sees the old or the new
        channel, never a mix."""
        ...

    @classmethod
    def load(cls, directory: Path, config: Any) -> Self: ...


def channel_directory(index_directory: Path, name: str) -> Path:
    """Where the channel called ``name`` of the index in ``index_directory`` is saved."""
    return Path(index_directory) / CHANNELS_FOLDER / name


def checked_documents(ids: Sequence[str], texts: Sequence[str]) -> dict[str, str]:
    """The documents of an ``add`` call as id -> text; a repeated id keeps its last text."""
    if isinstance(ids, str) or isinstance(texts, str):
        raise TypeError("ids and texts must be sequences of strings, not one string")
    if len(ids) != len(texts):
        raise ValueError(f"got {len(ids)} ids but {len(texts)} texts")
    documents: dict[str, str] = {}
    for position, (doc_id, text) in enumerate(zip(ids, texts, strict=True)):
        if not isinstance(doc_id, str) or not doc_id:
            raise ValueError(f"document {position}: id must be a non-empty string, got {doc_id!r}")
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"document {doc_id!r}: text must be a non-blank string")
        documents[doc_id] = text
    return documents


def checked_queries(queries: Sequence[str], k: int) -> list[str]:
    if isinstance(queries, str):
        raise TypeError("queries must be a sequence of strings, not one string")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    for position, query in enumerate(queries):
        if not isinstance(query, str) or not query.strip():
            raise ValueError(f"query {position}: must be a non-blank string, got {query!r}")
    return list(queries)
