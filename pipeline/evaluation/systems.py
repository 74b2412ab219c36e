"""How each kind of system answers a query with a ranking.

* ``config``: the pipeline with the system's config (both stages, as ``vlsearch search``),
  through one held-open :class:`~pipeline.session.IndexSession`;
* ``run``: an external TREC run, read as it is (cut to the suite's depth);
* ``rerank_run``: stage two over an external run's top N, each candidate's content read
  from the index by id, ranked by the reranker's score (documents it could not read
  last), as the model authors' protocol reranks a baseline's top 100.

Rerankers go through the score cache when there is one (:mod:`pipeline.evaluation.cache`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Protocol

from pipeline.config import Config
from pipeline.evaluation.cache import CachingReranker, ScoreCache
from pipeline.evaluation.errors import EvalError
from pipeline.evaluation.inputs import EvalQuery, Ranking
from pipeline.evaluation.store import QueryResult
from pipeline.media import MediaError
from pipeline.media_inputs import check_query_media
from pipeline.model_pool import ModelPool
from pipeline.pipeline import Pipeline
from pipeline.schema import Content
from pipeline.search import TEXT_CHANNELS
from rerankers.base import Reranker, best_first


class System(Protocol):
    """One system of a suite, opened: ``run`` answers one query."""

    name: str

    def run(self, query: EvalQuery) -> QueryResult: ...

    def close(self) -> None: ...


def reranker_settings(config: Config) -> str:
    """What decides a reranker's scores, as a cache key part: its config (model and every
    setting) and the media and embedder configs it is built with (the CLIP backend
    samples video with the one and may share the other)."""
    return json.dumps(
        {
            "reranker": config.reranker.model_dump(mode="json"),
            "media": config.media.model_dump(mode="json"),
            "embedder": config.embedder.model_dump(mode="json"),
        },
        sort_keys=True,
    )


def stage_two(pipeline: Pipeline, cache: ScoreCache | None) -> Reranker:
    reranker = pipeline.reranker
    if cache is None:
        return reranker
    return CachingReranker(reranker, cache, reranker_settings(pipeline.config))


def _tally(reranker: Reranker | None) -> tuple[int, int]:
    """(pairs served from the cache, pairs scored) so far."""
    if isinstance(reranker, CachingReranker):
        return reranker.hits, reranker.misses
    return 0, 0


def _pair_counts(reranker: Reranker | None, before: tuple[int, int], sent: int) -> dict[str, int]:
    """What one query cost stage two: without a cache, ``sent`` pairs all scored."""
    if not isinstance(reranker, CachingReranker):
        return {"rerank_pairs": sent, "cached_pairs": 0}
    hits, misses = _tally(reranker)
    cached = hits - before[0]
    return {"rerank_pairs": cached + misses - before[1], "cached_pairs": cached}


class PipelineSystem:
    def __init__(
        self,
        name: str,
        config: Config,
        index: Path,
        depth: int,
        models: ModelPool,
        cache: ScoreCache | None,
    ) -> None:
        self.name = name
        self.depth = depth
        self.pipeline = Pipeline(config, models)
        self.session = self.pipeline.session(index)
        self.rerank = self.pipeline.config.rerank.enabled
        try:
            self._check_channels(index)
            self._warm_up()
        except Exception:
            self.session.close()
            raise
        self.reranker = stage_two(self.pipeline, cache) if self.rerank else None

    def _warm_up(self) -> None:
        """Load every model and channel now: the first query's latency is then a query's,
        not a model load's."""
        self.pipeline.embedder_of(self.session.index)
        for channel in self.pipeline.config.recall.channels:
            if channel in TEXT_CHANNELS:
                self.session.channels.search(channel, "warm up", 1)
        if self.rerank:
            self.pipeline.load_reranker()

    def _check_channels(self, index: Path) -> None:
        missing = [
            channel
            for channel in self.pipeline.config.recall.channels
            if channel in TEXT_CHANNELS and channel not in self.session.channels
        ]
        if missing:
            raise EvalError(
                f"system {self.name!r}: recall channel(s) {', '.join(missing)} need text "
                f"channels the config does not build; give the config {index} was built with "
                "(--config, or config: in the suite)"
            )

    def run(self, query: EvalQuery) -> QueryResult:
        before = _tally(self.reranker)
        try:
            outcome = self.session.search(query.query, top_k=self.depth, reranker=self.reranker)
        except (MediaError, ValueError, OSError) as exc:
            return QueryResult(qid=query.id, results=[], error=str(exc))
        timings = outcome.timings.model_dump()
        if not self.rerank:
            timings.pop("rerank_s")
        sent = sum(result.rerank is not None for result in outcome.results)
        return QueryResult(
            qid=query.id,
            results=[(result.id, result.score) for result in outcome.results],
            timings=timings,
            **_pair_counts(self.reranker, before, sent),
        )

    def close(self) -> None:
        self.session.close()


class RunSystem:
    def __init__(self, name: str, rankings: dict[str, Ranking], depth: int) -> None:
        self.name = name
        self.rankings = rankings
        self.depth = depth

    def run(self, query: EvalQuery) -> QueryResult:
        return QueryResult(qid=query.id, results=self.rankings.get(query.id, [])[: self.depth])

    def close(self) -> None:
        pass


class RerankRunSystem:
    def __init__(
        self,
        name: str,
        config: Config,
        index: Path,
        rankings: dict[str, Ranking],
        top_n: int | None,
        depth: int,
        models: ModelPool,
        cache: ScoreCache | None,
    ) -> None:
        self.name = name
        self.rankings = rankings
        self.pipeline = Pipeline(config, models)
        self.top_n = top_n or self.pipeline.config.rerank.top_n
        self.depth = depth
        self.index = self.pipeline.open_index(index)
        self.reranker = stage_two(self.pipeline, cache)
        self.pipeline.load_reranker()  # before the clock starts: a load is not a query's time

    def run(self, query: EvalQuery) -> QueryResult:
        started = time.perf_counter()
        # The run's top N as it ranks them; ids the index lacks cannot be read (they were
        # reported with the run file's line) and drop out.
        top = [docid for docid, _ in self.rankings.get(query.id, [])[: self.top_n]]
        assets = self.index.get_many(top)
        ids = [docid for docid in top if docid in assets]
        documents = [_content(assets[docid]) for docid in ids]
        before = _tally(self.reranker)
        try:
            check_query_media(query.query, self.pipeline.config.media)
            report = self.reranker.score_report(query.query, documents)
        except (MediaError, ValueError, OSError) as exc:
            return QueryResult(qid=query.id, results=[], error=str(exc))
        seconds = time.perf_counter() - started
        ranked = [(ids[i], report.scores[i]) for i in best_first(report.scores)]
        return QueryResult(
            qid=query.id,
            results=ranked[: self.depth],
            timings={"rerank_s": seconds, "total_s": seconds},
            **_pair_counts(self.reranker, before, len(documents)),
        )

    def close(self) -> None:
        self.index.close()


def _content(asset: Any) -> Content:
    return Content(text=asset.text, image=asset.image, video=asset.video, fps=asset.fps)
