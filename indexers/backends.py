"""Pick the index backend: by the config when creating, by the manifest when opening.

Callers (the build, the pipeline, the CLI) use these functions and the
:class:`SearchIndex` protocol instead of naming a backend class. A backend that can fuse
several recall channels itself (Milvus) also offers :class:`NativeFusionIndex`; callers
check with ``isinstance`` and otherwise fuse in Python.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from indexers.batch import SearchBatch
from indexers.embedders.base import Embedder
from indexers.faiss_install import check_single_faiss
from indexers.manifest import Manifest
from indexers.metadata_fields import FIELD_SAMPLE
from indexers.milvus.hybrid import ChannelQuery, NativeRanker
from indexers.store import EmbeddedVector
from pipeline.config import Config
from pipeline.filters import Filter
from pipeline.schema import Asset, Modality, Query, SearchHit


class SearchIndex(Protocol):
    """What every index backend offers (see :class:`indexers.index.Index`)."""

    manifest: Manifest

    def upsert_many(self, items: Sequence[tuple[Asset, Sequence[EmbeddedVector]]]) -> None: ...
    def delete(self, ids: Sequence[str]) -> int: ...
    def record_failures(self, failures: Sequence[tuple[str, str, str]]) -> None: ...
    def failures(self) -> list[dict[str, str]]: ...
    def clear_failure(self, item: str) -> None: ...
    def commit(self) -> None: ...
    def close(self) -> None: ...
    def __enter__(self) -> SearchIndex: ...
    def __exit__(self, *exc_info: object) -> None: ...
    def __len__(self) -> int: ...
    def __contains__(self, asset_id: object) -> bool: ...
    def ids(self) -> set[str]: ...
    def get(self, asset_id: str) -> Asset | None: ...
    def get_many(self, asset_ids: Sequence[str]) -> dict[str, Asset]: ...
    def vector_count(self) -> int: ...
    def has_metadata_field(self, path: str) -> bool:
        """Whether at least one asset's metadata holds a value (not null) at the dotted
        ``path`` (``dims.w``; an object counts too, so ``dims`` does): the backend's own
        query, which stops at the first such asset, so cheap when the field is there."""
        ...

    def metadata_fields(self, sample: int = FIELD_SAMPLE) -> frozenset[str]:
        """The dotted paths of the metadata fields of up to ``sample`` assets (to suggest
        one: a full scan only when the index is no larger)."""
        ...

    def search(
        self, query: Query | str | Path, k: int = 10, filter: Filter | str | None = None
    ) -> list[SearchHit]: ...
    def search_vectors(
        self,
        queries: np.ndarray,
        k: int = 10,
        filter: Filter | str | None = None,
        modalities: Collection[Modality] | None = None,
    ) -> list[list[SearchHit]]: ...
    def search_batch(
        self,
        queries: np.ndarray,
        k: int = 10,
        filter: Filter | str | None = None,
        modalities: Collection[Modality] | None = None,
    ) -> SearchBatch:
        """:meth:`search_vectors` as arrays, for batch users (see ``indexers.batch``)."""
        ...


@runtime_checkable
class NativeFusionIndex(Protocol):
    """An index that fuses several channels' searches itself (``fusion.native``)."""

    @property
    def native_channels(self) -> frozenset[str]:
        """The recall channels served by the index's own vector fields."""
        ...

    def one_entity_per_asset(self) -> bool:
        """Whether native fusion is exactly the Python fusion on this index's data."""
        ...

    def fused_search(
        self,
        queries: Sequence[ChannelQuery],
        top_n: int,
        ranker: NativeRanker,
        filter: Filter | str | None = None,
    ) -> list[SearchHit]: ...


def _backend_class(backend: str) -> type:
    check_single_faiss()  # every backend imports faiss (the manifest records its version)
    if backend == "milvus":
        from indexers.milvus.index import MilvusIndex

        return MilvusIndex
    from indexers.index import Index

    return Index


def create_index(
    directory: Path,
    config: Config,
    model_id: str,
    dim: int,
    extra_fields: Mapping[str, int] | None = None,
) -> SearchIndex:
    """A new empty index of the configured backend. ``extra_fields`` (channel -> dim, e.g.
    ``{"text_dense": 384}``) become vector fields of a Milvus index; FAISS ignores them
    (its text channels live beside it)."""
    backend = config.index.backend
    extra = _extra_for(backend, extra_fields)
    return _backend_class(backend).create(Path(directory), config, model_id, dim, **extra)


def open_or_create_index(
    directory: Path,
    config: Config,
    model_id: str,
    dim: int,
    extra_fields: Mapping[str, int] | None = None,
) -> SearchIndex:
    """The index in ``directory`` (of whatever backend built it), or a new configured one."""
    directory = Path(directory)
    try:
        backend = Manifest.load(directory).index.backend
    except FileNotFoundError:
        backend = config.index.backend
    extra = _extra_for(backend, extra_fields)
    return _backend_class(backend).open_or_create(directory, config, model_id, dim, **extra)


def _extra_for(backend: str, extra_fields: Mapping[str, int] | None) -> dict[str, object]:
    return {"extra_fields": dict(extra_fields)} if backend == "milvus" and extra_fields else {}


def open_index(
    directory: Path, embedder: Embedder | None = None, model_id: str | None = None
) -> SearchIndex:
    """Open an existing index with the backend its manifest names."""
    directory = Path(directory)
    backend = Manifest.load(directory).index.backend
    return _backend_class(backend).open(directory, embedder=embedder, model_id=model_id)
