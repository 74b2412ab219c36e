"""The models in memory, shared by every Pipeline handed the same pool.

A server may serve indexes with different configs (a shop's, a knowledge base's), one
``Pipeline`` each; they share one pool, so a model that several configs name loads once.
Models are keyed by their config. Doors that serve many requests at once call from
several threads: each model is created once, and loading and unloading take turns.
"""

from __future__ import annotations

import threading
import time
from typing import Literal

from pydantic import BaseModel

from indexers.embedders import Embedder, create_embedder
from pipeline.settings import EmbedderConfig, MediaConfig
from rerankers.base import Reranker
from rerankers.config import RerankerConfig
from rerankers.registry import create_reranker

ModelState = Literal["not_loaded", "loading", "loaded"]


class RerankerStatus(BaseModel):
    backend: str
    model: str
    state: ModelState
    loading_for_s: float | None = None
    device: str | None = None
    dtype: str | None = None


class ModelPool:
    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._embedders: dict[str, Embedder] = {}
        self._rerankers: dict[str, Reranker] = {}
        self._loading_since: dict[str, float] = {}

    # -- embedders -----------------------------------------------------------------------

    def embedder(self, config: EmbedderConfig) -> Embedder:
        key = config.model_dump_json()
        with self._lock:
            if key not in self._embedders:
                self._embedders[key] = create_embedder(config)
            return self._embedders[key]

    def has_embedder(self, config: EmbedderConfig) -> bool:
        return config.model_dump_json() in self._embedders

    # -- rerankers -----------------------------------------------------------------------

    def reranker(
        self, config: RerankerConfig, media: MediaConfig, embedder: EmbedderConfig
    ) -> Reranker:
        """The reranker of ``config``, created once; its model loads on the first score.
        A CLIP reranker shares the stage-one model ``embedder`` when it is in memory."""
        key = _reranker_key(config, media)
        with self._lock:
            if key not in self._rerankers:
                loaded = self._embedders.get(embedder.model_dump_json())
                shared = {"embedder": loaded} if loaded is not None else {}
                self._rerankers[key] = create_reranker(config, media=media, **shared)
            return self._rerankers[key]

    def load_reranker(
        self, config: RerankerConfig, media: MediaConfig, embedder: EmbedderConfig
    ) -> None:
        """Load the model now; concurrent callers wait for the one load."""
        reranker = self.reranker(config, media, embedder)
        key = _reranker_key(config, media)
        with self._lock:
            if getattr(reranker, "loaded", False):
                return
            self._loading_since[key] = time.monotonic()
            try:
                reranker.load()  # type: ignore[attr-defined]
            finally:
                del self._loading_since[key]

    def unload_reranker(self, config: RerankerConfig, media: MediaConfig) -> None:
        with self._lock:
            reranker = self._rerankers.get(_reranker_key(config, media))
            if reranker is not None:
                reranker.unload()  # type: ignore[attr-defined]

    def reranker_status(self, config: RerankerConfig, media: MediaConfig) -> RerankerStatus:
        """Whether the model is in memory; never waits for a load under way."""
        key = _reranker_key(config, media)
        since = self._loading_since.get(key)
        reranker = self._rerankers.get(key)
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


def _reranker_key(config: RerankerConfig, media: MediaConfig) -> str:
    return f"{config.model_dump_json()}|{media.model_dump_json()}"
