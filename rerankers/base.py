"""The Reranker role: scores (query, document) pairs; ``rank`` is written once on top."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from pipeline.schema import Content
from rerankers.preprocessing import ImagePreprocessing


class DocumentFailure(BaseModel):
    """A document that could not be scored, and why; the others are still scored."""

    index: int
    reason: str


class ScoreReport(BaseModel):
    """Scores in document order; a failed document's score is NaN."""

    scores: list[float]
    failures: list[DocumentFailure] = []
    tokens: int | None = None
    """Prompt tokens of the pairs scored (what a rerank API bills as usage); None for a
    backend that does not count them."""


Progress = Callable[[int, int], None]
"""Called as documents are scored: ``(done, total)``, ending with ``(total, total)``."""


def no_progress(done: int, total: int) -> None:
    """The progress callback of a caller that shows none."""


class ScoreOptions(BaseModel):
    """Per-request settings; None means the backend's configured value. ``instruction``
    states the task (backends that take none ignore it); ``fps`` is the video sampling
    rate for documents that set none of their own; ``max_frames`` caps the frames
    sampled per video; ``image`` brings the query's and documents' images into shape
    (backends that do not preprocess images ignore it); ``progress`` hears how many
    documents are done."""

    model_config = ConfigDict(frozen=True)

    instruction: str | None = None
    fps: float | None = None
    max_frames: int | None = None
    image: ImagePreprocessing | None = None
    progress: Progress = no_progress


class RankedDocument(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    index: int
    score: float
    document: Content
    error: str | None = None


@runtime_checkable
class Reranker(Protocol):
    """``instruction`` states the task (backends that take none ignore it); ``fps`` is
    the video sampling rate for documents that set none of their own; ``max_frames``
    caps the frames sampled per video; ``image`` brings images into shape before the
    model's own resizing (backends that do not preprocess images ignore it). None means
    the backend's configured value."""

    def score_report(
        self,
        query: Content,
        documents: Sequence[Content],
        instruction: str | None = None,
        fps: float | None = None,
        max_frames: int | None = None,
        progress: Progress | None = None,
        *,
        image: ImagePreprocessing | None = None,
    ) -> ScoreReport: ...

    def score(
        self,
        query: Content,
        documents: Sequence[Content],
        instruction: str | None = None,
        fps: float | None = None,
        max_frames: int | None = None,
        *,
        image: ImagePreprocessing | None = None,
    ) -> list[float]: ...

    def rank(
        self,
        query: Content,
        documents: Sequence[Content],
        top_k: int | None = None,
        instruction: str | None = None,
        fps: float | None = None,
        max_frames: int | None = None,
        *,
        image: ImagePreprocessing | None = None,
    ) -> list[RankedDocument]: ...


def best_first(scores: Sequence[float]) -> list[int]:
    """Indices of ``scores`` best first, failures (NaN) last; ties keep their order."""
    return sorted(
        range(len(scores)),
        key=lambda i: (math.isnan(scores[i]), 0.0 if math.isnan(scores[i]) else -scores[i]),
    )


def rank_report(
    report: ScoreReport, documents: Sequence[Content], top_k: int | None = None
) -> list[RankedDocument]:
    """Order scored documents best first, failures (NaN) last; ties keep document order."""
    reasons = {failure.index: failure.reason for failure in report.failures}
    ranked = [
        RankedDocument(index=i, score=report.scores[i], document=documents[i], error=reasons.get(i))
        for i in best_first(report.scores)
    ]
    return ranked if top_k is None else ranked[:top_k]


class RerankerBase:
    """Backends implement ``_score`` (called with at least one document); ``score_report``,
    ``score`` and ``rank`` follow from it."""

    def _score(
        self, query: Content, documents: Sequence[Content], options: ScoreOptions
    ) -> ScoreReport:
        raise NotImplementedError

    def score_report(
        self,
        query: Content,
        documents: Sequence[Content],
        instruction: str | None = None,
        fps: float | None = None,
        max_frames: int | None = None,
        progress: Progress | None = None,
        *,
        image: ImagePreprocessing | None = None,
    ) -> ScoreReport:
        """Scores in document order. ``progress`` hears ``(done, total)`` as backends that
        score in batches finish each, and ``(total, total)`` at the end from every one."""
        if not documents:
            return ScoreReport(scores=[])
        options = ScoreOptions(
            instruction=instruction,
            fps=fps,
            max_frames=max_frames,
            image=image,
            progress=progress or no_progress,
        )
        report = self._score(query, documents, options)
        options.progress(len(documents), len(documents))
        return report

    def score(
        self,
        query: Content,
        documents: Sequence[Content],
        instruction: str | None = None,
        fps: float | None = None,
        max_frames: int | None = None,
        *,
        image: ImagePreprocessing | None = None,
    ) -> list[float]:
        return self.score_report(
            query, documents, instruction=instruction, fps=fps, max_frames=max_frames, image=image
        ).scores

    def rank(
        self,
        query: Content,
        documents: Sequence[Content],
        top_k: int | None = None,
        instruction: str | None = None,
        fps: float | None = None,
        max_frames: int | None = None,
        *,
        image: ImagePreprocessing | None = None,
    ) -> list[RankedDocument]:
        report = self.score_report(
            query, documents, instruction=instruction, fps=fps, max_frames=max_frames, image=image
        )
        return rank_report(report, documents, top_k)
