"""The baseline reranker: cosine of stage-one CLIP embeddings.

A document scores its best modality vector's cosine with the query (a video: its
best sampled frame), the rule stage one uses, so this backend shows what a second
stage adds over recall alone. Scores are raw cosines in [-1, 1]; it takes no
instruction, and ignores a request's image preprocessing (images go to CLIP as stage
one embeds them).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
from PIL import Image

from indexers.embedders import Embedder, create_embedder, embed_query
from pipeline.media import MediaError
from pipeline.media_inputs import content_frames, content_image, with_sampling
from pipeline.schema import Content
from pipeline.settings import MediaConfig
from rerankers.base import DocumentFailure, RerankerBase, ScoreOptions, ScoreReport
from rerankers.config import ClipRerankerConfig

logger = logging.getLogger(__name__)


class _ImageCosines:
    """Embeds images as they arrive, in batches, keeping only their cosines: memory
    holds one batch of decoded pictures (plus one document's frames), not them all."""

    def __init__(self, embedder: Embedder, query_vector: np.ndarray, batch_size: int) -> None:
        self._embedder = embedder
        self._query_vector = query_vector
        self._batch_size = batch_size
        self._pending: list[Image.Image] = []
        self._done: list[np.ndarray] = []
        self._count = 0

    def add(self, images: list[Image.Image]) -> list[int]:
        """Queue images; returns their rows in ``cosines()``."""
        rows = list(range(self._count, self._count + len(images)))
        self._count += len(images)
        self._pending.extend(images)
        if len(self._pending) >= self._batch_size:
            self._flush()
        return rows

    def cosines(self) -> np.ndarray:
        self._flush()
        return np.concatenate(self._done) if self._done else np.zeros(0, dtype=np.float32)

    def _flush(self) -> None:
        if self._pending:
            # Both sides are L2-normalised, so the inner product is the cosine.
            vectors = self._embedder.embed_images(self._pending)
            self._done.append(vectors @ self._query_vector)
            self._pending = []


class ClipReranker(RerankerBase):
    def __init__(
        self,
        config: ClipRerankerConfig,
        embedder: Embedder | None = None,
        media: MediaConfig | None = None,
    ) -> None:
        self.config = config
        self._media = media or config.media
        self._embedder = embedder
        self._owns_embedder = embedder is None

    @property
    def loaded(self) -> bool:
        return self._embedder is not None

    def load(self) -> None:
        if self._embedder is None:
            self._embedder = create_embedder(self.config.embedder)

    def unload(self) -> None:
        # A shared stage-one embedder belongs to the pipeline; only drop our own.
        if self._owns_embedder:
            self._embedder = None

    def _score(
        self, query: Content, documents: Sequence[Content], options: ScoreOptions
    ) -> ScoreReport:
        self.load()
        embedder = self._embedder
        assert embedder is not None
        media = with_sampling(self._media, options.fps, options.max_frames)
        try:
            query_vector = embed_query(embedder, query, media)
        except (MediaError, OSError) as exc:
            raise ValueError(f"query cannot be used: {exc}") from exc

        texts: list[str] = []
        text_rows: dict[int, int] = {}
        image_rows: dict[int, list[int]] = {}
        images = _ImageCosines(embedder, query_vector, self.config.embedder.batch_size)
        failures: list[DocumentFailure] = []
        for index, document in enumerate(documents):
            try:
                pictures = _pictures(document, media)
            except (MediaError, OSError, ValueError) as exc:
                # One unreadable document must not sink the others.
                failures.append(DocumentFailure(index=index, reason=str(exc)))
                continue
            image_rows[index] = images.add(pictures)
            if document.text is not None:
                text_rows[index] = len(texts)
                texts.append(document.text)

        text_cosines = embedder.embed_texts(texts) @ query_vector if texts else None
        image_cosines = images.cosines()
        scores = [math.nan] * len(documents)
        for index, rows in image_rows.items():
            candidates = [float(image_cosines[r]) for r in rows]
            if index in text_rows and text_cosines is not None:
                candidates.append(float(text_cosines[text_rows[index]]))
            scores[index] = max(candidates)
        return ScoreReport(scores=scores, failures=failures)


def _pictures(document: Content, media: MediaConfig) -> list[Image.Image]:
    """The document's image and sampled video frames, decoded."""
    if document.is_empty:
        raise ValueError("document has no text, image or video")
    pictures = [content_image(document, media)] if document.image is not None else []
    if document.video is not None:
        frames = content_frames(document, media)
        if not frames:
            raise ValueError("video yielded no frames")
        pictures += [frame.image for frame in frames]
    return pictures


__all__ = ["ClipReranker"]
