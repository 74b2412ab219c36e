"""A video's frames and their times, chosen as the published reference chooses them.

The reference (``Qwen3VLReranker`` with qwen-vl-utils 0.0.14) takes two roads, and
scores only agree with it when each is followed exactly:

* **A video file** keeps ``round(duration x fps)`` frames, at least 4 and at most
  ``max_frames`` (both made even, and never more than the video has), spread evenly
  over the frame indices (``linspace(0, frames - 1, n)``, rounded half to even). A
  frame's time is its index over the video's average rate. The file's pixel budget is
  qwen-vl-utils' own default, not the reranker's ``total_pixels``: the script passes
  that budget with frame lists only.
* **A list of frames** (files or images) is thinned to the reranker's ``max_frames``
  (a request's ``max_frames`` does not apply to it there), and each frame is first
  resized on its own as an image: snapped to a 64-pixel grid (qwen-vl-utils hands the
  merged-patch size, 32, to a function that doubles it again) within 4 to 16,384 such
  units, with PIL's bicubic filter. The list is padded to an even length with its last
  frame, and frame ``i`` is timed ``i / 2`` seconds: qwen-vl-utils' ``sample_fps``
  default, whatever the request's fps. Frames that carry their own times
  (:class:`~pipeline.schema.Frame`) keep them; the padding frame repeats the last time.

Either way the clip, a stack of equal-size frames, is then resized as a whole with the
video budget (:meth:`VisualPreprocessor._prepare_video`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pipeline import media
from pipeline.schema import Frame
from rerankers.qwen3_vl.config import GRID_UNIT
from rerankers.qwen3_vl.sizing import smart_resize, to_rgb

FRAME_FACTOR = 2
"""Frames go to the vision tower in pairs (the temporal patch size)."""
_MIN_FILE_FRAMES = 4
_FRAME_LIST_FPS = 2.0
_FRAME_LIST_GRID = 2 * GRID_UNIT
_FRAME_LIST_MIN_UNITS = 4
_FRAME_LIST_MAX_UNITS = 16384


@dataclass(frozen=True)
class Clip:
    """Frames ready for the video resize: RGB images of one size, an even count."""

    images: list[Image.Image]
    timestamps: tuple[float, ...]
    padded: bool = False
    """The last frame only repeats the one before it, added to make the count even."""


def file_frame_count(total_frames: int, video_fps: float, fps: float, max_frames: int) -> int:
    """How many frames the reference keeps of a video file (qwen-vl-utils' smart_nframes);
    ValueError where the reference refuses the video."""
    least = _ceil_even(_MIN_FILE_FRAMES)
    most = _floor_even(max_frames)
    wanted = total_frames / video_fps * fps
    count = _floor_even(min(max(wanted, least), most, total_frames))
    if not FRAME_FACTOR <= count <= total_frames:
        raise ValueError(
            f"{total_frames} frames at max_frames={max_frames} leave {count} to sample; "
            f"a video needs at least {FRAME_FACTOR}"
        )
    return count


def file_frame_indices(total_frames: int, count: int) -> list[int]:
    """``count`` indices spread over the video, rounded as torch rounds (half to even),
    in float32 as the reference computes them."""
    return torch.linspace(0, total_frames - 1, count).round().long().tolist()


def file_clip(path: Path, fps: float, max_frames: int, max_image_pixels: int) -> Clip:
    """The reference's frames of a video file, with their times: each chosen frame's index
    over the average rate (which is also the time it is fetched at)."""
    times: list[float] = []

    def times_of(info: media.VideoInfo) -> list[float]:
        if info.avg_fps <= 0 or info.frame_count <= 0:
            raise media.MediaError(path, "the video states no frame rate or frame count")
        try:
            count = file_frame_count(info.frame_count, info.avg_fps, fps, max_frames)
        except ValueError as exc:
            raise media.MediaError(path, str(exc)) from None
        times.extend(i / info.avg_fps for i in file_frame_indices(info.frame_count, count))
        return times

    frames = media.frames_at(path, times_of, max_pixels=max_image_pixels)
    return Clip(_same_size([frame.image for frame in frames]), tuple(times))


def frame_list_clip(
    frames: Sequence[Path] | Sequence[Image.Image] | Sequence[Frame],
    max_frames: int,
    max_image_pixels: int,
) -> Clip:
    """The reference's frames of a list of frames, with their times."""
    kept = [frames[i] for i in thin_uniformly(len(frames), max_frames)]
    images = [_as_frame_image(_image_of(item, max_image_pixels)) for item in kept]
    timed = all(isinstance(item, Frame) for item in kept)
    times = [item.timestamp for item in kept] if timed else []  # type: ignore[union-attr]
    padded = len(images) % FRAME_FACTOR != 0
    if padded:
        images.append(images[-1])
        times.append(times[-1] if timed else 0.0)
    if not timed:
        times = [i / _FRAME_LIST_FPS for i in range(len(images))]
    return Clip(_same_size(images), tuple(times), padded)


def thin_uniformly(count: int, max_count: int) -> list[int]:
    """Indices of at most max_count items spread evenly over count, truncated to integers
    as the reference's ``numpy.linspace(..., dtype=int)`` truncates."""
    if count <= max_count:
        return list(range(count))
    return np.linspace(0, count - 1, max_count, dtype=int).tolist()


def _image_of(item: Path | Image.Image | Frame, max_image_pixels: int) -> Image.Image:
    if isinstance(item, Frame):
        return item.image
    if isinstance(item, Image.Image):
        return item
    return media.decode_image(Path(item), max_pixels=max_image_pixels)


def _as_frame_image(image: Image.Image) -> Image.Image:
    image = to_rgb(image)
    unit = _FRAME_LIST_GRID * _FRAME_LIST_GRID
    height, width = smart_resize(
        image.height,
        image.width,
        _FRAME_LIST_MIN_UNITS * unit,
        _FRAME_LIST_MAX_UNITS * unit,
        factor=_FRAME_LIST_GRID,
    )
    # PIL's default filter, as the reference's fetch_image resizes.
    return image.resize((width, height), Image.Resampling.BICUBIC)


def _same_size(images: list[Image.Image]) -> list[Image.Image]:
    """Frames of another size brought to the first one's (the reference cannot stack
    them and scores the pair as an empty prompt)."""
    size = images[0].size
    return [i if i.size == size else i.resize(size, Image.Resampling.BICUBIC) for i in images]


def _ceil_even(value: float) -> int:
    return math.ceil(value / FRAME_FACTOR) * FRAME_FACTOR


def _floor_even(value: float) -> int:
    return math.floor(value / FRAME_FACTOR) * FRAME_FACTOR
