"""Video probing and frame sampling with PyAV.

A sample at time t is the first frame shown at or after t (the last frame for times past
the end), timed from the video's first frame. Seeking to the keyframe before each target
and decoding straight through give the same frames and pixels; which is cheaper depends
on how far apart keyframes are compared with how far apart the samples are, so ``auto``
reads the keyframe spacing (from the index or packet flags, without decoding) first.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np

from pipeline.media.errors import MediaError
from pipeline.media.images import DEFAULT_MAX_PIXELS
from pipeline.media.video_decode import (
    Decoder,
    Picked,
    SeekFailed,
    sample_by_seeking,
    sample_in_order,
)
from pipeline.media.video_probe import Probe, VideoInfo, open_video, probe
from pipeline.schema import Frame

logger = logging.getLogger(__name__)

Strategy = Literal["auto", "seek", "sequential"]

# auto seeks when keyframes are closer together than this many target spacings. A seek
# decodes half a keyframe interval per target on average, so the break-even is nearer 2;
# benchmarks/video_sampling.py measures both sides of it.
_SEEK_BELOW = 1.0


def probe_video(path: Path) -> VideoInfo:
    """Duration, rate, size, frame count and keyframe spacing of the video at ``path``."""
    with open_video(path) as (container, stream):
        return probe(container, stream).info


def is_video(path: Path) -> bool:
    """Whether ``path`` is a container we accept holding at least one video stream."""
    try:
        with open_video(path):
            return True
    except MediaError:
        return False


def sample_times(duration: float, fps: float, max_frames: int) -> list[float]:
    """Times ``i / fps`` before ``duration`` (always at least t=0), thinned uniformly to
    exactly ``max_frames`` when there are more."""
    if duration < 0 or not math.isfinite(duration):
        raise ValueError(f"duration must be a finite number >= 0, got {duration}")
    if fps <= 0 or not math.isfinite(fps):
        raise ValueError(f"fps must be a finite number > 0, got {fps}")
    if max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    count = max(1, math.ceil(duration * fps))
    while count > 1 and (count - 1) / fps >= duration:
        count -= 1
    while count / fps < duration:
        count += 1
    return [i / fps for i in thin_indices(count, max_frames)]


def thin_indices(count: int, max_count: int) -> list[int]:
    """``range(count)``, or exactly ``max_count`` of it spread uniformly when longer;
    the one thinning rule for decoded videos and lists of frame files alike."""
    if count <= max_count:
        return list(range(count))
    # floor(x + 0.5), not numpy's round-half-to-even, so the spacing stays even.
    spread = np.floor(np.linspace(0, count - 1, max_count) + 0.5).astype(int)
    return list(dict.fromkeys(spread.tolist()))


def sample_video(
    path: Path,
    fps: float = 1.0,
    max_frames: int = 64,
    strategy: Strategy = "auto",
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> list[Frame]:
    """Frames at ``fps`` (thinned to ``max_frames``) as RGB images with their timestamps.

    Targets that land on the same frame (sampling faster than the video's own rate, or
    past its end) give that frame once. Memory holds only the frames returned.
    """
    frames = frames_at(
        path, lambda info: sample_times(info.duration, fps, max_frames), strategy, max_pixels
    )
    distinct: list[Frame] = []
    for frame in frames:
        if not distinct or frame.timestamp != distinct[-1].timestamp:
            distinct.append(frame)
    return distinct


def frames_at(
    path: Path,
    times_of: Callable[[VideoInfo], list[float]],
    strategy: Strategy = "auto",
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> list[Frame]:
    """For each of ``times_of(info)`` (ascending seconds from the first frame, chosen once
    the header is read), the first frame shown at or after it, the last frame for times
    past the end: one frame per time, a frame repeated when times share it."""
    if strategy not in ("auto", "seek", "sequential"):
        raise ValueError(f"strategy must be auto, seek or sequential, got {strategy!r}")
    with open_video(path) as (container, stream):
        facts = probe(container, stream)
    info = facts.info
    if info.width * info.height > max_pixels:
        raise MediaError(
            path, f"{info.width}x{info.height} frames exceed the {max_pixels:,} pixel limit"
        )
    times = times_of(info)
    targets = [facts.clock.ticks(t) for t in times]
    picked = _decode_targets(path, facts, targets, _choose_strategy(strategy, info, times))
    chosen = iter(picked)
    current = next(chosen)
    frames: list[Frame] = []
    for target in targets:
        while current.ticks < target:
            following = next(chosen, None)
            if following is None:
                break
            current = following
        frames.append(Frame(timestamp=facts.clock.seconds(current.ticks), image=current.image))
    return frames


def _decode_targets(path: Path, facts: Probe, targets: list[int], chosen: Strategy) -> list[Picked]:
    """The picked frames (each once, in order; never empty), or MediaError."""
    logger.debug("%s: %d targets, %s decoding", path, len(targets), chosen)
    picked: list[Picked] | None = None
    with open_video(path) as (container, stream):
        decoder = Decoder(container, stream, facts)
        try:
            if chosen == "seek":
                picked = sample_by_seeking(decoder, targets, facts)
            else:
                picked = sample_in_order(decoder, targets)
        except SeekFailed as exc:
            logger.info("%s: cannot seek (%s); decoding in order instead", path, exc)
    if picked is None:
        with open_video(path) as (container, stream):
            decoder = Decoder(container, stream, facts)
            picked = sample_in_order(decoder, targets)
    if not picked:
        reason = f"no frame could be decoded ({decoder.first_error or 'empty stream'})"
        raise MediaError(path, reason)
    if decoder.bad_packets:
        logger.warning(
            "%s: skipped %d damaged packets (%s)", path, decoder.bad_packets, decoder.first_error
        )
    return picked


def _choose_strategy(strategy: Strategy, info: VideoInfo, times: list[float]) -> Strategy:
    if strategy != "auto":
        return strategy
    if len(times) < 2:
        return "sequential"
    # The spacing of the actual targets, so thinning a long video to max_frames counts.
    spacing = (times[-1] - times[0]) / (len(times) - 1)
    # A seek decodes from the keyframe before each target; that beats decoding every
    # frame in between when keyframes come more often than samples.
    return "seek" if info.keyframe_interval < _SEEK_BELOW * spacing else "sequential"
