"""Each side's images and videos, decoded and preprocessed, in prompt order (video, then
image); a request's documents on a thread pool.

Decoding, resizing and patchifying are CPU work that releases the GIL (PIL, PyAV, torch).
A 900x1200 photo takes 30-50 ms of it on one core (benchmarks/rerank_preprocess.py), so a
request of 100 candidates not seen before spends seconds here before the model starts; on
a GPU server that, not the forward passes, bounds it. So the distinct images and videos of
a request's documents (a photo several documents share counts once) are prepared in
parallel.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from pipeline import media
from pipeline.schema import Content
from rerankers.preprocessing import ImagePreprocessing
from rerankers.qwen3_vl.config import AUTO_PREPROCESS_WORKERS
from rerankers.qwen3_vl.visual import VisualInput, VisualPreprocessor

UNREADABLE = (media.MediaError, OSError, ValueError)
"""What an unreadable image or video raises: that document fails, the others go on."""


def unreadable_reason(exc: BaseException) -> str:
    if isinstance(exc, media.MediaError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def resolve_workers(setting: int | str) -> int:
    if setting == "auto":
        return min(AUTO_PREPROCESS_WORKERS, os.cpu_count() or 1)
    return int(setting)


def side_visuals(
    preprocessor: VisualPreprocessor,
    side: Content,
    fps: float,
    max_frames: int,
    image: ImagePreprocessing,
) -> list[VisualInput]:
    """``side``'s visuals, prepared here; raises what an unreadable one raises."""
    return [job() for _, job in _jobs_of(preprocessor, side, fps, max_frames, image)]


def documents_visuals(
    preprocessor: VisualPreprocessor,
    documents: Sequence[Content],
    fps: float,
    max_frames: int,
    image: ImagePreprocessing,
    workers: int,
) -> list[list[VisualInput] | str]:
    """Per document, its visuals (images brought into shape by ``image``), or why one
    of them cannot be read."""
    jobs: dict[Hashable, Callable[[], VisualInput]] = {}
    plans: list[list[Hashable]] = []
    for document in documents:
        own = _jobs_of(preprocessor, document, fps, max_frames, image)
        for key, job in own:
            jobs.setdefault(key, job)
        plans.append([key for key, _ in own])
    done = _run(jobs, workers)
    results: list[list[VisualInput] | str] = []
    for keys in plans:
        reasons = [done[key] for key in keys if isinstance(done[key], str)]
        results.append(reasons[0] if reasons else [done[key] for key in keys])  # type: ignore[misc]
    return results


def _jobs_of(
    preprocessor: VisualPreprocessor,
    side: Content,
    fps: float,
    max_frames: int,
    image: ImagePreprocessing,
) -> list[tuple[Hashable, Callable[[], VisualInput]]]:
    # Video frames are sampled and resized as a clip; the image preprocessing never
    # touches them.
    jobs: list[tuple[Hashable, Callable[[], VisualInput]]] = []
    if side.video is not None:
        video_fps = side.fps or fps  # a document's own fps wins over the request's
        key = ("video", _source_identity(side.video), video_fps)
        jobs.append((key, partial(preprocessor.video, side.video, video_fps, max_frames)))
    if side.image is not None:
        key = ("image", _source_identity(side.image), image)
        jobs.append((key, partial(preprocessor.image, side.image, image)))
    return jobs


def _source_identity(source: object) -> Hashable:
    # Files by path (two documents naming one file share its job); in-memory images and
    # frame lists by object. Equal content under other names is still decoded once: the
    # preprocessor's cache is keyed by content.
    if isinstance(source, os.PathLike):
        return ("path", os.fspath(source))
    return ("object", id(source))


def _run(
    jobs: dict[Hashable, Callable[[], VisualInput]], workers: int
) -> dict[Hashable, VisualInput | str]:
    if workers <= 1 or len(jobs) <= 1:
        return {key: _attempt(job) for key, job in jobs.items()}
    with ThreadPoolExecutor(min(workers, len(jobs)), thread_name_prefix="vlsearch-visual") as pool:
        return dict(zip(jobs, pool.map(_attempt, jobs.values()), strict=True))


def _attempt(job: Callable[[], VisualInput]) -> VisualInput | str:
    try:
        return job()
    except UNREADABLE as exc:
        return unreadable_reason(exc)
