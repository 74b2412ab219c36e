"""The Milvus index backend (``index.backend: milvus``): Milvus Lite in a local folder, or a
Milvus server, behind the same API as :class:`indexers.index.Index`.

Storage is ONE collection with one vector field per Milvus-served recall channel
(``clip_image``, ``clip_text``, and ``text_dense`` when the build has that text channel;
see :mod:`indexers.milvus.schema`): an asset's head entity carries its text vectors and its
first image or frame vector, further video frames one entity each. Every entity has the
asset id, modality, frame time and the asset's metadata (a JSON field); the rest of the
asset record sits on the head entity only. One collection rather than vectors + assets
because Milvus has no joins: a metadata filter must sit on the entities the ANN search
walks, so it is applied inside the search (exact for FLAT) instead of being resolved into an
id list first. The index directory keeps the manifest and a small SQLite file of build
failures (build bookkeeping that never needs to be searched).

Several channels at once can be fused by Milvus itself (:meth:`MilvusIndex.fused_search`,
native ``hybrid_search``; see :mod:`indexers.milvus.hybrid` for what it supports and when it
gives exactly the orchestrator's Python fusion).

Milvus has no multi-row transactions. An upsert inserts the new rows under a fresh
generation number, then deletes the asset's rows of any other generation: a crash between
the two leaves both generations (searches still give each asset once, as its best row), and
upserting the asset again repairs it; it never leaves an asset with no rows.

The index kind, HNSW and IVF settings are the shared ``index.*`` ones: ``flat`` is FLAT
(exact, and the default: same results as FAISS flat, and Milvus Lite builds HNSW graphs in a
background thread that a process must wait for at exit), ``hnsw`` HNSW, ``ivf_flat`` IVF_FLAT,
``ivf_pq`` IVF_PQ; all over inner product of normalised vectors.
"""

from __future__ import annotations

import itertools
import logging
import os
import secrets
import threading
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from indexers.batch import SearchBatch
from indexers.embedders.base import Embedder
from indexers.index_inputs import as_filter, check_item, check_queries
from indexers.lifecycle import CommitOnExit, FailureLog, warn_if_settings_differ
from indexers.manifest import (
    MANIFEST_FILE,
    IncompatibleIndexError,
    IndexNotFoundError,
    Manifest,
    validate_index_config,
)
from indexers.media_paths import MediaPaths
from indexers.metadata_fields import FIELD_SAMPLE, fields_of
from indexers.milvus.connection import (
    TOKEN_ENV,
    configured_token,
    connect,
    import_pymilvus,
    replace_empty_collection,
    resolved_uri,
)
from indexers.milvus.expressions import ids_in, literal, milvus_expression, partition_value
from indexers.milvus.hybrid import ChannelQuery, NativeRanker, fused_search
from indexers.milvus.schema import (
    CLIP_IMAGE,
    CLIP_TEXT,
    MAX_ID_BYTES,
    OPTIONAL_FIELDS,
    checked_extra_fields,
    create_collection,
    has,
    search_params,
    slots_of,
    vector_fields,
)
from indexers.milvus.search import RowCounts, SearchTarget, search_fields
from indexers.query_embedding import SearchByContent
from indexers.store import EmbeddedVector, MetadataStore
from pipeline.config import Config
from pipeline.filters import Filter
from pipeline.filters.milvus import json_ref
from pipeline.schema import Asset, Modality, SearchHit

logger = logging.getLogger(__name__)

FAILURES_FILE = "failures.sqlite"
_WRITE_CHUNK = 1_000
_ID_CHUNK = 500
ExtraVectors = Mapping[str, Mapping[str, np.ndarray]]
"""Vectors for the optional fields: field name (``text_dense``) -> asset id -> vector."""


class MilvusIndex(FailureLog, CommitOnExit, SearchByContent):
    """Open with :meth:`create`, :meth:`open` or :meth:`open_or_create`. Thread-safe in
    one process; one writing process per collection. As a context manager it commits on a
    clean exit."""

    def __init__(
        self,
        directory: Path,
        manifest: Manifest,
        client: Any,
        failures: MetadataStore,
        embedder: Embedder | None = None,
    ) -> None:
        self.directory = directory
        self.manifest = manifest
        self._media = MediaPaths(directory, manifest.media_paths)
        self._client = client
        self._collection = manifest.index.milvus.collection
        try:
            self._fields = vector_fields(client, self._collection)
        except ValueError as exc:
            raise IncompatibleIndexError(f"{directory}: {exc}") from None
        self._failure_store = failures
        self._embedder = embedder
        self._lock = threading.RLock()
        # Rows per asset, to size the first over-fetch. Counting assets scans the collection
        # in Milvus Lite, so it is counted once after each write, not per search.
        self._rows_per_asset: float | None = None
        self._single_entities: bool | None = None  # see one_entity_per_asset

    # -- opening -------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        directory: Path,
        config: Config,
        model_id: str,
        dim: int,
        extra_fields: Mapping[str, int] | None = None,
    ) -> MilvusIndex:
        """A new empty index; refuses a collection that already holds assets.
        ``extra_fields`` adds optional vector fields (``{"text_dense": 384}``)."""
        directory = Path(directory)
        validate_index_config(config.index, dim)
        extra = checked_extra_fields(extra_fields or {})
        directory.mkdir(parents=True, exist_ok=True)
        settings = config.index.milvus
        client = connect(settings, directory, configured_token(settings))
        try:
            replace_empty_collection(client, settings.collection, directory)
            create_collection(client, import_pymilvus().DataType, config.index, dim, extra)
        except BaseException:
            client.close()
            raise
        failures = MetadataStore.open(directory / FAILURES_FILE, create=True)
        manifest = Manifest.new(config, model_id, dim)
        manifest.save(directory)  # last: a manifest marks a complete index directory
        return cls(directory, manifest, client, failures)

    @classmethod
    def open(
        cls,
        directory: Path,
        embedder: Embedder | None = None,
        model_id: str | None = None,
        token: str | None = None,
    ) -> MilvusIndex:
        """Open an existing index. With ``embedder`` or ``model_id``, refuse (with
        :class:`IncompatibleIndexError`) an index built by another model. A server token
        comes from ``token`` or the ``MILVUS_TOKEN`` environment variable."""
        directory = Path(directory)
        manifest = Manifest.load(directory)
        manifest.check_model(model_id)
        if embedder is not None:
            manifest.check_model(embedder.model_id, embedder.dim)
        settings = manifest.index.milvus
        client = connect(settings, directory, token or os.environ.get(TOKEN_ENV))
        if not client.has_collection(settings.collection):
            client.close()
            raise IndexNotFoundError(
                f"{directory}: Milvus collection {settings.collection!r} is missing at "
                f"{resolved_uri(settings, directory)}"
            )
        client.load_collection(settings.collection)
        failures = MetadataStore.open(directory / FAILURES_FILE, create=True)
        return cls(directory, manifest, client, failures, embedder)

    @classmethod
    def open_or_create(
        cls,
        directory: Path,
        config: Config,
        model_id: str,
        dim: int,
        extra_fields: Mapping[str, int] | None = None,
    ) -> MilvusIndex:
        directory = Path(directory)
        if not (directory / MANIFEST_FILE).is_file():
            return cls.create(directory, config, model_id, dim, extra_fields)
        Manifest.load(directory).check_model(model_id, dim)
        token = config.index.milvus.token
        index = cls.open(directory, token=token.get_secret_value() if token else None)
        warn_if_settings_differ(directory, index.manifest.index, config.index)
        missing = {f: d for f, d in (extra_fields or {}).items() if index._fields.get(f) != d}
        if missing:
            logger.warning(
                "%s: the collection has no %s vector field of this dim; those vectors stay "
                "in the text channel only (rebuild to serve them from Milvus)",
                directory,
                ", ".join(missing),
            )
        return index

    def close(self) -> None:
        with self._lock:
            self._client.close()
            self._failure_store.close()

    # -- writing -------------------------------------------------------------------------

    def upsert_many(
        self,
        items: Sequence[tuple[Asset, Sequence[EmbeddedVector]]],
        extra_vectors: ExtraVectors | None = None,
    ) -> None:
        """Insert or replace assets (all rows of a replaced asset go). Every item is
        checked first: one bad item stores nothing. A later item with the same id wins.
        ``extra_vectors`` gives the optional fields' vectors by field and asset id (an
        asset without one is not searchable in that field)."""
        latest = {asset.id: (asset, vectors) for asset, vectors in self._checked(items)}
        if not latest:
            return
        extra = self._checked_extra_vectors(extra_vectors or {}, latest)
        generation = secrets.randbits(62)
        rows = [
            row
            for asset, vectors in latest.values()
            for row in self._rows_of(asset, vectors, generation, extra)
        ]
        with self._lock:
            for start in range(0, len(rows), _WRITE_CHUNK):
                self._client.insert(self._collection, rows[start : start + _WRITE_CHUNK])
            for chunk in _chunks(list(latest), _ID_CHUNK):
                self._client.delete(
                    self._collection,
                    filter=f"{ids_in(chunk)} and generation != {generation}",
                )
            self._rows_per_asset = None
            self._single_entities = None

    def delete(self, ids: Sequence[str]) -> int:
        """Delete assets by id; returns how many of them existed."""
        deleted = 0
        with self._lock:
            for chunk in _chunks(list(dict.fromkeys(ids)), _ID_CHUNK):
                deleted += self._count(f"head == true and {ids_in(chunk)}")
                self._client.delete(self._collection, filter=ids_in(chunk))
            self._rows_per_asset = None
            self._single_entities = None
        return deleted

    def commit(self) -> None:
        """Flush Milvus's write buffers to storage and stamp the manifest."""
        with self._lock:
            self._client.flush(self._collection)
            self.manifest = self.manifest.touched()
            self.manifest.save(self.directory)

    # -- reading -------------------------------------------------------------------------

    def __len__(self) -> int:
        with self._lock:
            return self._count("head == true")

    def vector_count(self) -> int:
        """CLIP vectors stored (an entity can hold a text and an image vector)."""
        with self._lock:
            return sum(self._count(f"{has(field)} == true") for field in (CLIP_IMAGE, CLIP_TEXT))

    def has_metadata_field(self, path: str) -> bool:
        reference = json_ref("metadata", tuple(path.split(".")))
        with self._lock:
            found = self._client.query(
                self._collection,
                filter=f"head == true and exists {reference}",
                output_fields=["id"],
                limit=1,
            )
        return bool(found)

    def metadata_fields(self, sample: int = FIELD_SAMPLE) -> frozenset[str]:
        with self._lock:
            heads = self._iterate("head == true", ["metadata"])
            try:
                return fields_of(row["metadata"] for row in itertools.islice(heads, sample))
            finally:
                heads.close()  # ends the server-side iterator now, not at garbage collection

    @property
    def native_channels(self) -> frozenset[str]:
        """The recall channels this index serves from its own vector fields."""
        return frozenset(self._fields)

    def one_entity_per_asset(self) -> bool:
        """Whether no asset spans several entities (a video of several frames does): only
        then does :meth:`fused_search` give exactly the Python fusion's ranks."""
        with self._lock:
            if self._single_entities is None:
                self._single_entities = self._count("head == false") == 0
            return self._single_entities

    def __contains__(self, asset_id: object) -> bool:
        if not isinstance(asset_id, str):
            return False
        with self._lock:
            return bool(self._count(f"head == true and asset_id == {literal(asset_id)}"))

    def ids(self) -> set[str]:
        with self._lock:
            return {row["asset_id"] for row in self._iterate("head == true", ["asset_id"])}

    def get(self, asset_id: str) -> Asset | None:
        with self._lock:
            rows = self._client.query(
                self._collection,
                filter=f"head == true and asset_id == {literal(asset_id)}",
                output_fields=["record", "metadata"],
                limit=1,
            )
        if not rows:
            return None
        return self._asset_of(asset_id, rows[0])

    def get_many(self, asset_ids: Sequence[str]) -> dict[str, Asset]:
        """Asset id -> asset, for the ids the index holds; one query per chunk of ids."""
        found: dict[str, Asset] = {}
        with self._lock:
            for chunk in _chunks(list(dict.fromkeys(asset_ids)), _ID_CHUNK):
                rows = self._client.query(
                    self._collection,
                    filter=f"head == true and {ids_in(chunk)}",
                    output_fields=["asset_id", "record", "metadata"],
                )
                for row in rows:
                    asset_id = row["asset_id"]
                    found[asset_id] = self._asset_of(asset_id, row)
        return found

    def _asset_of(self, asset_id: str, row: Mapping[str, Any]) -> Asset:
        record = dict(row["record"])
        if record.get("image") is not None:
            record["image"] = self._media.opened(record["image"])
        record["video"] = self._media.opened_video(record.get("video"))
        return Asset(id=asset_id, metadata=row["metadata"], **record)

    # -- searching -----------------------------------------------------------------------

    def search_vectors(
        self,
        queries: np.ndarray,
        k: int = 10,
        filter: Filter | str | None = None,
        modalities: Collection[Modality] | None = None,
    ) -> list[list[SearchHit]]:
        """The best ``k`` distinct assets per query vector whose metadata match ``filter``,
        best first. An asset scores as its best row.

        The filter is pushed into the Milvus search, and every row that comes back is
        checked against it again in Python, which keeps the filter semantics of
        ``pipeline.filters`` exact where a Milvus build differs (Milvus Lite 3.x treats JSON
        ``true`` as 1). Filters Milvus cannot express (``== null``) search unfiltered and
        check afterwards: correct, but slow on large collections."""
        queries = check_queries(queries, self.manifest.dim, k)
        parsed = as_filter(filter)
        with self._lock:
            rows = self._count("")
            if rows == 0:
                return [[] for _ in queries]
            if self._rows_per_asset is None:
                self._rows_per_asset = rows / max(1, self._count("head == true"))
            target = SearchTarget(self._client, self._collection, self.manifest.index)
            counts = RowCounts(rows, self._rows_per_asset)
            return search_fields(target, queries, k, parsed, modalities, counts)

    def search_batch(
        self,
        queries: np.ndarray,
        k: int = 10,
        filter: Filter | str | None = None,
        modalities: Collection[Modality] | None = None,
    ) -> SearchBatch:
        """:meth:`search_vectors` as arrays (made from its hits: Milvus gives hits anyway)."""
        return SearchBatch.from_hits(self.search_vectors(queries, k, filter, modalities), k)

    def fused_search(
        self,
        queries: Sequence[ChannelQuery],
        top_n: int,
        ranker: NativeRanker,
        filter: Filter | str | None = None,
    ) -> list[SearchHit]:
        """The best ``top_n`` assets by Milvus's own fusion (``hybrid_search``) of one
        request per channel; see :mod:`indexers.milvus.hybrid`. Raises
        :class:`indexers.milvus.hybrid.NativeFusionUnavailable` when Milvus cannot give the
        filter's exact semantics for this query (the caller fuses in Python instead)."""
        parsed = as_filter(filter)
        expression = milvus_expression(parsed, self.manifest.index.milvus.partition_key)
        with self._lock:
            return fused_search(
                self._client,
                self._collection,
                self._fields,
                queries,
                top_n,
                ranker,
                parsed,
                expression,
                search_params(self.manifest.index),
            )

    # -- internals -----------------------------------------------------------------------

    def _checked(
        self, items: Sequence[tuple[Asset, Sequence[EmbeddedVector]]]
    ) -> list[tuple[Asset, Sequence[EmbeddedVector]]]:
        items = list(items)
        key = self.manifest.index.milvus.partition_key
        for asset, vectors in items:
            check_item(asset, vectors, self.manifest.dim)
            if len(asset.id.encode("utf-8")) > MAX_ID_BYTES:
                too_long = f"id longer than {MAX_ID_BYTES} bytes"
                raise ValueError(f"asset {asset.id[:60]!r}...: {too_long}")
            if key is not None:
                partition_value(asset, key)
        return items

    def _checked_extra_vectors(
        self, extra: ExtraVectors, assets: Mapping[str, object]
    ) -> dict[str, dict[str, np.ndarray]]:
        checked: dict[str, dict[str, np.ndarray]] = {}
        for field, by_id in extra.items():
            if field not in self._fields or field not in OPTIONAL_FIELDS:
                continue  # a field this collection was built without: nothing to store
            checked[field] = {}
            for asset_id, vector in by_id.items():
                array = np.asarray(vector, dtype=np.float32)
                if array.shape != (self._fields[field],) or not np.isfinite(array).all():
                    raise ValueError(
                        f"asset {asset_id!r}: {field} vector must be {self._fields[field]} "
                        f"finite numbers, got shape {array.shape}"
                    )
                if asset_id in assets:
                    checked[field][asset_id] = array
        return checked

    def _rows_of(
        self,
        asset: Asset,
        vectors: Sequence[EmbeddedVector],
        generation: int,
        extra: Mapping[str, Mapping[str, np.ndarray]],
    ) -> Iterator[dict[str, Any]]:
        record = self._media.for_storage(asset).model_dump(
            mode="json", include={"text", "image", "video", "fps"}
        )
        key = self.manifest.index.milvus.partition_key
        own_extra = {field: by_id[asset.id] for field, by_id in extra.items() if asset.id in by_id}
        for slot in slots_of(asset, vectors, self._fields, own_extra):
            row = {
                **slot,
                "asset_id": asset.id,
                "generation": generation,
                "metadata": asset.metadata,
                "record": record if slot["head"] else {},
            }
            if key is not None:
                row["partition"] = partition_value(asset, key)
            yield row

    def _count(self, expression: str) -> int:
        rows = self._client.query(self._collection, filter=expression, output_fields=["count(*)"])
        return int(rows[0]["count(*)"])

    def _iterate(self, expression: str, fields: list[str]) -> Iterator[dict[str, Any]]:
        iterator = self._client.query_iterator(
            self._collection, batch_size=1000, filter=expression, output_fields=fields
        )
        try:
            while batch := iterator.next():
                yield from batch
        finally:
            iterator.close()


def _chunks(values: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]
