"""The Milvus index backend (``index.backend: milvus``): Milvus Lite in a local folder, or a
Milvus server, behind the same API as :class:`indexers.index.Index`.

Storage is ONE collection with one vector field per Milvus-served recall channel
(``clip_image``, ``clip_text``, and ``text_dense`` when the build has that text channel;
see :mod:`indexers.milvus_schema`): an asset's head entity carries its text vectors and its
first image or frame vector, further video frames one entity each. Every entity has the
asset id, modality, frame time and the asset's metadata (a JSON field); the rest of the
asset record sits on the head entity only. One collection rather than vectors + assets
because Milvus has no joins: a metadata filter must sit on the entities the ANN search
walks, so it is applied inside the search (exact for FLAT) instead of being resolved into an
id list first. The index directory keeps the manifest and a small SQLite file of build
failures (build bookkeeping that never needs to be searched).

Several channels at once can be fused by Milvus itself (:meth:`MilvusIndex.fused_search`,
native ``hybrid_search``; see :mod:`indexers.milvus_hybrid` for what it supports and when it
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

import json
import logging
import math
import os
import secrets
import threading
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from indexers.batch import SearchBatch
from indexers.embedders.base import Embedder
from indexers.index_inputs import as_filter, as_query, check_item, check_queries
from indexers.lifecycle import CommitOnExit, FailureLog, warn_if_settings_differ
from indexers.manifest import (
    MANIFEST_FILE,
    IncompatibleIndexError,
    IndexExistsError,
    IndexNotFoundError,
    Manifest,
    validate_index_config,
)
from indexers.media_paths import MediaPaths
from indexers.milvus_hybrid import ChannelQuery, NativeRanker, fused_search
from indexers.milvus_schema import (
    CLIP_IMAGE,
    CLIP_TEXT,
    MAX_ID_BYTES,
    MAX_PARTITION_BYTES,
    OPTIONAL_FIELDS,
    SCALAR_OUTPUT,
    create_collection,
    has,
    search_params,
    slots_of,
    vector_fields,
)
from indexers.store import EmbeddedVector, MetadataStore
from pipeline.config import Config, EmbedderConfig, MediaConfig
from pipeline.filters import And, Compare, Filter, FilterError, In, Node, Not, Or
from pipeline.schema import Asset, Modality, Query, SearchHit
from pipeline.settings import MilvusConfig

logger = logging.getLogger(__name__)

FAILURES_FILE = "failures.sqlite"
DEFAULT_LITE_PATH = "milvus.db"
TOKEN_ENV = "MILVUS_TOKEN"
MAX_TOPK = 16_384
"""Milvus refuses a search limit above this: the over-fetch stops there."""

_SERVER_SCHEMES = ("http://", "https://", "tcp://", "grpc://", "unix:")
_WRITE_CHUNK = 1_000
_ID_CHUNK = 500
_QUERY_BATCH = 64
ExtraVectors = Mapping[str, Mapping[str, np.ndarray]]
"""Vectors for the optional fields: field name (``text_dense``) -> asset id -> vector."""


def _pymilvus() -> Any:
    try:
        import pymilvus
    except ImportError:
        raise ImportError(
            "index.backend 'milvus' needs pymilvus (and milvus-lite for a local folder): "
            "pip install 'vlsearch[milvus]'"
        ) from None
    return pymilvus


class MilvusIndex(FailureLog, CommitOnExit):
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
        extra = _checked_extra_fields(extra_fields or {})
        directory.mkdir(parents=True, exist_ok=True)
        settings = config.index.milvus
        client = _connect(settings, directory, _token(settings))
        try:
            _replace_empty_collection(client, settings.collection, directory)
            create_collection(client, _pymilvus().DataType, config.index, dim, extra)
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
        client = _connect(settings, directory, token or os.environ.get(TOKEN_ENV))
        if not client.has_collection(settings.collection):
            client.close()
            raise IndexNotFoundError(
                f"{directory}: Milvus collection {settings.collection!r} is missing at "
                f"{_resolved_uri(settings, directory)}"
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
                    filter=f"{_ids_in(chunk)} and generation != {generation}",
                )
            self._rows_per_asset = None
            self._single_entities = None

    def delete(self, ids: Sequence[str]) -> int:
        """Delete assets by id; returns how many of them existed."""
        deleted = 0
        with self._lock:
            for chunk in _chunks(list(dict.fromkeys(ids)), _ID_CHUNK):
                deleted += self._count(f"head == true and {_ids_in(chunk)}")
                self._client.delete(self._collection, filter=_ids_in(chunk))
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
            return bool(self._count(f"head == true and asset_id == {_literal(asset_id)}"))

    def ids(self) -> set[str]:
        with self._lock:
            return {row["asset_id"] for row in self._iterate("head == true", ["asset_id"])}

    def get(self, asset_id: str) -> Asset | None:
        with self._lock:
            rows = self._client.query(
                self._collection,
                filter=f"head == true and asset_id == {_literal(asset_id)}",
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
                    filter=f"head == true and {_ids_in(chunk)}",
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

    def search(
        self, query: Query | str | Path, k: int = 10, filter: Filter | str | None = None
    ) -> list[SearchHit]:
        """Embed ``query`` with the index's embedder and return the best ``k`` assets whose
        metadata match ``filter``."""
        from indexers.embedders import embed_query

        media = MediaConfig.model_validate(self.manifest.media)
        vector = embed_query(self._query_embedder(), as_query(query), media)
        return self.search_vectors(np.asarray(vector, dtype=np.float32)[None, :], k, filter)[0]

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
            per_field = [
                _Search(self, parsed, k, rows, self._rows_per_asset, field, field_modalities)
                for field, field_modalities in _fields_for(modalities)
            ]
            hits: list[list[SearchHit]] = []
            for start in range(0, len(queries), _QUERY_BATCH):
                batch = queries[start : start + _QUERY_BATCH]
                found = [search.run(batch) for search in per_field]
                hits.extend(_best_of(per_query, k) for per_query in zip(*found, strict=True))
            return hits

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
        request per channel; see :mod:`indexers.milvus_hybrid`. Raises
        :class:`indexers.milvus_hybrid.NativeFusionUnavailable` when Milvus cannot give the
        filter's exact semantics for this query (the caller fuses in Python instead)."""
        parsed = as_filter(filter)
        expression = _milvus_expression(parsed, self.manifest.index.milvus.partition_key)
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
                _partition_value(asset, key)
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
                row["partition"] = _partition_value(asset, key)
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

    def _query_embedder(self) -> Embedder:
        if self._embedder is None:
            from indexers.embedders import create_embedder

            embedder = create_embedder(EmbedderConfig.model_validate(self.manifest.embedder))
            self.manifest.check_model(embedder.model_id, embedder.dim)
            self._embedder = embedder
        return self._embedder


class _Search:
    """One search call: over-fetch rows, keep each asset's best matching row, and fetch
    twice as many for the queries that fall short until k assets or nothing more."""

    def __init__(
        self,
        index: MilvusIndex,
        parsed: Filter | None,
        k: int,
        rows: int,
        per_asset: float,
        field: str,
        modalities: Collection[Modality] | None = None,
    ) -> None:
        self._index = index
        self._filter = parsed
        self._k = k
        self._field = field
        self._limit = min(rows, MAX_TOPK)
        self._first_fetch = min(self._limit, math.ceil(k * per_asset))
        self._expression = _milvus_expression(parsed, index.manifest.index.milvus.partition_key)
        if parsed is not None and self._expression is None:
            logger.warning(
                "filter %r cannot be pushed into Milvus; searching unfiltered and checking "
                "each result (slow on large collections)",
                parsed.expression,
            )
        # Entities without this field's vector hold zeros there; the flag leaves them out.
        # modality is a scalar field: `in` works on it, unlike on JSON paths.
        wanted = f"{has(field)} == true"
        if modalities is not None:
            wanted += f" and modality in {json.dumps(sorted(modalities))}"
        expression = self._expression
        self._expression = f"({expression}) and {wanted}" if expression else wanted
        self._search_params = search_params(index.manifest.index)

    def run(self, queries: np.ndarray) -> list[list[SearchHit]]:
        results: list[list[SearchHit]] = [[] for _ in queries]
        pending = list(range(len(queries)))
        fetch = self._first_fetch
        while pending:
            found = self._index._client.search(
                self._index._collection,
                data=[queries[i].tolist() for i in pending],
                limit=fetch,
                filter=self._expression,
                output_fields=SCALAR_OUTPUT,
                search_params=self._search_params,
                anns_field=self._field,
            )
            still_short = []
            for query, rows in zip(pending, found, strict=True):
                results[query] = self._best_per_asset(rows)
                # Fewer rows than asked for: Milvus had no more for this query.
                exhausted = len(rows) < fetch or fetch >= self._limit
                if len(results[query]) < self._k and not exhausted:
                    still_short.append(query)
            pending = still_short
            fetch = min(self._limit, fetch * 2)
        return results

    def _best_per_asset(self, rows: Iterable[dict[str, Any]]) -> list[SearchHit]:
        hits: dict[str, SearchHit] = {}
        for row in rows:
            entity = row["entity"]
            asset_id = entity["asset_id"]
            if asset_id in hits or (self._filter and not self._filter.matches(entity["metadata"])):
                continue
            hits[asset_id] = _hit(entity, row["distance"], text=self._field == CLIP_TEXT)
            if len(hits) == self._k:
                break
        return list(hits.values())


def _hit(entity: dict[str, Any], score: float, text: bool) -> SearchHit:
    """A hit on an entity; ``text`` when it matched the entity's text vector (an entity
    also holding an image then still reports a text hit)."""
    modality = "text" if text else entity["modality"]
    return SearchHit(
        id=entity["asset_id"],
        score=score,
        modality=modality,
        best_timestamp=entity["timestamp"] if modality == "video" else None,
        metadata=entity["metadata"],
    )


def _fields_for(
    modalities: Collection[Modality] | None,
) -> list[tuple[str, Collection[Modality] | None]]:
    """The CLIP fields to search for these modalities, with the modalities each keeps."""
    if modalities is None:
        return [(CLIP_IMAGE, None), (CLIP_TEXT, None)]
    fields: list[tuple[str, Collection[Modality] | None]] = []
    pictures = sorted(set(modalities) - {"text"})
    if pictures:
        fields.append((CLIP_IMAGE, None if set(pictures) == {"image", "video"} else pictures))
    if "text" in modalities:
        fields.append((CLIP_TEXT, None))
    return fields


def _best_of(per_field: Sequence[list[SearchHit]], k: int) -> list[SearchHit]:
    """Each field's best k assets merged: an asset scores as its best hit in any field."""
    if len(per_field) == 1:
        return per_field[0]
    best: dict[str, SearchHit] = {}
    for hit in sorted((h for hits in per_field for h in hits), key=lambda h: -h.score):
        best.setdefault(hit.id, hit)
    return list(best.values())[:k]


# -- collection ------------------------------------------------------------------------


def _connect(settings: MilvusConfig, directory: Path, token: str | None) -> Any:
    pymilvus = _pymilvus()
    uri = _resolved_uri(settings, directory)
    if not uri.startswith(_SERVER_SCHEMES):
        try:
            import milvus_lite  # noqa: F401  (pymilvus needs it for a local folder)
        except ImportError:
            raise ImportError(
                f"a local Milvus index ({uri}) needs milvus-lite: pip install 'vlsearch[milvus]'"
            ) from None
    try:
        return pymilvus.MilvusClient(uri=uri, token=token or "")
    except pymilvus.MilvusException as exc:
        raise IndexNotFoundError(f"{directory}: cannot reach Milvus at {uri} ({exc})") from None


def _resolved_uri(settings: MilvusConfig, directory: Path) -> str:
    """A server URL as given; a local Milvus Lite folder inside the index directory unless
    it is absolute."""
    uri = settings.uri or DEFAULT_LITE_PATH
    if uri.startswith(_SERVER_SCHEMES):
        return uri
    return str(directory / uri)  # an absolute uri stays absolute under `/`


def _token(settings: MilvusConfig) -> str | None:
    if settings.token is not None:
        return settings.token.get_secret_value()
    return os.environ.get(TOKEN_ENV)


def _replace_empty_collection(client: Any, name: str, directory: Path) -> None:
    """Drop a collection with no assets (e.g. from a build that failed early); refuse one
    that holds assets."""
    if not client.has_collection(name):
        return
    client.load_collection(name)
    rows = client.query(name, filter="", output_fields=["count(*)"])
    count = int(rows[0]["count(*)"])
    if count:
        raise IndexExistsError(
            f"{directory}: Milvus collection {name!r} already holds {count} vectors; open it "
            "to add to it, or drop the collection to start over"
        )
    client.drop_collection(name)


def _checked_extra_fields(fields: Mapping[str, int]) -> dict[str, int]:
    for field, dim in fields.items():
        if field not in OPTIONAL_FIELDS or not isinstance(dim, int) or dim < 1:
            raise ValueError(
                f"extra vector field {field!r}: must be one of {list(OPTIONAL_FIELDS)} with a "
                f"positive dim, got {dim!r}"
            )
    return dict(fields)


# -- filters -----------------------------------------------------------------------------


def _milvus_expression(parsed: Filter | None, partition_key: str | None) -> str | None:
    """The filter as a Milvus expression over the metadata field, or None when there is no
    filter or Milvus cannot express it. ``in`` lists become ``or`` chains (Milvus Lite
    refuses ``in`` on a JSON path). A top-level ``key == "tenant"`` on the partition key
    also names the partition field, so Milvus searches that partition only."""
    if parsed is None:
        return None
    try:
        expression = Filter(parsed.expression, _without_in(parsed.root)).to_milvus("metadata")
    except FilterError:
        return None
    tenant = _required_partition(parsed.root, partition_key)
    if tenant is not None:
        expression = f"partition == {_literal(tenant)} and {expression}"
    return expression


def _without_in(node: Node) -> Node:
    if isinstance(node, In):
        equalities = tuple(Compare(node.path, "==", value) for value in node.values)
        return equalities[0] if len(equalities) == 1 else Or(equalities)
    if isinstance(node, Not):
        return Not(_without_in(node.operand))
    if isinstance(node, And | Or):
        return type(node)(tuple(_without_in(operand) for operand in node.operands))
    return node


def _required_partition(node: Node, partition_key: str | None) -> str | None:
    if partition_key is None:
        return None
    conjuncts = node.operands if isinstance(node, And) else (node,)
    for conjunct in conjuncts:
        if (
            isinstance(conjunct, Compare)
            and conjunct.path == (partition_key,)
            and conjunct.op == "=="
            and isinstance(conjunct.value, str)
        ):
            return conjunct.value
    return None


def _partition_value(asset: Asset, key: str) -> str:
    value = asset.metadata.get(key)
    if not isinstance(value, str) or len(value.encode("utf-8")) > MAX_PARTITION_BYTES:
        raise ValueError(
            f"asset {asset.id!r}: metadata {key!r} (index.milvus.partition_key) must be a "
            f"string of at most {MAX_PARTITION_BYTES} bytes, got {value!r:.80}"
        )
    return value


def _ids_in(ids: Sequence[str]) -> str:
    return f"asset_id in [{', '.join(_literal(i) for i in ids)}]"


def _literal(text: str) -> str:
    """A Milvus string literal: JSON's escaping, which Milvus's parser reads back."""
    return json.dumps(text, ensure_ascii=False)


def _chunks(values: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]
