"""Searching the collection: each CLIP vector field a search needs, over-fetching rows until
k distinct assets come back, then the fields' best assets merged.

The filter is pushed into the Milvus search, and every row that comes back is checked
against it again in Python, which keeps the filter semantics of ``pipeline.filters`` exact
where a Milvus build differs (Milvus Lite 3.x treats JSON ``true`` as 1). Filters Milvus
cannot express (``== null``) search unfiltered and check afterwards.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from indexers.milvus.expressions import milvus_expression
from indexers.milvus.schema import (
    CLIP_IMAGE,
    CLIP_TEXT,
    MAX_TOPK,
    SCALAR_OUTPUT,
    has,
    search_params,
)
from pipeline.filters import Filter
from pipeline.schema import Modality, SearchHit
from pipeline.settings import IndexConfig

logger = logging.getLogger(__name__)

_QUERY_BATCH = 64


@dataclass(frozen=True)
class SearchTarget:
    """The collection a search goes to, and the index settings it searches with."""

    client: Any
    collection: str
    config: IndexConfig


@dataclass(frozen=True)
class RowCounts:
    """How many rows the collection holds, and per asset on average: they size the
    over-fetch."""

    rows: int
    per_asset: float


def search_fields(
    target: SearchTarget,
    queries: np.ndarray,
    k: int,
    parsed: Filter | None,
    modalities: Collection[Modality] | None,
    counts: RowCounts,
) -> list[list[SearchHit]]:
    """The best ``k`` distinct assets per query whose metadata match ``parsed``, best
    first: an asset scores as its best row in any field searched."""
    per_field = [
        _FieldSearch(target, parsed, k, counts, field, field_modalities)
        for field, field_modalities in _fields_for(modalities)
    ]
    hits: list[list[SearchHit]] = []
    for start in range(0, len(queries), _QUERY_BATCH):
        batch = queries[start : start + _QUERY_BATCH]
        found = [search.run(batch) for search in per_field]
        hits.extend(_best_of(per_query, k) for per_query in zip(*found, strict=True))
    return hits


class _FieldSearch:
    """One search call on one vector field: over-fetch rows, keep each asset's best
    matching row, and fetch twice as many for the queries that fall short until k assets
    or nothing more."""

    def __init__(
        self,
        target: SearchTarget,
        parsed: Filter | None,
        k: int,
        counts: RowCounts,
        field: str,
        modalities: Collection[Modality] | None = None,
    ) -> None:
        self._target = target
        self._filter = parsed
        self._k = k
        self._field = field
        self._limit = min(counts.rows, MAX_TOPK)
        self._first_fetch = min(self._limit, math.ceil(k * counts.per_asset))
        self._expression = _field_expression(parsed, target.config, field, modalities)
        self._search_params = search_params(target.config)

    def run(self, queries: np.ndarray) -> list[list[SearchHit]]:
        results: list[list[SearchHit]] = [[] for _ in queries]
        pending = list(range(len(queries)))
        fetch = self._first_fetch
        while pending:
            found = self._target.client.search(
                self._target.collection,
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


def _field_expression(
    parsed: Filter | None,
    config: IndexConfig,
    field: str,
    modalities: Collection[Modality] | None,
) -> str:
    """The filter pushed into Milvus, narrowed to the entities that hold a ``field`` vector
    (of ``modalities``, when given)."""
    expression = milvus_expression(parsed, config.milvus.partition_key)
    if parsed is not None and expression is None:
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
    return f"({expression}) and {wanted}" if expression else wanted


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
