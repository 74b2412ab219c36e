"""In-memory row-id -> asset mapping, and grouping of FAISS hits into asset hits.

Searches must not pay a SQLite query per hit, so every vector row's asset ordinal,
modality and timestamp live in numpy arrays indexed directly by row id (row ids are
dense: AUTOINCREMENT, never reused). Memory is ~13 bytes per row ever written.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from indexers.store import RowTable

_ABSENT = -1


class RowMap:
    """Which asset, modality and timestamp each live row id belongs to."""

    def __init__(self) -> None:
        self._ordinal = np.full(0, _ABSENT, dtype=np.int64)
        self._modality = np.zeros(0, dtype=np.int8)
        self._timestamp = np.zeros(0, dtype=np.float64)
        self.max_row_id = 0
        """Highest row id ever seen, live or not: new rows always come above it."""
        self.live_count = 0

    def extend(self, table: RowTable) -> None:
        if not len(table.row_ids):
            return
        top = int(table.row_ids.max())
        self._grow_to(top + 1)
        fresh = self._ordinal[table.row_ids] == _ABSENT
        self._ordinal[table.row_ids] = table.ordinals
        self._modality[table.row_ids] = table.modalities
        self._timestamp[table.row_ids] = table.timestamps
        self.live_count += int(fresh.sum())
        self.max_row_id = max(self.max_row_id, top)

    def drop(self, row_ids: np.ndarray) -> None:
        row_ids = np.asarray(row_ids, dtype=np.int64)
        row_ids = row_ids[row_ids < len(self._ordinal)]
        was_live = self._ordinal[row_ids] != _ABSENT
        self.live_count -= int(np.count_nonzero(was_live))
        self._ordinal[row_ids] = _ABSENT

    def live_row_ids(self, above: int = 0) -> np.ndarray:
        """Sorted live row ids greater than ``above``."""
        return np.flatnonzero(self._ordinal[above + 1 :] != _ABSENT).astype(np.int64) + above + 1

    def rows_of_assets(self, ordinals: np.ndarray) -> np.ndarray:
        """Sorted live row ids of the given asset ordinals."""
        return np.flatnonzero(np.isin(self._ordinal, ordinals)).astype(np.int64)

    def rows_of_modalities(self, codes: np.ndarray) -> np.ndarray:
        """Sorted live row ids whose modality code is one of ``codes``."""
        live = self._ordinal != _ABSENT
        return np.flatnonzero(live & np.isin(self._modality, codes)).astype(np.int64)

    def ordinals_of(self, row_ids: np.ndarray) -> np.ndarray:
        """Asset ordinal per row id; -1 for ids that are -1 (no hit) or not live."""
        inside = (row_ids >= 0) & (row_ids < len(self._ordinal))
        ordinals = np.full(row_ids.shape, _ABSENT, dtype=np.int64)
        ordinals[inside] = self._ordinal[row_ids[inside]]
        return ordinals

    def modalities_of(self, row_ids: np.ndarray) -> np.ndarray:
        return self._modality[row_ids]

    def timestamps_of(self, row_ids: np.ndarray) -> np.ndarray:
        return self._timestamp[row_ids]

    def _grow_to(self, size: int) -> None:
        if size <= len(self._ordinal):
            return
        capacity = max(size, 2 * len(self._ordinal))  # amortised appends during builds
        extra = capacity - len(self._ordinal)
        self._ordinal = np.concatenate([self._ordinal, np.full(extra, _ABSENT, dtype=np.int64)])
        self._modality = np.concatenate([self._modality, np.zeros(extra, dtype=np.int8)])
        self._timestamp = np.concatenate([self._timestamp, np.full(extra, np.nan)])


@dataclass(frozen=True)
class AssetHits:
    """Per query, the best ``k`` distinct assets, padded with ordinal -1."""

    ordinals: np.ndarray  # (n_queries, k) int64
    scores: np.ndarray  # (n_queries, k) float32
    rows: np.ndarray  # (n_queries, k) int64: the best row of each asset
    found: np.ndarray  # (n_queries,) distinct assets found, at most k


def best_row_per_asset(
    scores: np.ndarray,
    row_ids: np.ndarray,
    rows: RowMap,
    k: int,
    one_row_per_asset: bool = False,
) -> AssetHits:
    """Group FAISS results (best first per query) by asset: an asset scores as its best
    row. ``one_row_per_asset`` skips the grouping when no asset has two rows."""
    ordinals = rows.ordinals_of(row_ids)
    keep = ordinals != _ABSENT
    if not one_row_per_asset:
        keep &= _first_occurrences(ordinals)
    rank = np.cumsum(keep, axis=1) - 1
    keep &= rank < k
    query, column = np.nonzero(keep)
    slot = rank[query, column]

    n_queries = len(row_ids)
    out_ordinals = np.full((n_queries, k), _ABSENT, dtype=np.int64)
    out_scores = np.full((n_queries, k), -np.inf, dtype=np.float32)
    out_rows = np.full((n_queries, k), _ABSENT, dtype=np.int64)
    out_ordinals[query, slot] = ordinals[query, column]
    out_scores[query, slot] = scores[query, column]
    out_rows[query, slot] = row_ids[query, column]
    return AssetHits(out_ordinals, out_scores, out_rows, keep.sum(axis=1))


def _first_occurrences(ordinals: np.ndarray) -> np.ndarray:
    """Mask of the first time each ordinal appears in its query's row."""
    n_queries, width = ordinals.shape
    span = int(ordinals.max(initial=0)) + 2
    keys = (np.arange(n_queries, dtype=np.int64)[:, None] * span + ordinals + 1).ravel()
    _, first = np.unique(keys, return_index=True)
    mask = np.zeros(keys.shape, dtype=bool)
    mask[first] = True
    return mask.reshape(n_queries, width)
