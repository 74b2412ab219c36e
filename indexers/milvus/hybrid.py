"""Native multi-vector fusion: one Milvus ``hybrid_search`` over several channel fields.

What Milvus Lite 3.2 (pymilvus 3.0) does, found by running it:

* ``hybrid_search`` takes one ``AnnSearchRequest`` per channel, each on its own vector
  field (or several on one field) with its own ``expr`` and ``limit``; the partition key
  and JSON metadata filters work inside each ``expr``.
* ``RRFRanker(k)`` scores a *primary key* (an entity) ``sum 1 / (k + rank)`` over the
  requests that returned it, ranks being 1-based positions in each request's list: the
  same formula as :class:`pipeline.fusion.RrfFuser` with every weight 1. It has no
  per-channel weights.
* ``WeightedRanker(*w, norm_score=True)`` maps each inner-product score through
  ``0.5 + arctan(s) / pi`` and sums ``w * that`` over the requests that returned the entity
  (a missing one adds 0). That is not the min-max, z or dbsf normalisation of
  :class:`pipeline.fusion.WeightedFuser`: native weighted scores and orders differ from the
  Python ones, and only ``minmax`` configs may fuse natively (with ``fusion.native: on``).
* ``group_by_field`` works in hybrid search, but only after fusing per entity (ranks inside
  each request are per entity, not per group, and the group keeps its best entity's score);
  Lite also raises each request's limit to ``3 * limit`` when grouping. So this module does
  not group in Milvus: it asks for every fused entity (the sum of the requests' limits) and
  keeps each asset's best entity itself.
* Nullable vector fields are accepted but their null rows come back from searches, so
  :mod:`indexers.milvus.schema` stores zeros plus a ``has_<field>`` flag instead.

Because fusion is per entity, native fusion equals the Python fusion of the per-channel
asset lists exactly when every asset is one entity (no video of several frames); a video's
frames are then ranked as separate entities in the ``clip_image`` request. Ties in the fused
score are broken by asset id, as the Python fusers do when the tied assets' best ranks are
equal (the only way RRF sums tie in practice).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from indexers.milvus.schema import CLIP_IMAGE, MAX_TOPK, SCALAR_OUTPUT, has
from pipeline.filters import Filter
from pipeline.schema import SearchHit

_TIE_DIGITS = 12  # fused scores equal to this many digits are ties (summation order)


class NativeFusionUnavailable(RuntimeError):
    """This query cannot be fused by Milvus with the orchestrator's exact semantics (the
    message says why); the caller fuses the channels in Python instead."""


@dataclass(frozen=True)
class ChannelQuery:
    """One channel's request: its field (``clip_image``, ``clip_text``, ``text_dense``),
    the query vector for that field, and how many entities it returns."""

    channel: str
    vector: np.ndarray
    k: int


@dataclass(frozen=True)
class RrfRanker:
    k: int = 60


@dataclass(frozen=True)
class WeightedRanker:
    """Weights in the order of the requests; scores normalised by Milvus (arctan)."""

    weights: tuple[float, ...]


NativeRanker = RrfRanker | WeightedRanker


def fused_search(
    client: Any,
    collection: str,
    fields: Mapping[str, int],
    queries: Sequence[ChannelQuery],
    top_n: int,
    ranker: NativeRanker,
    parsed: Filter | None,
    expression: str | None,
    params: dict[str, Any],
) -> list[SearchHit]:
    """The best ``top_n`` assets of Milvus's fusion of ``queries``; see the module doc."""
    import pymilvus

    _check(queries, fields, top_n, ranker, parsed, expression)
    requests = [
        pymilvus.AnnSearchRequest(
            data=[np.asarray(query.vector, dtype=np.float32).tolist()],
            anns_field=query.channel,
            param=params,
            limit=min(query.k, MAX_TOPK),
            expr=_with_flag(expression, query.channel),
        )
        for query in queries
    ]
    (rows,) = client.hybrid_search(
        collection,
        requests,
        _milvus_ranker(pymilvus, ranker),
        limit=min(sum(query.k for query in queries), MAX_TOPK),
        output_fields=SCALAR_OUTPUT,
    )
    return _best_per_asset(rows, parsed, top_n, text_only=_text_only(queries))


def _check(
    queries: Sequence[ChannelQuery],
    fields: Mapping[str, int],
    top_n: int,
    ranker: NativeRanker,
    parsed: Filter | None,
    expression: str | None,
) -> None:
    if top_n < 1:
        raise ValueError(f"top_n must be at least 1, got {top_n}")
    if not queries:
        raise ValueError("fused_search needs at least one channel query")
    channels = [query.channel for query in queries]
    if len(set(channels)) != len(channels):
        raise ValueError(f"each channel may be queried once, got {channels}")
    for query in queries:
        if query.channel not in fields:
            raise NativeFusionUnavailable(
                f"channel {query.channel!r} is not a vector field of this collection "
                f"(it has {sorted(fields)})"
            )
        if np.shape(query.vector) != (fields[query.channel],):
            raise ValueError(
                f"channel {query.channel!r}: query vector must have shape "
                f"({fields[query.channel]},), got {np.shape(query.vector)}"
            )
        if query.k < 1:
            raise ValueError(f"channel {query.channel!r}: k must be at least 1, got {query.k}")
    if isinstance(ranker, WeightedRanker) and len(ranker.weights) != len(queries):
        raise ValueError(f"{len(queries)} channels but {len(ranker.weights)} weights")
    if isinstance(ranker, RrfRanker) and ranker.k < 1:
        raise NativeFusionUnavailable(f"Milvus's RRF needs k >= 1, got {ranker.k}")
    if parsed is not None and expression is None:
        raise NativeFusionUnavailable(f"filter {parsed.expression!r} cannot be pushed to Milvus")


def _with_flag(expression: str | None, field: str) -> str:
    flag = f"{has(field)} == true"
    return f"({expression}) and {flag}" if expression else flag


def _milvus_ranker(pymilvus: Any, ranker: NativeRanker) -> Any:
    if isinstance(ranker, RrfRanker):
        return pymilvus.RRFRanker(ranker.k)
    return pymilvus.WeightedRanker(*ranker.weights, norm_score=True)


def _text_only(queries: Sequence[ChannelQuery]) -> bool:
    """Whether every request matches text vectors (then a hit reports modality text)."""
    return all(query.channel != CLIP_IMAGE for query in queries)


def _best_per_asset(
    rows: Sequence[dict[str, Any]], parsed: Filter | None, top_n: int, text_only: bool
) -> list[SearchHit]:
    best: dict[str, SearchHit] = {}
    for row in rows:
        entity = row["entity"]
        if parsed is not None and not parsed.matches(entity["metadata"]):
            # Milvus let through an entity our filter semantics reject, so some request's
            # ranks below it are off by one: only the Python path is exact here.
            raise NativeFusionUnavailable(
                f"Milvus's reading of filter {parsed.expression!r} differs from ours on "
                f"asset {entity['asset_id']!r}"
            )
        hit = _fused_hit(entity, row["distance"], text_only)
        held = best.get(hit.id)
        if held is None or hit.score > held.score:
            best[hit.id] = hit
    ordered = sorted(best.values(), key=lambda hit: (-round(hit.score, _TIE_DIGITS), hit.id))
    return ordered[:top_n]


def _fused_hit(entity: dict[str, Any], score: float, text_only: bool) -> SearchHit:
    modality = "text" if text_only else entity["modality"]
    timestamp = entity["timestamp"] if modality == "video" else None
    return SearchHit(
        id=entity["asset_id"],
        score=float(score) if math.isfinite(score) else math.nan,
        modality=modality,
        best_timestamp=timestamp,
        metadata=entity["metadata"],
    )


__all__ = [
    "ChannelQuery",
    "NativeFusionUnavailable",
    "NativeRanker",
    "RrfRanker",
    "WeightedRanker",
    "fused_search",
]
