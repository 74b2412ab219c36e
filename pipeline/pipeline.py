"""The one object every door (CLI, REST, UI, benchmarks) calls."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel, Field

from indexers.backends import SearchIndex, open_index
from indexers.build import BuildMode, BuildReport, ProgressCallback, build_index
from indexers.embedders import Embedder, create_embedder, embed_query
from pipeline.config import Config, EmbedderConfig, load_config
from pipeline.media_inputs import check_query_media
from pipeline.models import apply_profile
from pipeline.schema import Query
from pipeline.search import Result
from rerankers.base import Progress, Reranker
from rerankers.registry import create_reranker
from rerankers.request import RerankRequest, RerankResponse, run_request

if TYPE_CHECKING:
    from pipeline.session import IndexSession

logger = logging.getLogger(__name__)


class DeleteReport(BaseModel):
    deleted: int
    unknown: list[str] = Field(description="Requested ids the index did not hold.")


ModelState = Literal["not_loaded", "loading", "loaded"]


class RerankerStatus(BaseModel):
    backend: str
    model: str
    state: ModelState
    loading_for_s: float | None = None
    device: str | None = None
    dtype: str | None = None


class Pipeline:
    """Builds, updates and searches indexes as its config says. Models load on
    first use, so constructing a pipeline is cheap."""

    def __init__(self, config: Config) -> None:
        self.config = apply_profile(config)
        self._embedder: Embedder | None = None
        self._reranker: Reranker | None = None
        # The CLIP models indexes were built with, by their config (a server may hold
        # indexes of several).
        self._built_with: dict[str, Embedder] = {}
        # Doors that serve many requests at once (REST, UI) call from several threads:
        # each model is created once, and load/unload take turns.
        self._models_lock = threading.RLock()
        self._reranker_loading_since: float | None = None

    @classmethod
    def from_config(cls, path: str | Path | None = None, overrides: Sequence[str] = ()) -> Pipeline:
        return cls(load_config(path, list(overrides)))

    @property
    def embedder(self) -> Embedder:
        with self._models_lock:
            if self._embedder is None:
                self._embedder = create_embedder(self.config.embedder)
            return self._embedder

    @property
    def reranker(self) -> Reranker:
        """Stage two as configured; its model loads on the first score."""
        with self._models_lock:
            if self._reranker is None:
                shared = {"embedder": self._embedder} if self._embedder is not None else {}
                self._reranker = create_reranker(
                    self.config.reranker, media=self.config.media, **shared
                )
            return self._reranker

    def load_reranker(self) -> RerankerStatus:
        """Load stage two's model now (instead of at the first request that needs it)."""
        reranker = self.reranker
        with self._models_lock:
            self._reranker_loading_since = time.monotonic()
            try:
                reranker.load()  # type: ignore[attr-defined]
            finally:
                self._reranker_loading_since = None
        return self.reranker_status()

    def unload_reranker(self) -> RerankerStatus:
        """Free stage two's model; the next request that needs it loads it again."""
        with self._models_lock:
            if self._reranker is not None:
                self._reranker.unload()  # type: ignore[attr-defined]
        return self.reranker_status()

    def reranker_status(self) -> RerankerStatus:
        """Whether stage two's model is in memory. Never waits for a load under way."""
        config = self.config.reranker
        since = self._reranker_loading_since
        reranker = self._reranker
        if since is not None:
            state: ModelState = "loading"
        elif reranker is not None and getattr(reranker, "loaded", False):
            state = "loaded"
        else:
            state = "not_loaded"
        placement = getattr(reranker, "placement", None) if state == "loaded" else None
        return RerankerStatus(
            backend=config.backend,
            model=str(getattr(config, "model", getattr(config, "url", ""))),
            state=state,
            loading_for_s=time.monotonic() - since if since is not None else None,
            device=placement[0] if placement else None,
            dtype=placement[1] if placement else None,
        )

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
        the reranker's ``(documents done, total)``."""
        check_query_media(query, self.config.media)
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
        built_with = EmbedderConfig.model_validate(index.manifest.embedder)
        key = built_with.model_dump_json()
        with self._models_lock:
            if key not in self._built_with:
                self._built_with[key] = create_embedder(built_with)
            return self._built_with[key]

    def embedder_loaded(self, index: SearchIndex) -> bool:
        key = EmbedderConfig.model_validate(index.manifest.embedder).model_dump_json()
        return key in self._built_with

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
