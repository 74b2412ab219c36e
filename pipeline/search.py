"""Two-stage search: recall per channel, fuse, fold, rerank the top N, merge scores.

Channels: ``clip_image`` (the query's CLIP vector against image and video-frame rows),
``clip_text`` (against asset text rows), ``text_dense`` and ``bm25`` (the query text
against the text channels built with the index). An image or video query only has a
CLIP image vector to compare, so it uses ``clip_image`` alone.

Native fusion (``fusion.native``). An index that fuses channels itself (Milvus
``hybrid_search``, :class:`indexers.backends.NativeFusionIndex`) replaces recall + fusion
when EVERY channel of the query is one of its vector fields (``clip_image``, ``clip_text``,
``text_dense`` built into a Milvus index; never ``bm25``) and the config has a Milvus
ranker for the fusion: ``rrf`` with every channel weight 1 and k >= 1, or ``weighted``
with ``minmax`` normalisation; no ``recall.fold_by``; at least two channels. Otherwise the
channels are fused here, in Python, as always. ``auto`` (the default) also requires that
native fusion gives exactly the Python result: for ``rrf`` it does whenever no asset spans
several Milvus entities (a video of several frames does), so ``auto`` fuses in Python on
such an index; ``weighted`` always differs (Milvus normalises scores with arctan, not
min-max; see :mod:`indexers.milvus.hybrid`). ``on`` fuses natively whenever the query and
index allow, and the config must allow it. A filter Milvus reads differently from
:mod:`pipeline.filters` falls back to Python for that query. Native results carry the fused
score only: their ``recall`` (per-channel scores and ranks) is empty.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from indexers.backends import NativeFusionIndex
from indexers.milvus.hybrid import (
    ChannelQuery,
    NativeFusionUnavailable,
    NativeRanker,
    RrfRanker,
    WeightedRanker,
)
from pipeline.config import Config, native_fusion_problem
from pipeline.filters import Filter, parse_filter
from pipeline.filters.fields import unknown_field_warning
from pipeline.fusion import ChannelHit, FusedHit, create_fuser, fold, parent_by
from pipeline.schema import Asset, Content, Modality, Query, SearchHit
from rerankers.base import Progress, best_first

CLIP_CHANNELS: dict[str, frozenset[Modality]] = {
    "clip_image": frozenset({"image", "video"}),
    "clip_text": frozenset({"text"}),
}
TEXT_CHANNELS = ("text_dense", "bm25")
logger = logging.getLogger(__name__)
# Text channels know nothing of metadata: they over-fetch this many times k before the
# filter is applied to their hits.
_TEXT_FILTER_OVERFETCH = 4


class StageScore(BaseModel):
    score: float
    rank: int  # 1-based


class Result(BaseModel):
    """One final result, with what every stage said about it."""

    id: str
    score: float
    rank: int
    recall: dict[str, StageScore] = Field(default_factory=dict)
    fused: StageScore
    rerank: StageScore | None = None
    rerank_error: str | None = None
    modality: str | None = None
    best_timestamp: float | None = None
    page: int | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class RerankOptions(BaseModel):
    """Stage two's settings for one search; None keeps the reranker's configured value."""

    instruction: str | None = None
    fps: float | None = Field(default=None, gt=0.0)


class SearchTimings(BaseModel):
    """Seconds per stage of one search. Embedding the query (CLIP, text_dense) counts
    apart from the channel searches; an index that fuses natively counts its one fused
    search as recall."""

    embed_s: float = 0.0
    recall_s: float = 0.0
    fusion_s: float = 0.0
    rerank_s: float = 0.0
    total_s: float = 0.0


class _StageClock:
    """Adds the time spent inside ``with clock("recall_s"):`` to that field of timings."""

    def __init__(self, timings: SearchTimings) -> None:
        self.timings = timings

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started
            setattr(self.timings, stage, getattr(self.timings, stage) + elapsed)


class TwoStageSearch:
    """One query through both stages, as ``config`` says. ``index`` is the stage-one
    ``SearchIndex``; ``query_vector`` embeds a query with the index's CLIP model;
    ``text_search(channel, text, k)`` queries a text channel; ``reranker()`` gives stage
    two (loaded on first use); ``text_vector(channel, text)`` encodes a query for a vector
    text channel (``text_dense``), needed only for native fusion over it."""

    def __init__(
        self,
        config: Config,
        index: Any,
        query_vector: Callable[[Query], np.ndarray],
        text_search: Callable[[str, str, int], list[tuple[str, float]]] | None,
        reranker: Callable[[], Any],
        text_vector: Callable[[str, str], np.ndarray] | None = None,
    ) -> None:
        self.config = config
        self.index = index
        self.query_vector = query_vector
        self.text_search = text_search
        self.reranker = reranker
        self.text_vector = text_vector
        self.timings = SearchTimings()
        self._clock = _StageClock(self.timings)

    def run(
        self,
        query: Query,
        top_k: int = 10,
        filter: str | Filter | None = None,
        rerank: bool | None = None,
        progress: Progress | None = None,
        options: RerankOptions | None = None,
    ) -> list[Result]:
        """The best ``top_k`` results; ``progress`` hears the reranker's ``(done, total)``;
        ``options`` are stage two's per-request settings. Seconds per stage are left in
        ``self.timings``."""
        started = time.perf_counter()
        if query.is_empty:
            raise ValueError("the query has no text, image or video")
        parsed = parse_filter(filter) if isinstance(filter, str) else filter
        if parsed is not None:
            self._warn_of_unknown_fields(parsed)
        rerank_on = self.config.rerank.enabled if rerank is None else rerank
        size = max(top_k, self.config.rerank.top_n) if rerank_on else top_k
        with self._clock("recall_s"):
            fused = self._native_fusion(query, parsed, size)
        if fused is None:
            with self._clock("recall_s"):
                recalled = self._recall(query, parsed)
            with self._clock("fusion_s"):
                folded = {name: self._fold(hits) for name, hits in recalled.items()}
                fused = create_fuser(self.config.fusion).fuse(folded, size)
        if not rerank_on:
            results = _finish([_result(hit, i) for i, hit in enumerate(fused, 1)], top_k, None)
        else:
            candidates = fused[: self.config.rerank.top_n]
            with self._clock("rerank_s"):
                reranked = self._rerank(query, candidates, progress, options or RerankOptions())
            results = _finish(reranked, top_k, self.config.rerank.min_score)
        # The query's vectors were made inside the recall clock: move their time apart.
        self.timings.recall_s -= self.timings.embed_s
        self.timings.total_s = time.perf_counter() - started
        return results

    def _warn_of_unknown_fields(self, parsed: Filter) -> None:
        """Once per search, before any channel runs: a field no asset has makes its
        comparisons UNKNOWN everywhere, so results go missing with no other sign why."""
        missing = sorted(f for f in parsed.fields() if not self.index.has_metadata_field(f))
        if missing:
            known = self.index.metadata_fields()  # read only now: for the suggestions
            for field in missing:
                logger.warning("%s", unknown_field_warning(field, known))

    # -- stage one -----------------------------------------------------------------------

    def channels_for(self, query: Query) -> list[str]:
        wanted = self.config.recall.channels
        if query.text is None:
            return [name for name in wanted if name == "clip_image"]
        return list(wanted)

    def _recall(self, query: Query, parsed: Filter | None) -> dict[str, list[ChannelHit]]:
        results: dict[str, list[ChannelHit]] = {}
        vector: np.ndarray | None = None
        for name in self.channels_for(query):
            k = self.config.recall.top_k_of(name)
            if name in CLIP_CHANNELS:
                vector = self._embed(query) if vector is None else vector
                found = self.index.search_vectors(
                    vector[None, :], k, filter=parsed, modalities=CLIP_CHANNELS[name]
                )[0]
                results[name] = [_channel_hit(hit) for hit in found]
            else:
                results[name] = self._text_recall(name, query.text or "", k, parsed)
        if not results:
            raise ValueError(
                f"no recall channel applies to this query (recall.channels = "
                f"{self.config.recall.channels}); an image or video query needs clip_image"
            )
        return results

    # -- native fusion -------------------------------------------------------------------

    def native_ranker(self, channels: Sequence[str]) -> NativeRanker | None:
        """The ranker the index fuses ``channels`` with, or None to fuse in Python (the
        rule is in the module docstring)."""
        mode = self.config.fusion.native
        if mode == "off" or len(channels) < 2:
            return None
        if native_fusion_problem(self.config, backend="milvus") is not None:
            return None  # `on` configs were refused at load time
        index = self.index
        if not isinstance(index, NativeFusionIndex) or not set(channels) <= index.native_channels:
            if mode == "on":
                raise ValueError(
                    f"fusion.native is 'on' but the index does not hold channels "
                    f"{sorted(channels)} as vector fields; rebuild it with index.backend: "
                    "milvus (and the text_dense text channel), or set fusion.native: auto"
                )
            return None
        if "text_dense" in channels and self.text_vector is None:
            return None
        fusion = self.config.fusion
        if fusion.method == "weighted":
            if mode == "auto":
                return None  # Milvus's arctan normalisation gives other scores than ours
            return WeightedRanker(tuple(fusion.weight(name) for name in channels))
        if mode == "auto" and not index.one_entity_per_asset():
            return None
        return RrfRanker(fusion.k)

    def _native_fusion(
        self, query: Query, parsed: Filter | None, size: int
    ) -> list[FusedHit] | None:
        channels = self.channels_for(query)
        ranker = self.native_ranker(channels)
        if ranker is None:
            return None
        queries = [
            ChannelQuery(name, self._channel_vector(name, query), self.config.recall.top_k_of(name))
            for name in channels
        ]
        try:
            hits = self.index.fused_search(queries, size, ranker, filter=parsed)
        except NativeFusionUnavailable as exc:
            logger.info("fusing in Python instead of in the index: %s", exc)
            return None
        return [_native_hit(hit) for hit in hits]

    def _channel_vector(self, name: str, query: Query) -> np.ndarray:
        if name in CLIP_CHANNELS:
            return self._embed(query)
        assert self.text_vector is not None  # native_ranker checked
        with self._clock("embed_s"):
            return self.text_vector(name, query.text or "")

    def _embed(self, query: Query) -> np.ndarray:
        with self._clock("embed_s"):
            return self.query_vector(query)

    def _text_recall(self, name: str, text: str, k: int, parsed: Filter | None) -> list[ChannelHit]:
        if self.text_search is None:
            raise ValueError(
                f"recall channel {name!r} is listed but the index has no text channels; "
                f"add it to text_channels and rebuild"
            )
        fetch = k * _TEXT_FILTER_OVERFETCH if parsed is not None else k
        found = self.text_search(name, text, fetch)
        assets = self.index.get_many([asset_id for asset_id, _ in found])
        hits = []
        for asset_id, score in found:
            asset = assets.get(asset_id)
            if asset is None or (parsed is not None and not parsed.matches(asset.metadata)):
                continue
            hits.append(_text_hit(asset, score))
        return hits[:k]

    def _fold(self, hits: list[ChannelHit]) -> list[ChannelHit]:
        key = self.config.recall.fold_by
        # Folding keeps the best child's fields; remember which child that was, so the
        # reranker sees the page or passage that matched.
        if key is None:
            return hits
        folded = fold(hits, parent_by(key))
        by_parent = {}
        for hit in hits:
            by_parent.setdefault(parent_by(key)(hit), hit.id)
        return [
            hit.model_copy(update={"metadata": {**hit.metadata, "_child": by_parent[hit.id]}})
            for hit in folded
        ]

    # -- stage two -----------------------------------------------------------------------

    def _rerank(
        self,
        query: Query,
        candidates: Sequence[FusedHit],
        progress: Progress | None,
        options: RerankOptions,
    ) -> list[Result]:
        documents = [self._document(hit) for hit in candidates]
        report = self.reranker().score_report(
            query,
            documents,
            instruction=options.instruction,
            fps=options.fps,
            progress=progress,
        )
        errors = {failure.index: failure.reason for failure in report.failures}
        rerank_rank = {i: rank for rank, i in enumerate(best_first(report.scores), 1)}
        blended = _blend(report.scores, [hit.score for hit in candidates], self.config.rerank.blend)
        results = []
        for i, hit in enumerate(candidates):
            result = _result(hit, i + 1)
            result.rerank = StageScore(score=report.scores[i], rank=rerank_rank[i])
            result.rerank_error = errors.get(i)
            result.score = blended[i]
            results.append(result)
        return results

    def _document(self, hit: FusedHit) -> Content:
        asset = self.index.get(hit.metadata.get("_child", hit.id))
        if asset is None:
            return Content(text=None)
        return Content(text=asset.text, image=asset.image, video=asset.video, fps=asset.fps)


def _channel_hit(hit: SearchHit) -> ChannelHit:
    return ChannelHit(
        id=hit.id,
        score=hit.score,
        modality=hit.modality,
        best_timestamp=hit.best_timestamp,
        page=hit.metadata.get("page"),
        metadata=hit.metadata,
    )


def _native_hit(hit: SearchHit) -> FusedHit:
    return FusedHit(
        id=hit.id,
        score=hit.score,
        channel_scores={},
        channel_ranks={},
        best_timestamp=hit.best_timestamp,
        page=hit.metadata.get("page"),
        modality=hit.modality,
        metadata=hit.metadata,
    )


def _text_hit(asset: Asset, score: float) -> ChannelHit:
    return ChannelHit(
        id=asset.id,
        score=score,
        modality="text",
        page=asset.metadata.get("page"),
        metadata=asset.metadata,
    )


def _result(hit: FusedHit, fused_rank: int) -> Result:
    return Result(
        id=hit.id,
        score=hit.score,
        rank=fused_rank,
        recall={
            name: StageScore(score=score, rank=hit.channel_ranks[name])
            for name, score in hit.channel_scores.items()
        },
        fused=StageScore(score=hit.score, rank=fused_rank),
        modality=hit.modality,
        best_timestamp=hit.best_timestamp,
        page=hit.page,
        metadata={k: v for k, v in hit.metadata.items() if k != "_child"},
    )


def _blend(rerank: list[float], fused: list[float], weight: float | None) -> list[float]:
    """Rerank alone, or ``w * rerank + (1 - w) * fused`` with the fused scores min-max
    normalised over the candidates (RRF scores are tiny numbers on no fixed scale)."""
    if weight is None:
        return list(rerank)
    low, high = min(fused), max(fused)
    spread = high - low
    normalised = [(f - low) / spread if spread > 0 else 1.0 for f in fused]
    return [weight * r + (1 - weight) * n for r, n in zip(rerank, normalised, strict=True)]


def _finish(results: list[Result], top_k: int, min_score: float | None) -> list[Result]:
    """Best first (documents the reranker could not read last), cut to top_k."""
    kept = [r for r in results if min_score is None or _or_zero(r.score) >= min_score]
    kept.sort(key=lambda r: (math.isnan(r.score), -_or_zero(r.score), r.rank))
    for rank, result in enumerate(kept[:top_k], 1):
        result.rank = rank
    return kept[:top_k]


def _or_zero(value: float) -> float:
    return 0.0 if math.isnan(value) else value
