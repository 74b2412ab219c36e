"""Searching by content, the same on every backend: the query is embedded with the model
that built the index (the one given when opening, else loaded from the manifest)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from indexers.embedders.base import Embedder
from indexers.index_inputs import as_query
from indexers.manifest import Manifest
from pipeline.config import EmbedderConfig, MediaConfig
from pipeline.filters import Filter
from pipeline.schema import Query, SearchHit


class SearchByContent:
    """Subclasses set ``manifest`` and ``_embedder`` and implement :meth:`search_vectors`."""

    manifest: Manifest
    _embedder: Embedder | None
    search_vectors: Callable[..., list[list[SearchHit]]]

    def search(
        self, query: Query | str | Path, k: int = 10, filter: Filter | str | None = None
    ) -> list[SearchHit]:
        """Embed ``query`` (a str is text, a Path an image, or a video by its type) with
        the index's embedder and return the best ``k`` assets whose metadata match
        ``filter`` (see ``pipeline.filters``)."""
        from indexers.embedders import embed_query

        media = MediaConfig.model_validate(self.manifest.media)
        vector = embed_query(self._query_embedder(), as_query(query), media)
        return self.search_vectors(np.asarray(vector, dtype=np.float32)[None, :], k, filter)[0]

    def _query_embedder(self) -> Embedder:
        if self._embedder is None:
            from indexers.embedders import create_embedder

            embedder = create_embedder(EmbedderConfig.model_validate(self.manifest.embedder))
            self.manifest.check_model(embedder.model_id, embedder.dim)
            self._embedder = embedder
        return self._embedder
