"""The user-facing index: a directory with a SQLite store, a FAISS file and a manifest.

``meta.sqlite`` is the source of truth (assets, their vectors, failures). ``vectors.faiss``
is derived from it and saved atomically by :meth:`Index.commit`; whenever the FAISS side
is needed (first search or commit after opening) it is reconciled with the store by row
id: rows the file lacks are added, rows the store no longer has are removed, and a
missing or unreadable file is rebuilt. So a crash at any point loses no committed vector
and duplicates none. IVF training and HNSW compaction also happen at that sync (see
``indexers.faiss_index``), never per upsert batch.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexers.atomic import remove_stale_temp_files
from indexers.batch import SearchBatch
from indexers.embedders.base import Embedder
from indexers.faiss_index import INDEX_FILE, FaissFileError, FaissIndex, min_training_vectors
from indexers.hits import HitFields, gather_batch
from indexers.index_inputs import as_filter, check_item, check_queries
from indexers.lifecycle import CommitOnExit, FailureLog, warn_if_settings_differ
from indexers.manifest import (
    MANIFEST_FILE,
    IncompatibleIndexError,
    IndexError_,
    IndexExistsError,
    IndexNotFoundError,
    Manifest,
    validate_index_config,
)
from indexers.media_paths import MediaPaths
from indexers.metadata_fields import FIELD_SAMPLE, fields_of
from indexers.query_embedding import SearchByContent
from indexers.rows import AssetHits, RowMap, best_row_per_asset
from indexers.store import (
    MODALITIES,
    STORE_FILE,
    EmbeddedVector,
    MetadataStore,
)
from pipeline.config import Config
from pipeline.filters import Filter
from pipeline.schema import Asset, Modality, SearchHit

logger = logging.getLogger(__name__)

__all__ = [
    "EmbeddedVector",
    "IncompatibleIndexError",
    "Index",
    "IndexError_",
    "IndexExistsError",
    "IndexNotFoundError",
    "Manifest",
]

_QUERY_BATCH = 1024
_SYNC_CHUNK = 50_000
_SAMPLE_SEED = 0
_SIDE_FILES = (STORE_FILE, f"{STORE_FILE}-wal", f"{STORE_FILE}-shm", INDEX_FILE, MANIFEST_FILE)


@dataclass(frozen=True)
class _Subset:
    """The live rows, and the number of assets, that a filter lets a search see."""

    rows: np.ndarray
    assets: int


class Index(FailureLog, CommitOnExit, SearchByContent):
    """Open with :meth:`create`, :meth:`open` or :meth:`open_or_create`. Thread-safe; one
    writing process per directory. As a context manager it commits on a clean exit."""

    def __init__(
        self,
        directory: Path,
        manifest: Manifest,
        store: MetadataStore,
        embedder: Embedder | None = None,
    ) -> None:
        self.directory = directory
        self.manifest = manifest
        self._media = MediaPaths(directory, manifest.media_paths)
        self._store = store
        self._failure_store = store
        self._embedder = embedder
        self._lock = threading.RLock()
        self._rows = RowMap()
        self._rows.extend(store.row_table())
        self._asset_count = store.asset_count()
        self._faiss: FaissIndex | None = None  # loaded or rebuilt at the first sync
        self._hit_fields: HitFields | None = None  # loaded when a search first needs it
        self._faiss_through = 0  # highest row id the in-memory FAISS index has caught up to
        self._pending_removals: list[np.ndarray] = []
        self._unsaved = False

    # -- opening -------------------------------------------------------------------------

    @classmethod
    def create(cls, directory: Path, config: Config, model_id: str, dim: int) -> Index:
        """A new empty index; refuses a directory that already holds a non-empty one."""
        directory = Path(directory)
        validate_index_config(config.index, dim)
        _clear_empty_index(directory)
        directory.mkdir(parents=True, exist_ok=True)
        store = MetadataStore.open(directory / STORE_FILE, create=True)
        manifest = Manifest.new(config, model_id, dim)
        manifest.save(directory)  # last: a manifest marks a complete index directory
        return cls(directory, manifest, store)

    @classmethod
    def open(
        cls, directory: Path, embedder: Embedder | None = None, model_id: str | None = None
    ) -> Index:
        """Open an existing index. With ``embedder`` or ``model_id``, refuse (with
        :class:`IncompatibleIndexError`) an index built by another model."""
        directory = Path(directory)
        manifest = Manifest.load(directory)
        manifest.check_model(model_id)
        if embedder is not None:
            manifest.check_model(embedder.model_id, embedder.dim)
        store_path = directory / STORE_FILE
        if not store_path.is_file():
            raise IndexNotFoundError(
                f"{directory}: {STORE_FILE} is missing; the index cannot be recovered without it"
            )
        for leftover in remove_stale_temp_files(directory):
            logger.info("removed %s, left by an interrupted write", leftover)
        return cls(directory, manifest, MetadataStore.open(store_path), embedder)

    @classmethod
    def open_or_create(cls, directory: Path, config: Config, model_id: str, dim: int) -> Index:
        directory = Path(directory)
        if not (directory / MANIFEST_FILE).is_file():
            return cls.create(directory, config, model_id, dim)
        Manifest.load(directory).check_model(model_id, dim)
        index = cls.open(directory)
        warn_if_settings_differ(directory, index.manifest.index, config.index)
        return index

    def close(self) -> None:
        with self._lock:
            self._store.close()

    # -- writing -------------------------------------------------------------------------

    def upsert_many(self, items: Sequence[tuple[Asset, Sequence[EmbeddedVector]]]) -> None:
        """Insert or replace assets (all vector rows of a replaced asset go) in one
        transaction. Every item is checked first: one bad item stores nothing."""
        items = list(items)
        for asset, vectors in items:
            check_item(asset, vectors, self.manifest.dim)
        stored = [(self._media.for_storage(asset), vectors) for asset, vectors in items]
        with self._lock:
            added, replaced = self._store.upsert(stored)
            self._after_write(added, replaced)

    def delete(self, ids: Sequence[str]) -> int:
        """Delete assets by id; returns how many of them existed."""
        with self._lock:
            deleted, removed_rows = self._store.delete(list(ids))
            self._after_write(-deleted, removed_rows)
            return deleted

    def commit(self) -> None:
        """Bring FAISS up to date with the store (training or compacting if due), save it
        atomically and stamp the manifest. Store writes are already durable without it."""
        with self._lock:
            self._sync()
            assert self._faiss is not None
            if self._unsaved or not (self.directory / INDEX_FILE).is_file():
                self._faiss.save(self.directory / INDEX_FILE)
                self.manifest = self.manifest.touched()
                self.manifest.save(self.directory)
                self._unsaved = False

    # -- reading -------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._asset_count

    def __contains__(self, asset_id: object) -> bool:
        if not isinstance(asset_id, str):
            return False
        with self._lock:
            return self._store.contains(asset_id)

    def ids(self) -> set[str]:
        with self._lock:
            return self._store.asset_ids()

    def get(self, asset_id: str) -> Asset | None:
        with self._lock:
            return self._store.get(asset_id, self._media)

    def get_many(self, asset_ids: Sequence[str]) -> dict[str, Asset]:
        """Asset id -> asset, for the ids the index holds."""
        with self._lock:
            return self._store.get_many(asset_ids, self._media)

    def vector_count(self) -> int:
        return self._rows.live_count

    def has_metadata_field(self, path: str) -> bool:
        with self._lock:
            return self._store.has_metadata_path(path.split("."))

    def metadata_fields(self, sample: int = FIELD_SAMPLE) -> frozenset[str]:
        with self._lock:
            return fields_of(self._store.metadata_sample(sample))

    @property
    def faiss(self) -> FaissIndex:
        """The synced FAISS side (for diagnostics and benchmarks)."""
        with self._lock:
            self._sync()
            assert self._faiss is not None
            return self._faiss

    # -- searching -----------------------------------------------------------------------

    def search_vectors(
        self,
        queries: np.ndarray,
        k: int = 10,
        filter: Filter | str | None = None,
        modalities: Collection[Modality] | None = None,
    ) -> list[list[SearchHit]]:
        """:meth:`search_batch` as SearchHits: one list per query, best first."""
        return self.search_batch(queries, k, filter, modalities).to_hits()

    def search_batch(
        self,
        queries: np.ndarray,
        k: int = 10,
        filter: Filter | str | None = None,
        modalities: Collection[Modality] | None = None,
    ) -> SearchBatch:
        """The best ``k`` distinct assets per query vector, best first, as arrays. An asset
        scores as its best row; its hit names that row's modality (and frame time for
        video). With ``filter``, only assets whose metadata match it: SQLite finds them,
        and FAISS searches only their rows, so k come back whenever k match (exactly for
        flat). With ``modalities``, only rows of those modalities count (a recall channel
        such as text-to-image)."""
        queries = check_queries(queries, self.manifest.dim, k)
        parsed = as_filter(filter)
        with self._lock:
            self._sync()
            hit_fields = self._loaded_hit_fields()
            subset = self._subset(parsed, modalities)
            batches = [
                gather_batch(
                    self._best_assets(queries[start : start + _QUERY_BATCH], k, subset),
                    self._rows,
                    hit_fields,
                )
                # At least one (maybe empty) chunk, so zero queries give an empty batch.
                for start in range(0, max(1, len(queries)), _QUERY_BATCH)
            ]
            return SearchBatch.concatenate(batches)

    def _subset(
        self, parsed: Filter | None, modalities: Collection[Modality] | None
    ) -> _Subset | None:
        if parsed is None and modalities is None:
            return None
        rows: np.ndarray | None = None
        if parsed is not None:
            where, parameters = parsed.to_sqlite("metadata")
            rows = self._rows.rows_of_assets(self._store.ordinals_where(where, parameters))
        if modalities is not None:
            codes = np.asarray([MODALITIES.index(m) for m in modalities], dtype=np.int8)
            of_modality = self._rows.rows_of_modalities(codes)
            rows = of_modality if rows is None else np.intersect1d(rows, of_modality)
        assert rows is not None
        assets = len(np.unique(self._rows.ordinals_of(rows)))
        return _Subset(rows=rows, assets=assets)

    def _best_assets(self, queries: np.ndarray, k: int, subset: _Subset | None) -> AssetHits:
        """Over-fetch rows so k distinct assets come back whenever they exist: start
        from k times the mean rows per asset and double for the queries that fall short."""
        assert self._faiss is not None
        live = self._rows.live_count if subset is None else len(subset.rows)
        assets = self._asset_count if subset is None else subset.assets
        allowed = None if subset is None else subset.rows
        n_queries = len(queries)
        result = AssetHits(
            ordinals=np.full((n_queries, k), -1, dtype=np.int64),
            scores=np.full((n_queries, k), -np.inf, dtype=np.float32),
            rows=np.full((n_queries, k), -1, dtype=np.int64),
            found=np.zeros(n_queries, dtype=np.int64),
        )
        if live == 0:
            return result
        one_row_per_asset = live == assets
        fetch = min(live, math.ceil(k * live / max(1, assets)))
        pending = np.arange(n_queries)
        while len(pending):
            scores, row_ids = self._faiss.search(queries[pending], fetch, allowed)
            grouped = best_row_per_asset(scores, row_ids, self._rows, k, one_row_per_asset)
            # A trailing -1 id: the index had nothing more to give this query at its settings.
            done = (grouped.found >= k) | (row_ids[:, -1] < 0) | (fetch >= live)
            for name in ("ordinals", "scores", "rows", "found"):
                getattr(result, name)[pending[done]] = getattr(grouped, name)[done]
            pending = pending[~done]
            fetch = min(live, fetch * 2)
        if subset is not None:
            short = np.flatnonzero(result.found < min(k, assets))
            if len(short):
                exact = self._exact_subset_search(queries[short], k, subset.rows)
                for name in ("ordinals", "scores", "rows", "found"):
                    getattr(result, name)[short] = getattr(exact, name)
        return result

    def _exact_subset_search(self, queries: np.ndarray, k: int, rows: np.ndarray) -> AssetHits:
        """Brute force over a filter's rows, for the queries that HNSW or IVF left short
        (a graph walk or a few probed lists can miss a small subset). Its cost grows with
        the subset, and it only runs where the approximate search fell short of k."""
        scores = queries @ self._store.vectors(rows, self.manifest.dim).T
        order = np.argsort(-scores, axis=1)
        return best_row_per_asset(
            np.take_along_axis(scores, order, axis=1), rows[order], self._rows, k
        )

    # -- FAISS sync ----------------------------------------------------------------------

    def _sync(self) -> None:
        if self._faiss is None:
            self._faiss = self._load_faiss()
        else:
            self._apply_pending()
        reason = self._faiss.rebuild_reason(self._rows.live_count)
        if reason:
            logger.info("%s: %s", self.directory, reason)
            self._faiss = self._rebuild_faiss()

    def _load_faiss(self) -> FaissIndex:
        path = self.directory / INDEX_FILE
        try:
            faiss_index = FaissIndex.load(path, self.manifest.index, self.manifest.dim)
        except FaissFileError as exc:
            # Missing is normal before the first commit; unreadable never is.
            log = logger.warning if path.exists() else logger.info
            log("%s; rebuilding it from %s", exc, STORE_FILE)
            return self._rebuild_faiss()
        self._reconcile(faiss_index)
        return faiss_index

    def _reconcile(self, faiss_index: FaissIndex) -> None:
        """Make a loaded FAISS file hold exactly the store's rows."""
        stored = faiss_index.stored_ids()
        live = self._rows.live_row_ids()
        stale = np.setdiff1d(stored, live, assume_unique=True)
        missing = np.setdiff1d(live, stored, assume_unique=True)
        faiss_index.remove(stale)
        for start in range(0, len(missing), _SYNC_CHUNK):
            chunk = missing[start : start + _SYNC_CHUNK]
            faiss_index.add(chunk, self._store.vectors(chunk, self.manifest.dim))
        if len(stale) or len(missing):
            logger.info(
                "%s: FAISS file was behind the store: added %d rows, removed %d",
                self.directory,
                len(missing),
                len(stale),
            )
            self._unsaved = True
        self._faiss_through = self._rows.max_row_id

    def _apply_pending(self) -> None:
        assert self._faiss is not None
        if self._pending_removals:
            removed = np.concatenate(self._pending_removals)
            # Rows above the watermark were never added, so there is nothing to remove.
            self._faiss.remove(removed[removed <= self._faiss_through])
            self._pending_removals.clear()
            self._unsaved = True
        if self._rows.max_row_id > self._faiss_through:
            for row_ids, vectors in self._store.iter_vectors(self._faiss_through, _SYNC_CHUNK):
                self._faiss.add(row_ids, vectors)
            self._faiss_through = self._rows.max_row_id
            self._unsaved = True

    def _rebuild_faiss(self) -> FaissIndex:
        config = self.manifest.index
        sample = None
        live = self._rows.live_row_ids()
        if min_training_vectors(config) and len(live) >= min_training_vectors(config):
            size = min(config.ivf.train_size, len(live))
            chosen = np.sort(np.random.default_rng(_SAMPLE_SEED).choice(live, size, replace=False))
            sample = self._store.vectors(chosen, self.manifest.dim)
        faiss_index = FaissIndex.empty(config, self.manifest.dim, sample)
        for row_ids, vectors in self._store.iter_vectors(0, _SYNC_CHUNK):
            faiss_index.add(row_ids, vectors)
        self._faiss_through = self._rows.max_row_id
        self._pending_removals.clear()
        self._unsaved = True
        return faiss_index

    # -- helpers -------------------------------------------------------------------------

    def _after_write(self, asset_delta: int, removed_rows: np.ndarray) -> None:
        touched = self._rows.ordinals_of(removed_rows)
        self._rows.drop(removed_rows)
        written = self._store.row_table(after_row_id=self._rows.max_row_id)
        self._rows.extend(written)
        self._asset_count += asset_delta
        if self._hit_fields is not None:
            # Deleted and replaced assets go; written ones (a replaced asset keeps its
            # ordinal) come back with their stored id and metadata.
            self._hit_fields.forget(touched)
            for ordinals, ids, tails in self._store.hit_fields(np.unique(written.ordinals)):
                self._hit_fields.set(ordinals, ids, tails)
        if self._faiss is not None and len(removed_rows):
            self._pending_removals.append(removed_rows)

    def _loaded_hit_fields(self) -> HitFields:
        if self._hit_fields is None:
            self._hit_fields = HitFields.load(self._store.hit_fields())
        return self._hit_fields


def _clear_empty_index(directory: Path) -> None:
    """Remove an earlier index with no assets (e.g. a build that failed before its first
    checkpoint); refuse to touch one that holds assets."""
    store_path = directory / STORE_FILE
    if not store_path.is_file():
        if (directory / MANIFEST_FILE).is_file():
            raise IndexError_(
                f"{directory} holds an index manifest but no {STORE_FILE}; delete the "
                "directory to start over"
            )
        return
    store = MetadataStore.open(store_path)
    try:
        count = store.asset_count()
    finally:
        store.close()
    if count:
        raise IndexExistsError(
            f"{directory} already holds an index with {count} assets; open it to add to it, "
            "or delete the directory to start over"
        )
    for name in _SIDE_FILES:
        (directory / name).unlink(missing_ok=True)
