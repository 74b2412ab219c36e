"""An index held open for many searches and writes: what a long-running server needs.

``Pipeline.search`` opens an index per call, which suits the CLI. A server instead keeps
one :class:`IndexSession` per served index, so every search sees every write made
through the same session (an index instance caches its vectors in memory), and text
channels are loaded once. Writes commit before they return: an acknowledged write is
durable.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from indexers.backends import SearchIndex
from indexers.build import ItemFailure, catch_up_channels, upsert_assets
from indexers.channel_set import ChannelSet
from pipeline.media_inputs import check_query_media
from pipeline.schema import Asset, Query
from pipeline.search import RerankOptions, Result, SearchTimings, TwoStageSearch
from rerankers.base import Progress, Reranker

if TYPE_CHECKING:
    from pipeline.pipeline import DeleteReport, Pipeline


class SearchOutcome(BaseModel):
    results: list[Result]
    timings: SearchTimings


class UpsertFailure(BaseModel):
    id: str
    stage: str = Field(description="'read' (cannot be stored) or 'decode' (media unreadable).")
    reason: str


class UpsertReport(BaseModel):
    """What an upsert stored; ``failed`` items were not stored, the others were."""

    indexed: int
    vectors: int
    failed: list[UpsertFailure]
    seconds: float

    @classmethod
    def empty(cls) -> UpsertReport:
        return cls(indexed=0, vectors=0, failed=[], seconds=0.0)


class IndexInfo(BaseModel):
    """The figures ``vlsearch index info`` prints."""

    assets: int
    vectors: int
    manifest: dict[str, Any]


class IndexSession:
    """One open index with its text channels. Searches may run in parallel; writes are
    serialised (one writer per index) and committed before they return."""

    def __init__(self, pipeline: Pipeline, directory: Path) -> None:
        self.pipeline = pipeline
        self.directory = Path(directory)
        self.index: SearchIndex = pipeline.open_index(self.directory)
        self._write_lock = threading.Lock()
        # Searches use the channels as saved; the first write catches them up with the
        # store (see _writing), so a one-off search never reads every stored id.
        self._caught_up = False
        try:
            self.channels = ChannelSet.open(self.directory, pipeline.config.text_channels)
        except Exception:
            self.index.close()
            raise

    def __enter__(self) -> IndexSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.index.close()

    def search(
        self,
        query: Query,
        top_k: int = 10,
        filter: str | None = None,
        rerank: bool | None = None,
        progress: Progress | None = None,
        options: RerankOptions | None = None,
        reranker: Reranker | None = None,
    ) -> SearchOutcome:
        """Both stages; ``reranker`` replaces the pipeline's own stage two for this search
        (an evaluation puts its score cache in front of it)."""
        pipeline = self.pipeline
        check_query_media(query, pipeline.config.media)  # before any model loads
        pipeline.warn_if_tiny(self.index, self.directory)
        channels = self.channels if len(self.channels) else None
        search = TwoStageSearch(
            pipeline.config,
            self.index,
            query_vector=lambda q: pipeline.query_vector(self.index, q),
            text_search=channels.search if channels is not None else None,
            reranker=lambda: reranker if reranker is not None else pipeline.reranker,
            text_vector=channels.query_vector if channels is not None else None,
        )
        results = search.run(
            query, top_k=top_k, filter=filter, rerank=rerank, progress=progress, options=options
        )
        return SearchOutcome(results=results, timings=search.timings)

    def upsert(self, assets: Sequence[Asset]) -> UpsertReport:
        """Embed with the model the index was built with and store; committed on return."""
        embedder = self.pipeline.embedder_of(self.index)
        with self._writing():
            report, failures = upsert_assets(
                self.pipeline.config, embedder, self.index, self.channels, assets
            )
        return UpsertReport(
            indexed=report.indexed,
            vectors=report.vectors,
            failed=[_failure(failure) for failure in failures],
            seconds=report.timings.total_s,
        )

    def delete(self, ids: Sequence[str]) -> DeleteReport:
        from pipeline.pipeline import DeleteReport

        with self._writing():
            unknown = [asset_id for asset_id in dict.fromkeys(ids) if asset_id not in self.index]
            removed = self.index.delete(list(ids))
            self.index.commit()
            if len(self.channels):
                self.channels.delete(list(ids))
                self.channels.save()
        return DeleteReport(deleted=removed, unknown=unknown)

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """One writer at a time, with the channels in step with the store (a build or a
        delete killed after the store committed can have left them behind)."""
        with self._write_lock:
            if not self._caught_up:
                catch_up_channels(self.channels, self.index)
                self._caught_up = True
            yield

    def get(self, asset_id: str) -> Asset | None:
        return self.index.get(asset_id)

    def info(self) -> IndexInfo:
        return IndexInfo(
            assets=len(self.index),
            vectors=self.index.vector_count(),
            manifest=self.index.manifest.model_dump(mode="json"),
        )


def _failure(failure: ItemFailure) -> UpsertFailure:
    return UpsertFailure(id=failure.item, stage=failure.stage, reason=failure.reason)
