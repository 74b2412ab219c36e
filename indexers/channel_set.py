"""The text channels configured for one index, kept in step with its store.

The store commits each build chunk as it goes, while a channel is saved whole at the end
of a build (or a delete). A crash in between leaves the channel behind the store;
:meth:`ChannelSet.reconcile`, run whenever the set is opened for writing, catches it up
from the store's texts, so the store is always the truth the channels follow.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from indexers.text_channels import (
    ChannelHit,
    TextChannel,
    TextChannelConfig,
    open_text_channel,
    save_text_channel,
)
from pipeline.schema import Asset

logger = logging.getLogger(__name__)

TextsOf = Callable[[str], str | None]
"""The text the store holds for an asset id (None when it has none or no such id)."""


def _serialised(method: Callable[..., Any]) -> Callable[..., Any]:
    """Runs the method under the set's lock: a server searches while it writes, and a
    channel (a BM25 model, a vector matrix) is not safe to read while it changes."""

    @functools.wraps(method)
    def locked(self: ChannelSet, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)

    return locked


class ChannelSet:
    """Every configured text channel of the index in ``index_dir``, by name. Thread-safe:
    reads and writes take turns."""

    def __init__(self, index_dir: Path, channels: Sequence[TextChannel]) -> None:
        self.index_dir = Path(index_dir)
        self._channels: dict[str, TextChannel] = {}
        for channel in channels:
            if channel.name in self._channels:
                raise ValueError(f"text channel {channel.name!r} is configured twice")
            self._channels[channel.name] = channel
        self._unsaved: set[str] = set()
        self._lock = threading.RLock()

    @classmethod
    def open(cls, index_dir: Path, configs: Sequence[TextChannelConfig]) -> ChannelSet:
        """The saved channels of the index, or new empty ones where none was saved."""
        return cls(index_dir, [open_text_channel(index_dir, config) for config in configs])

    @property
    def names(self) -> list[str]:
        return list(self._channels)

    def __len__(self) -> int:
        return len(self._channels)

    def __contains__(self, name: object) -> bool:
        return name in self._channels

    def channel(self, name: str) -> TextChannel:
        try:
            return self._channels[name]
        except KeyError:
            known = ", ".join(self._channels) or "none"
            message = f"no text channel {name!r} in this index (configured: {known})"
            raise KeyError(message) from None

    # -- writing -------------------------------------------------------------------------

    @_serialised
    def add(self, assets: Iterable[Asset]) -> None:
        """Upsert the assets' texts. An asset without text (or with only whitespace, as a
        scanned PDF page) is removed instead, so a replaced asset leaves no stale text."""
        if not self._channels:
            return
        texts: dict[str, str] = {}
        textless: list[str] = []
        for asset in assets:
            if _has_text(asset.text):
                texts[asset.id] = asset.text  # type: ignore[assignment]
                continue
            texts.pop(asset.id, None)
            textless.append(asset.id)
        for name, channel in self._channels.items():
            if textless and channel.delete(textless):
                self._unsaved.add(name)
            if texts:
                channel.add(list(texts), list(texts.values()))
                self._unsaved.add(name)

    @_serialised
    def delete(self, ids: Sequence[str]) -> int:
        """Remove ids from every channel; returns the most any one channel held."""
        removed = 0
        for name, channel in self._channels.items():
            count = channel.delete(list(ids))
            if count:
                self._unsaved.add(name)
            removed = max(removed, count)
        return removed

    @_serialised
    def save(self) -> None:
        """Save each changed channel (each save is atomic on its own)."""
        for name in sorted(self._unsaved):
            save_text_channel(self.index_dir, self._channels[name])
        self._unsaved.clear()

    @_serialised
    def reconcile(self, store_ids: set[str], texts_of: TextsOf) -> None:
        """Make every channel hold exactly the store's texts: ids the channel lacks are
        added from ``texts_of``, ids the store no longer has are deleted. Every store id
        a channel lacks has its text looked up, text-less ones (images) included: one
        store read per such asset each time."""
        lacking_any = set().union(*(store_ids - c.ids() for c in self._channels.values()))
        texts = {asset_id: texts_of(asset_id) for asset_id in sorted(lacking_any)}
        texts = {asset_id: text for asset_id, text in texts.items() if _has_text(text)}
        for name, channel in self._channels.items():
            held = channel.ids()
            missing = [asset_id for asset_id in texts if asset_id not in held]
            extra = sorted(held - store_ids)
            if missing:
                channel.add(missing, [texts[asset_id] for asset_id in missing])  # type: ignore[misc]
            if extra:
                channel.delete(extra)
            if missing or extra:
                logger.info(
                    "text channel %s caught up with the store: %d added, %d removed",
                    name,
                    len(missing),
                    len(extra),
                )
                self._unsaved.add(name)

    # -- reading -------------------------------------------------------------------------

    def vector_dims(self) -> dict[str, int]:
        """Channel name -> vector dim for the channels made of vectors (``text_dense``),
        so an index can hold those vectors too. Loads the channels' models."""
        return {
            name: channel.dimension()
            for name, channel in self._channels.items()
            if isinstance(channel, _VectorChannel)
        }

    @_serialised
    def vectors_of(self, name: str, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """The vectors channel ``name`` holds for ``ids`` (ids it lacks are left out)."""
        return self._vector_channel(name).vectors_of(ids)

    @_serialised
    def query_vector(self, name: str, query_text: str) -> np.ndarray:
        """The query text encoded by vector channel ``name``'s model."""
        return self._vector_channel(name).encode([query_text])[0]

    def _vector_channel(self, name: str) -> _VectorChannel:
        channel = self.channel(name)
        if not isinstance(channel, _VectorChannel):
            raise TypeError(f"text channel {name!r} holds no vectors")
        return channel

    @_serialised
    def search(self, name: str, query_text: str, k: int) -> list[ChannelHit]:
        """Up to ``k`` hits of one channel for one query text, best first."""
        return self.channel(name).search([query_text], k)[0]


@runtime_checkable
class _VectorChannel(Protocol):
    def dimension(self) -> int: ...

    def vectors_of(self, ids: Sequence[str]) -> dict[str, np.ndarray]: ...
    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


def _has_text(text: str | None) -> bool:
    return text is not None and bool(text.strip())
