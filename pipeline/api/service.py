"""What the routes call: the served indexes, the model stages and the media rules.

Route functions only parse HTTP and call one method here; the method prepares the
request's media, runs the pipeline in the right model stage (see ``pipeline.api.gate``)
and shapes the answer. Searching, scoring and writing stay in ``Pipeline`` and
``IndexSession``.
"""

from __future__ import annotations

import gc
import logging
import math
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from pipeline.api.auth import Tokens
from pipeline.api.gate import Saturated, StageGate, StageTimeout
from pipeline.api.media_in import MediaInputs, MediaRefused
from pipeline.api.media_out import media_file, thumbnail
from pipeline.api.metrics import Metrics
from pipeline.api.problems import LimitExceeded, NotFound, NotReady
from pipeline.api.schemas import (
    AssetIn,
    CohereMeta,
    CohereRerankRequest,
    CohereRerankResponse,
    CohereResult,
    EmbedderStatus,
    IndexList,
    IndexSummary,
    MediaItem,
    ModelsResponse,
    RerankRequest,
    RerankResponse,
    RerankResult,
    SearchRequest,
    SearchResponse,
    SearchResult,
    Usage,
)
from pipeline.config import Config
from pipeline.model_pool import RerankerStatus
from pipeline.pipeline import DeleteReport, Pipeline
from pipeline.schema import Asset, Content, Query
from pipeline.search import RerankOptions, Result
from pipeline.session import IndexInfo, IndexSession, SearchOutcome, UpsertFailure, UpsertReport
from rerankers.base import DocumentFailure, Progress, ScoreReport, best_first

logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class ServedIndex:
    name: str
    directory: Path
    pipeline: Pipeline
    session: IndexSession | None = None
    error: str | None = None


class Service:
    def __init__(
        self,
        pipeline: Pipeline,
        indexes: Mapping[str, Path],
        index_configs: Mapping[str, Config] | None = None,
        preload: bool = True,
    ) -> None:
        """``pipeline`` serves /v1/rerank and every index not named in ``index_configs``,
        which gives an index a config of its own (its models still shared). With
        ``preload`` each index's CLIP model loads as the index opens; without, at the
        first search or ``load_models`` (the web page loads nothing until asked)."""
        self.preload = preload
        self.pipeline = pipeline
        self.serve = pipeline.config.serve
        self.tokens = Tokens.from_settings(self.serve)
        self.metrics = Metrics()
        serve = self.serve
        self.gates = {
            name: StageGate(name, serve.max_concurrency, serve.max_queue, serve.retry_after_s)
            for name in ("embed", "rerank")
        }
        for name, gate in self.gates.items():
            self.metrics.watch_gate(name, lambda g=gate: g.queued, lambda g=gate: g.in_stage)
        configs = dict(index_configs or {})
        unknown = sorted(set(configs) - set(indexes))
        if unknown:
            raise ValueError(f"configs given for indexes that are not served: {unknown}")
        self.indexes = {
            name: ServedIndex(
                name,
                Path(path),
                pipeline.with_config(configs[name]) if name in configs else pipeline,
            )
            for name, path in indexes.items()
        }
        self.metrics.model_loaded.labels("reranker").set_function(
            lambda: float(all(s.state == "loaded" for s in self.models().rerankers))
        )
        self._opened = threading.Event()
        self._scratch = Path(tempfile.mkdtemp(prefix="vlsearch-serve-"))

    # -- life ----------------------------------------------------------------------------

    def open_indexes(self) -> None:
        """Open every index (run in a thread at start-up: /readyz says 503 meanwhile). An
        index that cannot open is reported by /readyz and /v1/indexes; the others serve."""
        for served in self.indexes.values():
            try:
                served.session = served.pipeline.session(served.directory)
                if self.preload:  # so the first search does not wait for the CLIP model
                    served.pipeline.embedder_of(served.session.index)
            except Exception as exc:  # any failure is reported, never fatal to the rest
                served.error = f"{served.directory}: {exc}"
                logger.error("index %s cannot be served: %s", served.name, served.error)
        _freeze_long_lived()
        self._opened.set()

    @property
    def scratch(self) -> Path:
        """A folder of this server's own, removed when it closes."""
        return self._scratch

    @property
    def ready(self) -> bool:
        return self._opened.is_set() and all(s.session is not None for s in self.indexes.values())

    def readiness(self) -> dict[str, Any]:
        return {
            "ready": self.ready,
            "indexes": {
                name: "open" if s.session else (s.error or "opening")
                for name, s in self.indexes.items()
            },
        }

    def close(self) -> None:
        for gate in self.gates.values():
            gate.shutdown()
        for served in self.indexes.values():
            if served.session is not None:
                served.session.close()
                served.session = None
        shutil.rmtree(self._scratch, ignore_errors=True)

    def session(self, name: str) -> IndexSession:
        return self._served(name)[1]

    def _served(self, name: str) -> tuple[ServedIndex, IndexSession]:
        served = self.indexes.get(name)
        if served is None:
            known = ", ".join(sorted(self.indexes)) or "none"
            raise NotFound(f"no index named {name!r} is served (served: {known})")
        if served.session is None:
            raise NotReady(served.error or f"index {name!r} is still opening")
        return served, served.session

    # -- search --------------------------------------------------------------------------

    async def search(
        self,
        name: str,
        request: SearchRequest,
        uploads: Mapping[str, bytes] | None = None,
        progress: Progress | None = None,
    ) -> SearchResponse:
        """``progress`` hears the reranker's ``(documents done, total)``."""
        served, session = self._served(name)
        self._check_top(request.top_k, "top_k")
        config = served.pipeline.config
        rerank_on = config.rerank.enabled if request.rerank is None else request.rerank
        options = RerankOptions(instruction=request.instruction, fps=request.fps)

        def work(folder: Path) -> tuple[SearchOutcome, set[str]]:
            inputs = MediaInputs(self.serve, config.media, folder, uploads)
            query = Query(**_fields(request.query, inputs, "query"))
            if rerank_on:
                ensure_loaded(served.pipeline)
            outcome = session.search(
                query, request.top_k, request.filter, request.rerank, progress, options
            )
            self.metrics.observe_search(outcome.timings)
            found = session.index.get_many([result.id for result in outcome.results])
            with_media = {i for i, a in found.items() if a.image is not None or a.video is not None}
            return outcome, with_media

        outcome, with_media = await self.in_stage("rerank" if rerank_on else "embed", work)
        return SearchResponse(
            index=name,
            results=[self._with_urls(name, r, r.id in with_media) for r in outcome.results],
            timings=outcome.timings,
        )

    def _with_urls(self, name: str, result: Result, has_media: bool) -> SearchResult:
        """The result with the URLs of its media (none for a text-only asset)."""
        if not has_media:
            return SearchResult(**result.model_dump())
        base = f"/v1/indexes/{quote(name, safe='')}/assets/{quote(result.id, safe='')}"
        media, thumbnail = f"{base}/media", f"{base}/thumbnail"
        if result.best_timestamp is not None:  # the best moment of a video
            media += f"#t={result.best_timestamp:.3f}"
            thumbnail += f"?t={result.best_timestamp:.3f}"
        return SearchResult(**result.model_dump(), media_url=media, thumbnail_url=thumbnail)

    # -- rerank --------------------------------------------------------------------------

    async def rerank(self, request: RerankRequest) -> RerankResponse:
        self._check_documents(len(request.documents))
        if request.top_n is not None:
            self._check_top(request.top_n, "top_n")
        items = [MediaItem(text=d) if isinstance(d, str) else d for d in request.documents]
        query = MediaItem(text=request.query) if isinstance(request.query, str) else request.query
        report = await self._score(
            query, items, request.instruction, request.fps, request.max_frames
        )
        order = best_first(report.scores)[: request.top_n]
        reasons = {f.index: f.reason for f in report.failures}
        results = [
            RerankResult(
                index=i,
                relevance_score=None if math.isnan(report.scores[i]) else report.scores[i],
                document=_echo(items[i]) if request.return_documents else None,
                error=reasons.get(i),
            )
            for i in order
        ]
        tokens = report.tokens or 0
        return RerankResponse(
            id=f"rerank-{uuid.uuid4().hex}",
            model=self._model_name(),
            results=results,
            usage=Usage(total_tokens=tokens, prompt_tokens=tokens),
        )

    async def cohere_rerank(self, request: CohereRerankRequest) -> CohereRerankResponse:
        self._check_documents(len(request.documents))
        if request.top_n is not None:
            self._check_top(request.top_n, "top_n")
        items = [MediaItem(text=d) for d in request.documents]
        report = await self._score(MediaItem(text=request.query), items, None, None, None)
        scored = [i for i in best_first(report.scores) if not math.isnan(report.scores[i])]
        warnings = [f"document {f.index} not scored: {f.reason}" for f in report.failures]
        return CohereRerankResponse(
            id=str(uuid.uuid4()),
            results=[
                CohereResult(index=i, relevance_score=report.scores[i])
                for i in scored[: request.top_n]
            ],
            meta=CohereMeta(warnings=warnings),
        )

    async def _score(
        self,
        query_item: MediaItem,
        items: Sequence[MediaItem],
        instruction: str | None,
        fps: float | None,
        max_frames: int | None,
    ) -> ScoreReport:
        """Scores in document order; a document whose media cannot be read fails alone
        (403 and 413 refusals still refuse the whole request)."""

        def work(folder: Path) -> ScoreReport:
            inputs = MediaInputs(self.serve, self.pipeline.config.media, folder)
            query = Query(**_fields(query_item, inputs, "query"))
            if query.is_empty:
                raise MediaRefused(422, "query", "the query has no text, image or video")
            documents, unreadable = self._documents(items, inputs)
            ensure_loaded(self.pipeline)
            readable = [i for i in range(len(items)) if i not in unreadable]
            report = self.pipeline.reranker.score_report(
                query,
                [documents[i] for i in readable],
                instruction=instruction,
                fps=fps,
                max_frames=max_frames,
            )
            return _merged(report, readable, unreadable, len(items))

        return await self.in_stage("rerank", work)

    def _documents(
        self, items: Sequence[MediaItem], inputs: MediaInputs
    ) -> tuple[dict[int, Content], dict[int, str]]:
        documents: dict[int, Content] = {}
        unreadable: dict[int, str] = {}
        for i, item in enumerate(items):
            try:
                content = Content(**_fields(item, inputs, f"documents[{i}]"))
            except MediaRefused as exc:
                if exc.status != 422:
                    raise
                unreadable[i] = exc.reason
                continue
            if content.is_empty:
                unreadable[i] = "the document has no text, image or video"
            else:
                documents[i] = content
        return documents, unreadable

    def _model_name(self) -> str:
        return self.pipeline.reranker_status().model

    # -- index upkeep --------------------------------------------------------------------

    def list_indexes(self) -> IndexList:
        return IndexList(
            indexes=[
                IndexSummary(
                    name=s.name,
                    ready=s.session is not None,
                    error=s.error,
                    assets=len(s.session.index) if s.session is not None else None,
                )
                for s in self.indexes.values()
            ]
        )

    def info(self, name: str) -> IndexInfo:
        return self.session(name).info()

    async def upsert(
        self, name: str, assets: Sequence[AssetIn], uploads: Mapping[str, bytes] | None = None
    ) -> UpsertReport:
        served, session = self._served(name)
        if len(assets) > self.serve.max_assets_per_upsert:
            limit = self.serve.max_assets_per_upsert
            raise LimitExceeded(
                413,
                "assets",
                f"{len(assets)} assets; serve.max_assets_per_upsert is {limit}",
                "serve.max_assets_per_upsert",
            )

        def work(_: Path) -> UpsertReport:
            # The media live in the index, beside the assets that name them.
            media = served.pipeline.config.media
            stored = MediaInputs(self.serve, media, session.directory / "media", uploads)
            rows: list[Asset] = []
            unreadable: list[UpsertFailure] = []
            for i, row in enumerate(assets):
                try:
                    fields = _fields(row, stored, f"assets[{i}]")
                    rows.append(Asset(id=row.id, metadata=row.metadata, **fields))
                except MediaRefused as exc:
                    if exc.status != 422:
                        raise  # a refusal by policy or limit refuses the whole request
                    unreadable.append(UpsertFailure(id=row.id, stage="read", reason=str(exc)))
                except ValueError as exc:  # an asset with nothing in it
                    unreadable.append(UpsertFailure(id=row.id, stage="read", reason=str(exc)))
            report = session.upsert(rows) if rows else UpsertReport.empty()
            report.failed[:0] = unreadable
            return report

        # A write is never abandoned half-way by a timeout: it gets no deadline.
        return await self.in_stage("embed", work, deadline=False)

    def delete(self, name: str, asset_id: str) -> DeleteReport:
        report = self.session(name).delete([asset_id])
        if report.unknown:
            raise NotFound(f"index {name!r} holds no asset {asset_id!r}")
        return report

    # -- media ---------------------------------------------------------------------------

    def asset(self, name: str, asset_id: str) -> Asset:
        asset = self.session(name).get(asset_id)
        if asset is None:
            raise NotFound(f"index {name!r} holds no asset {asset_id!r}")
        return asset

    def media_file(self, name: str, asset_id: str, frame: int = 0) -> Path:
        return media_file(self.asset(name, asset_id), frame)

    def thumbnail(self, name: str, asset_id: str, at: float | None = None) -> bytes:
        media = self._served(name)[0].pipeline.config.media
        return thumbnail(self.asset(name, asset_id), at, self.serve.thumbnail_px, media)

    # -- models --------------------------------------------------------------------------

    def models(self) -> ModelsResponse:
        embedders = [
            EmbedderStatus(
                index=s.name,
                model=str(s.session.index.manifest.embedder.get("model")),
                loaded=self.pipeline.embedder_loaded(s.session.index),
            )
            for s in self.indexes.values()
            if s.session is not None
        ]
        statuses = [p.reranker_status() for p in self._pipelines()]
        return ModelsResponse(reranker=statuses[0], rerankers=statuses, embedders=embedders)

    def load_rerankers(self) -> list[RerankerStatus]:
        statuses = [pipeline.load_reranker() for pipeline in self._pipelines()]
        _freeze_long_lived()
        return statuses

    def load_models(self) -> ModelsResponse:
        """Every model the served indexes and rerank need: CLIP per index, stage two."""
        for served in self.indexes.values():
            if served.session is not None:
                served.pipeline.embedder_of(served.session.index)
        self.load_rerankers()
        return self.models()

    def unload_rerankers(self) -> list[RerankerStatus]:
        gc.unfreeze()  # frozen objects are never collected: the model could not be freed
        statuses = [pipeline.unload_reranker() for pipeline in self._pipelines()]
        gc.collect()
        _freeze_long_lived()
        return statuses

    def _pipelines(self) -> list[Pipeline]:
        """The main pipeline, then one per distinct reranker the indexes' configs name."""
        found: dict[str, Pipeline] = {}
        for pipeline in [self.pipeline, *(s.pipeline for s in self.indexes.values())]:
            found.setdefault(pipeline.config.reranker.model_dump_json(), pipeline)
        return list(found.values())

    # -- shared --------------------------------------------------------------------------

    async def in_stage(self, stage: str, work: Callable[[Path], T], deadline: bool = True) -> T:
        """``work(folder)`` in a model stage, with a scratch folder for the request's media
        that is removed when the work ends (even after a timeout answered the client).
        Without ``deadline``, no timeout."""
        folder = self._scratch / uuid.uuid4().hex

        def run() -> T:
            try:
                return work(folder)
            finally:
                shutil.rmtree(folder, ignore_errors=True)

        timeout_s = self.serve.request_timeout_s if deadline else None
        try:
            return await self.gates[stage].run(run, timeout_s)
        except Saturated:
            self.metrics.rejected.labels(stage, "saturated").inc()
            raise
        except StageTimeout:
            self.metrics.rejected.labels(stage, "timeout").inc()
            raise

    def _check_top(self, value: int, field: str) -> None:
        if value > self.serve.max_top_k:
            raise LimitExceeded(
                422, field, f"{value}; serve.max_top_k is {self.serve.max_top_k}", "serve.max_top_k"
            )

    def _check_documents(self, count: int) -> None:
        if count > self.serve.max_documents:
            limit = self.serve.max_documents
            raise LimitExceeded(
                413,
                "documents",
                f"{count} documents; serve.max_documents is {limit}",
                "serve.max_documents",
            )


def _fields(item: MediaItem | AssetIn, inputs: MediaInputs, field: str) -> dict[str, Any]:
    """Content keyword arguments with every media string made a checked file."""
    image = inputs.from_string(item.image, f"{field}.image", "image") if item.image else None
    video: Path | list[Path] | None = None
    if isinstance(item.video, list):
        video = inputs.frames(item.video, f"{field}.video")
    elif item.video:
        video = inputs.from_string(item.video, f"{field}.video", "video")
    fields: dict[str, Any] = {"text": item.text, "image": image, "video": video}
    if isinstance(item, AssetIn):
        fields["fps"] = item.fps
    return fields


def ensure_loaded(pipeline: Pipeline) -> None:
    """Load stage two before scoring, under the pool's lock: concurrent first requests
    load it once, and /v1/models shows it loading."""
    if pipeline.reranker_status().state != "loaded":
        pipeline.load_reranker()
        _freeze_long_lived()


def _freeze_long_lived() -> None:
    """Move what is in memory now (modules, models, open indexes: some 500,000 objects)
    out of the cyclic collector's reach. Each full collection otherwise walks them all,
    stopping every thread, the event loop too, for 0.2-0.3 s every 10-30 s under load
    (measured by benchmarks/serve.py): refusals and health checks waited behind it."""
    gc.collect()
    gc.freeze()


def _merged(
    report: ScoreReport, readable: list[int], unreadable: dict[int, str], total: int
) -> ScoreReport:
    """The report of the readable documents, placed back among the unreadable ones."""
    scores = [math.nan] * total
    for position, index in enumerate(readable):
        scores[index] = report.scores[position]
    failures = {readable[f.index]: f.reason for f in report.failures}
    failures.update(unreadable)
    return ScoreReport(
        scores=scores,
        failures=[DocumentFailure(index=i, reason=failures[i]) for i in sorted(failures)],
        tokens=report.tokens,
    )


def _echo(item: MediaItem) -> dict[str, Any]:
    """The document as sent, its media only where given as URLs: bytes sent as base64 the
    client has already, and echoing them would multiply the response."""
    echoed = item.model_dump(exclude_none=True)
    for key in ("image", "video"):
        value = echoed.get(key)
        sent = value if isinstance(value, list) else [value] if value else []
        if not all(v.lower().startswith(("http://", "https://")) for v in sent):
            echoed.pop(key, None)
    return echoed
