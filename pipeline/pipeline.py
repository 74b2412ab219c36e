"""The one object every door (CLI, REST, UI, benchmarks) calls."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, Field

from indexers.backends import SearchIndex, open_index
from indexers.build import BuildMode, BuildReport, ProgressCallback, build_index
from indexers.embedders import Embedder, embed_query
from pipeline.config import Config, EmbedderConfig, load_config
from pipeline.media_inputs import check_query_media
from pipeline.model_pool import ModelPool, RerankerStatus
from pipeline.models import apply_profile
from pipeline.schema import Content, Query
from pipeline.search import Result
from rerankers import breakdown
from rerankers.base import Progress, Reranker, ScoreReport
from rerankers.preprocessing import ImagePreprocessing
from rerankers.request import RerankRequest, RerankResponse, run_request

if TYPE_CHECKING:
    from pipeline.session import IndexSession

logger = logging.getLogger(__name__)


class DeleteReport(BaseModel):
    deleted: int
    unknown: list[str] = Field(description="Requested ids the index did not hold.")


class Pipeline:
    """Builds, updates and searches indexes as its config says. Models load on
    first use, so constructing a pipeline is cheap."""

    def __init__(self, config: Config, models: ModelPool | None = None) -> None:
        self.config = apply_profile(config)
        self.models = models or ModelPool()

    @classmethod
    def from_config(cls, path: str | Path | None = None, overrides: Sequence[str] = ()) -> Pipeline:
        return cls(load_config(path, list(overrides)))

    def with_config(self, config: Config) -> Pipeline:
        """A pipeline of another config sharing this one's models in memory."""
        return Pipeline(config, self.models)

    @property
    def embedder(self) -> Embedder:
        return self.models.embedder(self.config.embedder)

    @property
    def reranker(self) -> Reranker:
        """Stage two as configured; its model loads on the first score."""
        config = self.config
        return self.models.reranker(config.reranker, config.media, config.embedder)

    def load_reranker(self) -> RerankerStatus:
        """Load stage two's model now (instead of at the first request that needs it)."""
        config = self.config
        self.models.load_reranker(config.reranker, config.media, config.embedder)
        return self.reranker_status()

    def unload_reranker(self) -> RerankerStatus:
        """Free stage two's model; the next request that needs it loads it again."""
        self.models.unload_reranker(self.config.reranker, self.config.media)
        return self.reranker_status()

    def reranker_status(self) -> RerankerStatus:
        return self.models.reranker_status(self.config.reranker, self.config.media)

    def session(self, directory: Path) -> IndexSession:
        """The index held open for many searches and writes (see ``pipeline.session``)."""
        from pipeline.session import IndexSession

        return IndexSession(self, Path(directory))

    def build(
        self,
        source: Path,
        out: Path,
        mode: BuildMode = "create",
        progress: ProgressCallback | None = None,
    ) -> BuildReport:
        return build_index(self.config, self.embedder, Path(source), Path(out), mode, progress)

    def open_index(self, directory: Path) -> SearchIndex:
        """Opens with the backend and embedder the index was built with (its manifest)."""
        return open_index(Path(directory))

    def search(
        self,
        directory: Path,
        query: Query,
        top_k: int = 10,
        filter: str | None = None,
        rerank: bool | None = None,
        progress: Progress | None = None,
    ) -> list[Result]:
        """Both stages: recall per channel, fusion, rerank of the fused top N (unless
        ``rerank`` is False or the config turns it off). ``filter`` is a metadata
        expression (see ``pipeline.filters``) applied in every channel. ``progress`` hears
        the reranker's ``(documents done, total)``. A query file that cannot be read
        fails before any model loads."""
        with self.session(directory) as session:
            outcome = session.search(
                query, top_k=top_k, filter=filter, rerank=rerank, progress=progress
            )
        return outcome.results

    def warn_if_tiny(self, index: SearchIndex, directory: Path) -> None:
        if index.manifest.profile == "tiny" and self.config.profile != "tiny":
            logger.warning(
                "index %s was built with the tiny random-weight models "
                "(VLSEARCH_MODELS=tiny): its rankings are meaningless; rebuild it without "
                "the tiny profile for real results",
                directory,
            )

    def embedder_of(self, index: SearchIndex) -> Embedder:
        """The CLIP model the index was built with (its manifest), loaded once."""
        return self.models.embedder(EmbedderConfig.model_validate(index.manifest.embedder))

    def embedder_loaded(self, index: SearchIndex) -> bool:
        return self.models.has_embedder(EmbedderConfig.model_validate(index.manifest.embedder))

    def query_vector(self, index: SearchIndex, query: Query) -> np.ndarray:
        """The query embedded by the model the index was built with."""
        return embed_query(self.embedder_of(index), query, self.config.media)

    def delete(self, directory: Path, ids: Sequence[str]) -> DeleteReport:
        """Delete assets by id; ids the index does not hold are reported, not errors."""
        with self.session(directory) as session:
            return session.delete(ids)

    def rerank(self, request: RerankRequest, progress: Progress | None = None) -> RerankResponse:
        """Stage two alone, on a request in the reference script's format; ``progress``
        hears ``(documents done, total)``."""
        check_query_media(request.query_content(), self.config.media)
        return run_request(self.reranker, request, progress)

    def score(
        self,
        query: Content,
        documents: Sequence[Content],
        *,
        instruction: str | None = None,
        fps: float | None = None,
        max_frames: int | None = None,
        image: ImagePreprocessing | None = None,
        progress: Progress | None = None,
    ) -> ScoreReport:
        """Stage two alone on documents already built (uploads, not a request file), with
        every per-request setting; None is the reranker's configured value. A query file
        that cannot be read raises MediaError before any model loads; an unreadable
        document fails on its own, in the report."""
        check_query_media(query, self.config.media)
        return self.reranker.score_report(
            query,
            documents,
            instruction=instruction,
            fps=fps,
            max_frames=max_frames,
            progress=progress,
            image=image,
        )

    def explain(
        self,
        query: Content,
        document: Content,
        *,
        instruction: str | None = None,
        fps: float | None = None,
        max_frames: int | None = None,
        image: ImagePreprocessing | None = None,
        frames: bool = False,
        progress: Progress | None = None,
    ) -> breakdown.Breakdown:
        """One document's score beside its parts' scores and, with ``frames``, each of
        its video's sampled frames' (see ``rerankers.breakdown``), scored by stage two. A
        query file that cannot be read raises MediaError before any model loads."""
        check_query_media(query, self.config.media)
        return breakdown.explain(
            self.reranker,
            query,
            document,
            instruction=instruction,
            fps=fps,
            max_frames=max_frames,
            image=image,
            frames=frames,
            progress=progress,
            media=self.config.media,
        )

    def explain_all(
        self,
        query: Content,
        documents: Sequence[Content],
        *,
        instruction: str | None = None,
        fps: float | None = None,
        max_frames: int | None = None,
        image: ImagePreprocessing | None = None,
        parts: bool = True,
        frames: bool = False,
        progress: Progress | None = None,
    ) -> list[breakdown.Breakdown]:
        """``explain`` for many documents in one pass of stage two (the Rerank tab's
        ranking and its detail panels); without ``parts`` and ``frames`` it is exactly
        ``score``."""
        check_query_media(query, self.config.media)
        return breakdown.explain_all(
            self.reranker,
            query,
            documents,
            instruction=instruction,
            fps=fps,
            max_frames=max_frames,
            image=image,
            parts=parts,
            frames=frames,
            progress=progress,
            media=self.config.media,
        )
