"""The Milvus index backend (``index.backend: milvus``): Milvus Lite in a local folder, or a
Milvus server, behind the same API as :class:`indexers.index.Index`.

Storage is ONE collection with one entity per vector row: the asset id, modality, frame
time, vector and the asset's metadata (a JSON field) on every row, and the rest of the
asset record on its head row only. One collection rather than vectors + assets because
Milvus has no joins: a metadata filter must sit on the rows the ANN search walks, so it is
applied inside the search (exact for FLAT) instead of being resolved into an id list first.
The index directory keeps the manifest and a small SQLite file of build failures (build
bookkeeping that never needs to be searched).

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
from collections.abc import Collection, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from indexers.embedders.base import Embedder
from indexers.index_inputs import as_filter, as_query, check_item, check_queries
from indexers.lifecycle import CommitOnExit, warn_if_settings_differ
from indexers.manifest import (
    MANIFEST_FILE,
    IndexExistsError,
    IndexNotFoundError,
    Manifest,
    validate_index_config,
)
from indexers.store import EmbeddedVector, MetadataStore
from pipeline.config import Config, EmbedderConfig, MediaConfig
from pipeline.filters import And, Compare, Filter, FilterError, In, Node, Not, Or
from pipeline.schema import Asset, Modality, Query, SearchHit
from pipeline.settings import IndexConfig, MilvusConfig

logger = logging.getLogger(__name__)

FAILURES_FILE = "failures.sqlite"
DEFAULT_LITE_PATH = "milvus.db"
TOKEN_ENV = "MILVUS_TOKEN"
MAX_TOPK = 16_384
"""Milvus refuses a search limit above this: the over-fetch stops there."""

_SERVER_SCHEMES = ("http://", "https://", "tcp://", "grpc://", "unix:")
_MAX_ID_BYTES = 65_535
_MAX_PARTITION_BYTES = 512
_WRITE_CHUNK = 1_000
_ID_CHUNK = 500
_QUERY_BATCH = 64
_OUTPUT = ["asset_id", "modality", "timestamp", "metadata"]
_INDEX_TYPES = {"flat": "FLAT", "hnsw": "HNSW", "ivf_flat": "IVF_FLAT", "ivf_pq": "IVF_PQ"}


def _pymilvus() -> Any:
    try:
        import pymilvus
    except ImportError:
        raise ImportError(
            "index.backend 'milvus' needs pymilvus (and milvus-lite for a local folder): "
            "pip install 'vlsearch[milvus]'"
        ) from None
    return pymilvus


class MilvusIndex(CommitOnExit):
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
        self._client = client
        self._collection = manifest.index.milvus.collection
        self._failures = failures
        self._embedder = embedder
        self._lock = threading.RLock()
        # Rows per asset, to size the first over-fetch. Counting assets scans the collection
        # in Milvus Lite, so it is counted once after each write, not per search.
        self._rows_per_asset: float | None = None

    # -- opening -------------------------------------------------------------------------

    @classmethod
    def create(cls, directory: Path, config: Config, model_id: str, dim: int) -> MilvusIndex:
        """A new empty index; refuses a collection that already holds assets."""
        directory = Path(directory)
        validate_index_config(config.index, dim)
        directory.mkdir(parents=True, exist_ok=True)
        settings = config.index.milvus
        client = _connect(settings, directory, _token(settings))
        try:
            _replace_empty_collection(client, settings.collection, directory)
            _create_collection(client, config.index, dim)
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
        cls, directory: Path, config: Config, model_id: str, dim: int
    ) -> MilvusIndex:
        directory = Path(directory)
        if not (directory / MANIFEST_FILE).is_file():
            return cls.create(directory, config, model_id, dim)
        Manifest.load(directory).check_model(model_id, dim)
        token = config.index.milvus.token
        index = cls.open(directory, token=token.get_secret_value() if token else None)
        warn_if_settings_differ(directory, index.manifest.index, config.index)
        return index

    def close(self) -> None:
        with self._lock:
            self._client.close()
            self._failures.close()

    # -- writing -------------------------------------------------------------------------

    def upsert_many(self, items: Sequence[tuple[Asset, Sequence[EmbeddedVector]]]) -> None:
        """Insert or replace assets (all rows of a replaced asset go). Every item is
        checked first: one bad item stores nothing. A later item with the same id wins."""
        latest = {asset.id: (asset, vectors) for asset, vectors in self._checked(items)}
        if not latest:
            return
        generation = secrets.randbits(62)
        rows = [
            row
            for asset, vectors in latest.values()
            for row in self._rows_of(asset, vectors, generation)
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

    def delete(self, ids: Sequence[str]) -> int:
        """Delete assets by id; returns how many of them existed."""
        deleted = 0
        with self._lock:
            for chunk in _chunks(list(dict.fromkeys(ids)), _ID_CHUNK):
                deleted += self._count(f"head == true and {_ids_in(chunk)}")
                self._client.delete(self._collection, filter=_ids_in(chunk))
            self._rows_per_asset = None
        return deleted

    def record_failures(self, failures: Sequence[tuple[str, str, str]]) -> None:
        """Record (item, stage, reason) triples; recording one again replaces it."""
        if failures:
            with self._lock:
                self._failures.record_failures(failures)

    def failures(self) -> list[dict[str, str]]:
        with self._lock:
            return self._failures.failures()

    def clear_failure(self, item: str) -> None:
        with self._lock:
            self._failures.clear_failure(item)

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
        with self._lock:
            return self._count("")

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
        return Asset(id=asset_id, metadata=rows[0]["metadata"], **rows[0]["record"])

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
            search = _Search(self, parsed, k, rows, self._rows_per_asset, modalities)
            hits: list[list[SearchHit]] = []
            for start in range(0, len(queries), _QUERY_BATCH):
                hits.extend(search.run(queries[start : start + _QUERY_BATCH]))
            return hits

    # -- internals -----------------------------------------------------------------------

    def _checked(
        self, items: Sequence[tuple[Asset, Sequence[EmbeddedVector]]]
    ) -> list[tuple[Asset, Sequence[EmbeddedVector]]]:
        items = list(items)
        key = self.manifest.index.milvus.partition_key
        for asset, vectors in items:
            check_item(asset, vectors, self.manifest.dim)
            if len(asset.id.encode("utf-8")) > _MAX_ID_BYTES:
                too_long = f"id longer than {_MAX_ID_BYTES} bytes"
                raise ValueError(f"asset {asset.id[:60]!r}...: {too_long}")
            if key is not None:
                _partition_value(asset, key)
        return items

    def _rows_of(
        self, asset: Asset, vectors: Sequence[EmbeddedVector], generation: int
    ) -> Iterator[dict[str, Any]]:
        record = asset.model_dump(mode="json", include={"text", "image", "video", "fps"})
        key = self.manifest.index.milvus.partition_key
        for position, vector in enumerate(vectors):
            row = {
                "asset_id": asset.id,
                "generation": generation,
                "head": position == 0,
                "modality": vector.modality,
                "timestamp": vector.timestamp,
                "vector": vector.vector.tolist(),
                "metadata": asset.metadata,
                "record": record if position == 0 else {},
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
        modalities: Collection[Modality] | None = None,
    ) -> None:
        self._index = index
        self._filter = parsed
        self._k = k
        self._limit = min(rows, MAX_TOPK)
        self._first_fetch = min(self._limit, math.ceil(k * per_asset))
        self._expression = _milvus_expression(parsed, index.manifest.index.milvus.partition_key)
        if parsed is not None and self._expression is None:
            logger.warning(
                "filter %r cannot be pushed into Milvus; searching unfiltered and checking "
                "each result (slow on large collections)",
                parsed.expression,
            )
        if modalities is not None:
            # modality is a scalar field: `in` works on it, unlike on JSON paths.
            of_modality = f"modality in {json.dumps(sorted(modalities))}"
            expression = self._expression
            self._expression = f"({expression}) and {of_modality}" if expression else of_modality
        self._search_params = _search_params(index.manifest.index)

    def run(self, queries: np.ndarray) -> list[list[SearchHit]]:
        results: list[list[SearchHit]] = [[] for _ in queries]
        pending = list(range(len(queries)))
        fetch = self._first_fetch
        while pending:
            found = self._index._client.search(
                self._index._collection,
                data=[queries[i].tolist() for i in pending],
                limit=fetch,
                filter=self._expression or "",
                output_fields=_OUTPUT,
                search_params=self._search_params,
                anns_field="vector",
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
            video = entity["modality"] == "video"
            hits[asset_id] = SearchHit(
                id=asset_id,
                score=row["distance"],
                modality=entity["modality"],
                best_timestamp=entity["timestamp"] if video else None,
                metadata=entity["metadata"],
            )
            if len(hits) == self._k:
                break
        return list(hits.values())


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


def _create_collection(client: Any, config: IndexConfig, dim: int) -> None:
    data_type = _pymilvus().DataType
    settings = config.milvus
    schema = client.create_schema(auto_id=True, enable_dynamic_field=False)
    schema.add_field("row_id", data_type.INT64, is_primary=True)
    schema.add_field("asset_id", data_type.VARCHAR, max_length=_MAX_ID_BYTES)
    schema.add_field("generation", data_type.INT64)
    schema.add_field("head", data_type.BOOL)
    schema.add_field("modality", data_type.VARCHAR, max_length=8)
    schema.add_field("timestamp", data_type.DOUBLE, nullable=True)
    schema.add_field("vector", data_type.FLOAT_VECTOR, dim=dim)
    schema.add_field("metadata", data_type.JSON)
    schema.add_field("record", data_type.JSON)
    if settings.partition_key is not None:
        schema.add_field(
            "partition", data_type.VARCHAR, max_length=_MAX_PARTITION_BYTES, is_partition_key=True
        )
    index_params = client.prepare_index_params()
    index_params.add_index(
        "vector",
        index_type=_INDEX_TYPES[config.kind],
        metric_type="IP",
        params=_build_params(config),
    )
    client.create_collection(
        settings.collection, schema=schema, index_params=index_params, consistency_level="Strong"
    )


def _build_params(config: IndexConfig) -> dict[str, int]:
    if config.kind == "hnsw":
        return {"M": config.hnsw.m, "efConstruction": config.hnsw.ef_construction}
    if config.kind == "ivf_flat":
        return {"nlist": config.ivf.nlist}
    if config.kind == "ivf_pq":
        return {"nlist": config.ivf.nlist, "m": config.ivf.pq_m, "nbits": config.ivf.pq_bits}
    return {}


def _search_params(config: IndexConfig) -> dict[str, Any]:
    if config.kind == "hnsw":
        return {"metric_type": "IP", "params": {"ef": config.hnsw.ef_search}}
    if config.kind in ("ivf_flat", "ivf_pq"):
        return {"metric_type": "IP", "params": {"nprobe": config.ivf.nprobe}}
    return {"metric_type": "IP", "params": {}}


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
    if not isinstance(value, str) or len(value.encode("utf-8")) > _MAX_PARTITION_BYTES:
        raise ValueError(
            f"asset {asset.id!r}: metadata {key!r} (index.milvus.partition_key) must be a "
            f"string of at most {_MAX_PARTITION_BYTES} bytes, got {value!r:.80}"
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
