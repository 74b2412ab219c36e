"""Batch search results from grouped FAISS results, without a SQLite query per search.

Each asset's id, and its id and metadata as the JSON text its hits end with, live in memory
(:class:`HitFields`); :func:`gather_batch` turns a search's best rows into a
:class:`~indexers.batch.SearchBatch` with array lookups only.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from indexers.batch import NO_MODALITY, SearchBatch
from indexers.rows import AssetHits, RowMap
from indexers.store import MODALITIES

_VIDEO = MODALITIES.index("video")


class HitFields:
    """Per asset ordinal, its id and the end of its hits' JSON text:
    ``"id":..,"metadata":{..}}``.

    About 120 bytes plus the id (twice) and metadata JSON per asset: ~150 MiB for 1M assets
    with short ids and metadata. The store stays the source of truth: the owner loads this
    from it and refreshes the assets each write touches (:meth:`set` after :meth:`forget`).
    """

    def __init__(self) -> None:
        self._ids = np.full(0, None, dtype=object)
        self._tails = np.full(0, None, dtype=object)

    @classmethod
    def load(cls, chunks: Iterable[tuple[np.ndarray, list[str], list[str]]]) -> HitFields:
        """From (ordinals, ids, tails) chunks, as ``MetadataStore.hit_fields`` gives."""
        fields = cls()
        for ordinals, ids, tails in chunks:
            fields.set(ordinals, ids, tails)
        return fields

    def set(self, ordinals: np.ndarray, ids: list[str], tails: list[str]) -> None:
        if not len(ordinals):
            return
        self._grow_to(int(ordinals.max()) + 1)
        self._ids[ordinals] = _column(ids)
        self._tails[ordinals] = _column(tails)

    def forget(self, ordinals: np.ndarray) -> None:
        ordinals = ordinals[(ordinals >= 0) & (ordinals < len(self._tails))]
        self._ids[ordinals] = None
        self._tails[ordinals] = None

    def of(self, ordinals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The ids and JSON tails of the given ordinals (None for -1 or a forgotten asset)."""
        if not len(self._tails):
            nothing = np.full(ordinals.shape, None, dtype=object)
            return nothing, nothing.copy()
        inside = (ordinals >= 0) & (ordinals < len(self._tails))
        safe = np.where(inside, ordinals, 0)
        return np.where(inside, self._ids[safe], None), np.where(inside, self._tails[safe], None)

    def _grow_to(self, size: int) -> None:
        if size <= len(self._tails):
            return
        capacity = max(size, 2 * len(self._tails))  # amortised appends during builds
        self._ids = _grown(self._ids, capacity)
        self._tails = _grown(self._tails, capacity)


def gather_batch(best: AssetHits, rows: RowMap, fields: HitFields) -> SearchBatch:
    """The SearchBatch of ``best``: its assets' ids and JSON tails, and their best rows'
    modality and (for video) frame time."""
    found_mask = np.arange(best.ordinals.shape[1]) < best.found[:, None]
    modalities = np.full(best.rows.shape, NO_MODALITY, dtype=np.int8)
    modalities[found_mask] = rows.modalities_of(best.rows[found_mask])
    timestamps = np.full(best.rows.shape, np.nan)
    video = modalities == _VIDEO
    timestamps[video] = rows.timestamps_of(best.rows[video])
    scores = np.where(found_mask, best.scores, np.float32(np.nan))
    ids, tails = fields.of(np.where(found_mask, best.ordinals, -1))
    return SearchBatch(ids, scores, modalities, timestamps, best.found, tails)


def _column(strings: list[str]) -> np.ndarray:
    """A 1-D object array of the strings: assigning the list directly could let numpy guess
    a 2-D shape or a string dtype."""
    column = np.empty(len(strings), dtype=object)
    column[:] = strings
    return column


def _grown(column: np.ndarray, capacity: int) -> np.ndarray:
    grown = np.full(capacity, None, dtype=object)
    grown[: len(column)] = column
    return grown
