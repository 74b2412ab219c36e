"""The FAISS side of an index: a derived, rebuildable structure keyed by store row ids.

Kinds (``IndexConfig.kind``), all over inner product of L2-normalised vectors:

* ``flat``: exact search (``IndexIDMap2`` over ``IndexFlatIP``).
* ``hnsw``: ``IndexIDMap2`` over ``IndexHNSWFlat``.
* ``ivf_flat`` / ``ivf_pq``: ``IndexIVFFlat`` / ``IndexIVFPQ``, which keep row ids natively.

IVF kinds must be trained. Training uses a random sample of up to ``ivf.train_size``
stored vectors, with ``nlist`` clamped so each centroid gets at least 39 training points
(FAISS's own minimum). Until the store holds enough vectors to train at all (one for
``ivf_flat``, ``2**pq_bits`` for ``ivf_pq``) the index is an exact flat stand-in. Whenever
the store has grown enough that the clamped ``nlist`` could double, the index asks to be
retrained and rebuilt; once ``nlist`` reaches its configured value it is never retrained.

HNSW graphs cannot remove points, so deletions there are tombstones: searches pass an
``IDSelector`` that excludes them (FAISS then keeps walking the graph through deleted
nodes, which preserves recall, unlike over-fetching and filtering afterwards, which can
come up short). When tombstones pass a quarter of the graph, the index asks to be rebuilt
(compacted) so dead nodes stop costing search time and memory.
"""

from __future__ import annotations

from pathlib import Path

try:
    import faiss
except ImportError as exc:  # neither FAISS extra is installed
    raise ImportError(
        "vlsearch needs FAISS: pip install 'vlsearch[cpu]' (or 'vlsearch[gpu]' on CUDA hosts)"
    ) from exc
import numpy as np

from indexers.atomic import atomic_write
from pipeline.config import IndexConfig, IvfConfig

INDEX_FILE = "vectors.faiss"
MAX_TOMBSTONE_FRACTION = 0.25
MIN_POINTS_PER_CENTROID = 39
_IVF_KINDS = ("ivf_flat", "ivf_pq")


class FaissFileError(RuntimeError):
    """The FAISS file is missing, unreadable or does not match the index settings."""


def trainable_nlist(ivf: IvfConfig, n_vectors: int) -> int:
    """The nlist a corpus of ``n_vectors`` can train: configured, clamped to the sample."""
    n_train = min(n_vectors, ivf.train_size)
    return max(1, min(ivf.nlist, n_train // MIN_POINTS_PER_CENTROID))


def min_training_vectors(config: IndexConfig) -> int:
    """Vectors needed before the configured kind can be built (0: no training)."""
    if config.kind == "ivf_flat":
        return 1
    if config.kind == "ivf_pq":
        return 2**config.ivf.pq_bits  # k-means needs a point per PQ centroid
    return 0


class FaissIndex:
    """A FAISS index whose ids are store row ids."""

    def __init__(self, index: faiss.Index, config: IndexConfig) -> None:
        self.index = index
        """The bare FAISS object (what benchmarks compare against)."""
        self._config = config
        self._tombstones = np.empty(0, dtype=np.int64)
        self._search_params: faiss.SearchParameters | None = None
        self._selector_refs: tuple[object, ...] = ()
        self._apply_search_settings()

    # -- construction --------------------------------------------------------------------

    @classmethod
    def empty(
        cls, config: IndexConfig, dim: int, training_sample: np.ndarray | None = None
    ) -> FaissIndex:
        """A new empty index; IVF kinds are trained on ``training_sample`` when it is large
        enough, else they start as the exact flat stand-in."""
        kind = config.kind
        n_sample = 0 if training_sample is None else len(training_sample)
        if kind in _IVF_KINDS and n_sample < min_training_vectors(config):
            kind = "flat"
        if kind == "flat":
            return cls(faiss.IndexIDMap2(faiss.IndexFlatIP(dim)), config)
        if kind == "hnsw":
            graph = faiss.IndexHNSWFlat(dim, config.hnsw.m, faiss.METRIC_INNER_PRODUCT)
            graph.hnsw.efConstruction = config.hnsw.ef_construction
            return cls(faiss.IndexIDMap2(graph), config)
        assert training_sample is not None
        return cls(_trained_ivf(config, dim, training_sample), config)

    @classmethod
    def load(cls, path: Path, config: IndexConfig, dim: int) -> FaissIndex:
        if not path.is_file():
            raise FaissFileError(f"{path}: missing")
        try:
            index = faiss.read_index(str(path))
        except (RuntimeError, MemoryError) as exc:
            raise FaissFileError(f"{path}: unreadable ({str(exc).strip()[:200]})") from None
        found = _kind_of(index)
        expected = {config.kind, "flat"} if config.kind in _IVF_KINDS else {config.kind}
        if found not in expected:
            raise FaissFileError(f"{path}: holds a {found or 'foreign'} index, not {config.kind}")
        if index.d != dim:
            raise FaissFileError(f"{path}: holds {index.d}-dim vectors, not {dim}")
        return cls(index, config)

    def save(self, path: Path) -> None:
        """Write atomically; tombstones are not saved (the store's rows define them)."""
        atomic_write(path, lambda temp: faiss.write_index(self.index, str(temp)))

    # -- state ---------------------------------------------------------------------------

    @property
    def kind(self) -> str:
        """The structure actually held; ``flat`` for an IVF index not yet trained."""
        kind = _kind_of(self.index)
        assert kind is not None
        return kind

    @property
    def dim(self) -> int:
        return self.index.d

    @property
    def live_count(self) -> int:
        return self.index.ntotal - len(self._tombstones)

    def stored_ids(self) -> np.ndarray:
        """Every id held, tombstoned ones included, sorted."""
        if isinstance(self.index, faiss.IndexIDMap2):
            ids = faiss.vector_to_array(self.index.id_map)
        else:
            lists = self.index.invlists
            ids = np.concatenate(
                [np.empty(0, dtype=np.int64)]
                + [
                    faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
                    for i in range(self.index.nlist)
                    if lists.list_size(i)
                ]
            )
        return np.sort(ids.astype(np.int64, copy=False))

    def rebuild_reason(self, n_vectors: int) -> str | None:
        """Why the index should be rebuilt from the store now, or None."""
        if self.kind == "hnsw" and len(self._tombstones) > MAX_TOMBSTONE_FRACTION * max(
            1, self.index.ntotal
        ):
            return f"compacting {len(self._tombstones)} deleted HNSW nodes"
        if self._config.kind not in _IVF_KINDS:
            return None
        if self.kind == "flat":
            if n_vectors >= min_training_vectors(self._config):
                return f"training {self._config.kind} on {n_vectors} vectors"
            return None
        possible = trainable_nlist(self._config.ivf, n_vectors)
        if possible >= 2 * self.index.nlist:
            return f"retraining {self._config.kind}: nlist {self.index.nlist} -> {possible}"
        return None

    # -- updates and search --------------------------------------------------------------

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            self.index.add_with_ids(
                np.ascontiguousarray(vectors, dtype=np.float32),
                np.ascontiguousarray(ids, dtype=np.int64),
            )

    def remove(self, ids: np.ndarray) -> None:
        """Remove ids (absent ones are ignored); HNSW tombstones them."""
        ids = np.asarray(ids, dtype=np.int64)
        if not len(ids):
            return
        if self.kind == "hnsw":
            self._tombstones = np.union1d(self._tombstones, ids)
            self._apply_search_settings()
        else:
            self.index.remove_ids(faiss.IDSelectorBatch(ids))

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) of shape (n_queries, k), best first; missing results have id -1.
        With ``allowed`` (live row ids), FAISS skips every other row inside the search, so
        flat stays exact and HNSW/IVF keep their recall on a filtered subset."""
        if allowed is None:
            return self.index.search(queries, k, params=self._search_params)
        selector = faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64))
        return self.index.search(queries, k, params=self._allow_only(selector))

    def _allow_only(self, selector: faiss.IDSelector) -> faiss.SearchParameters:
        """Search parameters with this kind's settings and ``selector``. Allowed rows are
        live, so HNSW tombstones need no selector of their own here."""
        kind = self.kind
        if kind == "hnsw":
            return faiss.SearchParametersHNSW(sel=selector, efSearch=self._config.hnsw.ef_search)
        if kind in _IVF_KINDS:
            return faiss.SearchParametersIVF(sel=selector, nprobe=self.index.nprobe)
        return faiss.SearchParameters(sel=selector)

    def _apply_search_settings(self) -> None:
        kind = self.kind
        if kind == "hnsw":
            graph = faiss.downcast_index(self.index.index)
            graph.hnsw.efSearch = self._config.hnsw.ef_search
            if len(self._tombstones):
                batch = faiss.IDSelectorBatch(self._tombstones)
                excluded = faiss.IDSelectorNot(batch)
                # The params hold raw pointers: keep the selectors alive with them.
                self._selector_refs = (batch, excluded)
                self._search_params = faiss.SearchParametersHNSW(
                    sel=excluded, efSearch=self._config.hnsw.ef_search
                )
            else:
                self._selector_refs = ()
                self._search_params = None
        elif kind in _IVF_KINDS:
            self.index.nprobe = min(self._config.ivf.nprobe, self.index.nlist)


def _trained_ivf(config: IndexConfig, dim: int, sample: np.ndarray) -> faiss.Index:
    ivf = config.ivf
    nlist = trainable_nlist(ivf, len(sample))
    quantizer = faiss.IndexFlatIP(dim)
    if config.kind == "ivf_flat":
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    else:
        index = faiss.IndexIVFPQ(
            quantizer, dim, nlist, ivf.pq_m, ivf.pq_bits, faiss.METRIC_INNER_PRODUCT
        )
    index.train(np.ascontiguousarray(sample, dtype=np.float32))
    return index


def _kind_of(index: faiss.Index) -> str | None:
    if index.metric_type != faiss.METRIC_INNER_PRODUCT:
        return None
    if isinstance(index, faiss.IndexIDMap2):
        inner = faiss.downcast_index(index.index)
        if isinstance(inner, faiss.IndexHNSWFlat):
            return "hnsw"
        if isinstance(inner, faiss.IndexFlat):
            return "flat"
        return None
    if isinstance(index, faiss.IndexIVFPQ):
        return "ivf_pq"
    if isinstance(index, faiss.IndexIVFFlat):
        return "ivf_flat"
    return None
