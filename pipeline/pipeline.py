"""The one object every door (CLI, REST, UI, benchmarks) calls."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from indexers.backends import SearchIndex, open_index
from indexers.build import BuildMode, BuildReport, ProgressCallback, build_index
from indexers.channel_set import ChannelSet
from indexers.embedders import Embedder, create_embedder, embed_query
from pipeline.config import Config, EmbedderConfig, load_config
from pipeline.media_inputs import check_query_media
from pipeline.models import apply_profile
from pipeline.schema import Query
from pipeline.search import Result, TwoStageSearch
from rerankers.base import Progress, Reranker
from rerankers.registry import create_reranker
from rerankers.request import RerankRequest, RerankResponse, run_request

logger = logging.getLogger(__name__)


class DeleteReport(BaseModel):
    deleted: int
    unknown: list[str] = Field(description="Requested ids the index did not hold.")


class Pipeline:
    """Builds, updates and searches indexes as its config says. Models load on
    first use, so constructing a pipeline is cheap."""

    def __init__(self, config: Config) -> None:
        self.config = apply_profile(config)
        self._embedder: Embedder | None = None
        self._reranker: Reranker | None = None
        self._query_embedder: tuple[EmbedderConfig, Embedder] | None = None

    @classmethod
    def from_config(cls, path: str | Path | None = None, overrides: Sequence[str] = ()) -> Pipeline:
        return cls(load_config(path, list(overrides)))

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = create_embedder(self.config.embedder)
        return self._embedder

    @property
    def reranker(self) -> Reranker:
        """Stage two as configured; its model loads on the first score."""
        if self._reranker is None:
            shared = {"embedder": self._embedder} if self._embedder is not None else {}
            self._reranker = create_reranker(
                self.config.reranker, media=self.config.media, **shared
            )
        return self._reranker

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
        with self.open_index(directory) as index:
            self._warn_if_tiny(index, directory)
            channels = self._channels(directory)
            search = TwoStageSearch(
                self.config,
                index,
                query_vector=lambda q: self._query_vector(index, q),
                text_search=channels.search if channels is not None else None,
                reranker=lambda: self.reranker,
                text_vector=channels.query_vector if channels is not None else None,
            )
            return search.run(query, top_k=top_k, filter=filter, rerank=rerank, progress=progress)

    def _warn_if_tiny(self, index: SearchIndex, directory: Path) -> None:
        if index.manifest.profile == "tiny" and self.config.profile != "tiny":
            logger.warning(
                "index %s was built with the tiny random-weight models "
                "(VLSEARCH_MODELS=tiny): its rankings are meaningless; rebuild it without "
                "the tiny profile for real results",
                directory,
            )

    def _channels(self, directory: Path) -> ChannelSet | None:
        if not self.config.text_channels:
            return None
        return ChannelSet.open(Path(directory), self.config.text_channels)

    def _query_vector(self, index: SearchIndex, query: Query) -> np.ndarray:
        """The query embedded by the model the index was built with."""
        built_with = EmbedderConfig.model_validate(index.manifest.embedder)
        if self._query_embedder is None or self._query_embedder[0] != built_with:
            self._query_embedder = (built_with, create_embedder(built_with))
        return embed_query(self._query_embedder[1], query, self.config.media)

    def delete(self, directory: Path, ids: Sequence[str]) -> DeleteReport:
        """Delete assets by id; ids the index does not hold are reported, not errors."""
        with self.open_index(directory) as index:
            unknown = [asset_id for asset_id in dict.fromkeys(ids) if asset_id not in index]
            removed = index.delete(list(ids))
            index.commit()
        channels = self._channels(directory)
        if channels is not None:
            channels.delete(list(ids))
            channels.save()
        return DeleteReport(deleted=removed, unknown=unknown)

    def rerank(self, request: RerankRequest, progress: Progress | None = None) -> RerankResponse:
        """Stage two alone, on a request in the reference script's format; ``progress``
        hears ``(documents done, total)``."""
        check_query_media(request.query_content(), self.config.media)
        return run_request(self.reranker, request, progress)
