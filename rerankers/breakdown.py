"""One candidate's score taken apart, for a detail view: every number is the reranker's
own score of something it was really given, never a sub-score made up after the fact.

Beside the whole document's score come its parts scored alone (its text, its image, its
video, when it has two or more of them) and, on request, each video frame the reranker
samples, scored as an image document, with its time. All of them go to the reranker in
one ``score_report`` call, so its batching and prefix sharing apply and one progress
count covers them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel

from pipeline.media import MediaError
from pipeline.media_inputs import content_frames, with_sampling
from pipeline.schema import Content, Frame, VideoInput
from pipeline.settings import MediaConfig
from rerankers.base import Progress, Reranker, ScoreReport
from rerankers.preprocessing import ImagePreprocessing

logger = logging.getLogger(__name__)

Part = Literal["text", "image", "video"]

_UNREADABLE = (MediaError, OSError, ValueError)
"""What sampling an unreadable video raises."""


class PartScore(BaseModel):
    """One part of the document scored as a document on its own."""

    part: Part
    score: float | None
    error: str | None = None


class FrameScore(BaseModel):
    """One sampled video frame scored as an image document; ``timestamp`` in seconds."""

    index: int
    timestamp: float
    score: float | None
    error: str | None = None


class Breakdown(BaseModel):
    whole: float | None
    whole_error: str | None = None
    parts: list[PartScore]
    """Each part scored alone; empty when the document has one part."""
    frames: list[FrameScore]
    """Empty unless frames were asked for and the document has a readable video."""
    best_moment: FrameScore | None
    """The best-scoring frame."""


@runtime_checkable
class FrameSampler(Protocol):
    """A backend that says which frames of a video it looks at."""

    def sampled_frames(
        self, video: VideoInput, fps: float | None, max_frames: int | None
    ) -> list[Frame]: ...


def explain(
    reranker: Reranker,
    query: Content,
    document: Content,
    *,
    instruction: str | None = None,
    fps: float | None = None,
    max_frames: int | None = None,
    image: ImagePreprocessing | None = None,
    frames: bool = False,
    progress: Progress | None = None,
    media: MediaConfig | None = None,
) -> Breakdown:
    """``document``'s score and its parts' scores, by ``reranker`` with these request
    settings. ``frames`` also scores every sampled frame of its video (one pair each):
    the frames the backend samples where it says (:class:`FrameSampler`), else those
    the pipeline's sampler takes (``content_frames``) with ``media`` (default settings
    where None) at the request's fps and max_frames. An unreadable document gives
    ``whole=None`` and its reason; a query that cannot be used raises ValueError."""
    (explained,) = explain_all(
        reranker,
        query,
        [document],
        instruction=instruction,
        fps=fps,
        max_frames=max_frames,
        image=image,
        frames=frames,
        progress=progress,
        media=media,
    )
    return explained


def explain_all(
    reranker: Reranker,
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
    media: MediaConfig | None = None,
) -> list[Breakdown]:
    """``explain`` for every document, in document order, all pairs in one
    ``score_report`` call (the wholes first). Without ``parts`` no part is scored alone:
    the wholes are then exactly a plain scoring of ``documents``."""
    plans = [
        _Plan(
            document_parts(document) if parts else [],
            _frames(reranker, document, fps, max_frames, media) if frames else [],
        )
        for document in documents
    ]
    extra = [content for plan in plans for content in plan.contents()]
    report = reranker.score_report(
        query,
        [*documents, *extra],
        instruction=instruction,
        fps=fps,
        max_frames=max_frames,
        progress=progress,
        image=image,
    )
    outcomes = _outcomes(report)
    wholes, rest = outcomes[: len(documents)], iter(outcomes[len(documents) :])
    return [plan.breakdown(whole, rest) for plan, whole in zip(plans, wholes, strict=True)]


@dataclass(frozen=True)
class _Plan:
    """What is scored for one document beside its whole."""

    parts: list[tuple[Part, Content]]
    sampled: list[Frame]

    def contents(self) -> list[Content]:
        return [
            *(content for _, content in self.parts),
            *(Content(image=frame.image) for frame in self.sampled),
        ]

    def breakdown(
        self,
        whole: tuple[float | None, str | None],
        rest: Iterator[tuple[float | None, str | None]],
    ) -> Breakdown:
        part_scores = [
            PartScore(part=part, score=score, error=error)
            for (part, _), (score, error) in zip(self.parts, rest, strict=False)
        ]
        frame_scores = [
            FrameScore(index=i, timestamp=frame.timestamp, score=score, error=error)
            for i, (frame, (score, error)) in enumerate(zip(self.sampled, rest, strict=False))
        ]
        return Breakdown(
            whole=whole[0],
            whole_error=whole[1],
            parts=part_scores,
            frames=frame_scores,
            best_moment=best_moment(frame_scores),
        )


def document_parts(document: Content) -> list[tuple[Part, Content]]:
    """Each of the document's text, image and video as a document of its own; none for
    a document of one part (its part alone is the whole)."""
    parts: list[tuple[Part, Content]] = []
    if document.text is not None:
        parts.append(("text", Content(text=document.text)))
    if document.image is not None:
        parts.append(("image", Content(image=document.image)))
    if document.video is not None:
        parts.append(("video", Content(video=document.video, fps=document.fps)))
    return parts if len(parts) >= 2 else []


def best_moment(frames: list[FrameScore]) -> FrameScore | None:
    """The best-scoring frame, the earliest of equals; None when no frame scored."""
    best: FrameScore | None = None
    for frame in frames:
        if frame.score is not None and (best is None or frame.score > (best.score or 0.0)):
            best = frame
    return best


def _frames(
    reranker: Reranker,
    document: Content,
    fps: float | None,
    max_frames: int | None,
    media: MediaConfig | None,
) -> list[Frame]:
    """The video's frames as the reranker samples them; none for a document without a
    video, or one whose video cannot be read (the whole's score says why)."""
    if document.video is None:
        return []
    video_fps = document.fps or fps  # a document's own fps wins, as in scoring
    try:
        if isinstance(reranker, FrameSampler):
            return reranker.sampled_frames(document.video, video_fps, max_frames)
        return content_frames(document, with_sampling(media or MediaConfig(), fps, max_frames))
    except _UNREADABLE as exc:
        logger.info("no frames to break down: %s", exc)
        return []


def _outcomes(report: ScoreReport) -> list[tuple[float | None, str | None]]:
    """Per document, its score or why it has none."""
    reasons = {failure.index: failure.reason for failure in report.failures}
    outcomes: list[tuple[float | None, str | None]] = []
    for index, score in enumerate(report.scores):
        if index in reasons:
            outcomes.append((None, reasons[index]))
        elif math.isnan(score):
            # A backend reports every failure; a NaN without one is still no score.
            outcomes.append((None, "the reranker gave no score"))
        else:
            outcomes.append((score, None))
    return outcomes


__all__ = ["Breakdown", "FrameSampler", "FrameScore", "PartScore", "explain", "explain_all"]
