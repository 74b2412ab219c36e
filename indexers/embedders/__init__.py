"""Embedder registry and query embedding."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from indexers.embedders.base import Embedder
from pipeline.config import EmbedderConfig, MediaConfig
from pipeline.schema import Content


def _open_clip(config: EmbedderConfig) -> Embedder:
    from indexers.embedders.open_clip import OpenClipEmbedder

    return OpenClipEmbedder(config)


EMBEDDERS: dict[str, Callable[[EmbedderConfig], Embedder]] = {"open_clip": _open_clip}


def create_embedder(config: EmbedderConfig) -> Embedder:
    try:
        factory = EMBEDDERS[config.backend]
    except KeyError:
        known = ", ".join(sorted(EMBEDDERS))
        raise ValueError(
            f"embedder.backend {config.backend!r} is unknown; choose one of {known}"
        ) from None
    return factory(config)


def embed_content(embedder: Embedder, content: Content, media: MediaConfig) -> list[np.ndarray]:
    """One vector per modality present (a video's is the mean of its frames)."""
    from pipeline.media_inputs import content_frames, content_image

    vectors: list[np.ndarray] = []
    if content.text is not None:
        vectors.append(embedder.embed_texts([content.text])[0])
    if content.image is not None:
        vectors.append(embedder.embed_images([content_image(content, media)])[0])
    if content.video is not None:
        frames = content_frames(content, media)
        vectors.append(_normalise(embedder.embed_images([f.image for f in frames]).mean(axis=0)))
    return vectors


def embed_query(embedder: Embedder, query: Content, media: MediaConfig) -> np.ndarray:
    """A query's vector: the normalised mean of its modality vectors."""
    if query.is_empty:
        raise ValueError("the query has no text, image or video")
    vectors = embed_content(embedder, query, media)
    return _normalise(np.mean(vectors, axis=0))


def _normalise(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return (vector / norm if norm > 0 else vector).astype(np.float32)


__all__ = ["EMBEDDERS", "Embedder", "create_embedder", "embed_content", "embed_query"]
