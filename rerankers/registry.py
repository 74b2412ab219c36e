"""The reranker registry: ``backend:`` name -> factory. Registering a backend is one entry.

Factories import their backend on call, so optional dependencies load only when used.
Every factory takes the config plus what the pipeline can share (``embedder``: the
stage-one Embedder already in memory, ``media``: the pipeline's MediaConfig) and
keeps only what its backend needs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rerankers.base import Reranker
from rerankers.config import RerankerConfig

RerankerFactory = Callable[..., Reranker]


def _qwen3_vl(config: Any, **_shared: Any) -> Reranker:
    from rerankers.qwen3_vl.reranker import Qwen3VLRerankerBackend

    return Qwen3VLRerankerBackend(config)


def _clip(config: Any, *, embedder: Any = None, media: Any = None, **_shared: Any) -> Reranker:
    from rerankers.clip import ClipReranker

    return ClipReranker(config, embedder=embedder, media=media)


def _cross_encoder(config: Any, **_shared: Any) -> Reranker:
    from rerankers.cross_encoder import CrossEncoderReranker

    return CrossEncoderReranker(config)


def _vllm(config: Any, **_shared: Any) -> Reranker:
    from rerankers.vllm import VllmReranker

    return VllmReranker(config)


RERANKERS: dict[str, RerankerFactory] = {
    "qwen3_vl": _qwen3_vl,
    "clip": _clip,
    "cross_encoder": _cross_encoder,
    "vllm": _vllm,
}


def create_reranker(config: RerankerConfig, **shared: Any) -> Reranker:
    """Build the backend named by ``config.backend``; nothing heavy loads until it scores."""
    try:
        factory = RERANKERS[config.backend]
    except KeyError:
        known = ", ".join(sorted(RERANKERS))
        raise ValueError(
            f"reranker.backend {config.backend!r} is unknown; choose one of {known}"
        ) from None
    return factory(config, **shared)


__all__ = ["RERANKERS", "RerankerFactory", "create_reranker"]
