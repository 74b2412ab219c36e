"""Images and videos turned into Qwen3-VL vision patches, decoded once and cached.

The resizing follows the published reference (qwen-vl-utils as the reranker script
calls it): sizes snap to the 32-pixel grid within a pixel budget; images are resized
with PIL's bicubic filter; a video's frames are chosen as the reference chooses them
(:mod:`rerankers.qwen3_vl.video_frames`) and resized as one clip with torchvision's
antialiased bicubic; the processor then only rescales, normalises and patchifies
(``do_resize=False``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Literal, Protocol, TypeVar

import numpy as np
import torch
from PIL import Image

from pipeline import media
from pipeline.schema import Frame, VideoInput
from rerankers.preprocessing import ImagePreprocessing, apply_user_preprocessing
from rerankers.qwen3_vl.config import Qwen3VLRerankerConfig
from rerankers.qwen3_vl.sizing import smart_resize, to_rgb
from rerankers.qwen3_vl.video_frames import FRAME_FACTOR, Clip, file_clip, frame_list_clip


@dataclass(frozen=True)
class VisualInput:
    """One image or video as the model takes it: flattened patches and their grid."""

    kind: Literal["image", "video"]
    pixel_values: torch.Tensor
    grid_thw: tuple[int, int, int]
    timestamps: tuple[float, ...] = ()
    """Seconds of each sampled frame (videos only)."""
    key: Hashable = None
    """What the input was made from (content hash and settings): equal keys, equal inputs."""

    @property
    def nbytes(self) -> int:
        return self.pixel_values.element_size() * self.pixel_values.nelement()


def visual_identity(visual: VisualInput) -> Hashable:
    """Equal for visuals that are the same input. Inputs made outside the preprocessor
    carry no key: they are told apart by object identity (and never cached)."""
    return visual.key if visual.key is not None else ("object", id(visual))


class _Sized(Protocol):
    @property
    def nbytes(self) -> int: ...


Item = TypeVar("Item", bound=_Sized)


class BoundedCache(Generic[Item]):
    """Least-recently-used store, bounded by its items' bytes; safe to share between the
    threads that prepare a request's visuals."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.hits = 0
        self.misses = 0
        self._items: OrderedDict[Hashable, Item] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Hashable) -> Item | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return None
            self.hits += 1
            self._items.move_to_end(key)
            return item

    def put(self, key: Hashable, item: Item) -> None:
        with self._lock:
            if item.nbytes > self.max_bytes or key in self._items:
                return
            self._items[key] = item
            self._bytes += item.nbytes
            while self._bytes > self.max_bytes:
                _, evicted = self._items.popitem(last=False)
                self._bytes -= evicted.nbytes

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0


class ContentHasher:
    """Digests of files and in-memory images; a file is re-read only when it changes."""

    def __init__(self) -> None:
        self._file_digests: dict[tuple[str, int, int], str] = {}

    def file(self, path: Path) -> str:
        try:
            stat = path.stat()
        except OSError as exc:
            raise media.MediaError(str(path), f"cannot read file ({exc.strerror})") from None
        stamp = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        digest = self._file_digests.get(stamp)
        if digest is None:
            hasher = hashlib.blake2b(digest_size=16)
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    hasher.update(block)
            digest = self._file_digests[stamp] = hasher.hexdigest()
        return digest

    @staticmethod
    def image(image: Image.Image) -> str:
        hasher = hashlib.blake2b(digest_size=16)
        hasher.update(f"{image.mode}{image.size}".encode())
        hasher.update(image.tobytes())
        return hasher.hexdigest()

    def frames(self, frames: Sequence[Path] | Sequence[Image.Image] | Sequence[Frame]) -> str:
        hasher = hashlib.blake2b(digest_size=16)
        for frame in frames:
            if isinstance(frame, Frame):
                hasher.update(f"{frame.timestamp!r}".encode())
                hasher.update(self.image(frame.image).encode())
            elif isinstance(frame, Image.Image):
                hasher.update(self.image(frame).encode())
            else:
                hasher.update(self.file(Path(frame)).encode())
        return hasher.hexdigest()


class VisualPreprocessor:
    """Decodes, resizes and patchifies images and videos for one loaded processor."""

    def __init__(self, processor: Any, config: Qwen3VLRerankerConfig) -> None:
        self.image_processor = processor.image_processor
        self.video_processor = processor.video_processor
        self.config = config
        self.cache: BoundedCache[VisualInput] = BoundedCache(config.cache_bytes)
        self.hasher = ContentHasher()
        self._in_flight: dict[Hashable, Future[VisualInput]] = {}
        self._in_flight_lock = threading.Lock()
        # Newer transformers warn unless told whether to cap frame pixels; we resize
        # ourselves, so the cap never applies.
        self._no_resize_flags = (
            {"cap_pixels_per_frame": False}
            if hasattr(self.video_processor, "cap_pixels_per_frame")
            else {}
        )

    def image(
        self, source: Path | Image.Image, preprocessing: ImagePreprocessing | None = None
    ) -> VisualInput:
        """An image brought into shape by ``preprocessing`` (None: the configured one)."""
        cfg = self.config
        chosen = cfg.image_preprocessing if preprocessing is None else preprocessing
        # Keyed by the preprocessing in effect, so requests that differ in it never
        # share (or overwrite) each other's prepared images.
        settings = (cfg.min_pixels, cfg.max_pixels, cfg.max_image_pixels, chosen)
        if isinstance(source, Image.Image):
            key = ("image", self.hasher.image(source), settings)
        else:
            key = ("image", self.hasher.file(Path(source)), settings)
        return self._once(key, lambda: self._prepare_image(source, chosen))

    def video(self, source: VideoInput, fps: float, max_frames: int) -> VisualInput:
        """A video file sampled at ``fps`` up to ``max_frames``; a list of frames as the
        reference takes one, whatever the fps and thinned to the configured max_frames
        (see :mod:`rerankers.qwen3_vl.video_frames`)."""
        cfg = self.config
        if isinstance(source, list):
            key = (
                "frames",
                self.hasher.frames(source),
                (cfg.max_frames, cfg.frame_min_pixels, cfg.frame_max_pixels, cfg.total_pixels),
            )
        else:
            key = (
                "video",
                self.hasher.file(Path(source)),
                (
                    fps,
                    max_frames,
                    cfg.frame_min_pixels,
                    cfg.frame_max_pixels,
                    cfg.file_total_pixels,
                ),
            )
        return self._once(key, lambda: self._prepare_video(source, fps, max_frames))

    def _once(self, key: Hashable, prepare: Callable[[], VisualInput]) -> VisualInput:
        """The cached input for ``key``, else ``prepare()``'s, prepared by one thread
        while any other thread asking for the same content waits for it."""
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        with self._in_flight_lock:
            pending = self._in_flight.get(key)
            if pending is None:
                pending = self._in_flight[key] = Future()
                owner = True
            else:
                owner = False
        if not owner:
            return pending.result()  # raises what the preparing thread raised
        try:
            item = dataclasses.replace(prepare(), key=key)
            self.cache.put(key, item)
            pending.set_result(item)
            return item
        except BaseException as exc:
            pending.set_exception(exc)
            raise
        finally:
            with self._in_flight_lock:
                del self._in_flight[key]

    def _prepare_image(
        self, source: Path | Image.Image, preprocessing: ImagePreprocessing
    ) -> VisualInput:
        cfg = self.config
        if isinstance(source, Image.Image):
            image = to_rgb(source)
        else:
            image = to_rgb(media.decode_image(Path(source), max_pixels=cfg.max_image_pixels))
        image = apply_user_preprocessing(image, preprocessing)
        height, width = smart_resize(image.height, image.width, cfg.min_pixels, cfg.max_pixels)
        # PIL's default filter, as the reference's fetch_image resizes.
        image = image.resize((width, height), Image.Resampling.BICUBIC)
        out = self.image_processor(images=[image], do_resize=False, return_tensors="pt")
        grid = tuple(int(v) for v in out["image_grid_thw"][0])
        return VisualInput("image", out["pixel_values"], grid)  # type: ignore[arg-type]

    def _prepare_video(self, source: VideoInput, fps: float, max_frames: int) -> VisualInput:
        cfg = self.config
        clip = sampled_clip(source, fps, max_frames, cfg)
        budget = cfg.total_pixels if isinstance(source, list) else cfg.file_total_pixels
        width, height = clip.images[0].size
        height, width = smart_resize(
            height, width, cfg.frame_min_pixels, self._frame_ceiling(budget, len(clip.images))
        )
        video = torch.from_numpy(np.stack([np.asarray(image) for image in clip.images]))
        # The reference resizes the whole clip with antialiased bicubic and keeps floats.
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as tvf

        video = tvf.resize(
            video.permute(0, 3, 1, 2),
            [height, width],
            interpolation=InterpolationMode.BICUBIC,
            antialias=True,
        ).float()
        out = self.video_processor(
            videos=[video],
            do_resize=False,
            do_sample_frames=False,
            return_tensors="pt",
            **self._no_resize_flags,
        )
        grid = tuple(int(v) for v in out["video_grid_thw"][0])
        return VisualInput("video", out["pixel_values_videos"], grid, clip.timestamps)  # type: ignore[arg-type]

    def _frame_ceiling(self, total_pixels: int, n_frames: int) -> int:
        """Per-frame pixel ceiling: the video's budget shared by its (even) frames."""
        cfg = self.config
        share = total_pixels / n_frames * FRAME_FACTOR
        return int(max(min(cfg.frame_max_pixels, share), int(cfg.frame_min_pixels * 1.05)))


def sampled_clip(
    source: VideoInput, fps: float, max_frames: int, config: Qwen3VLRerankerConfig
) -> Clip:
    """The frames the model takes of a video: a file sampled at ``fps`` up to
    ``max_frames``; a list of frames thinned to the configured max_frames, whatever the
    fps (see :mod:`rerankers.qwen3_vl.video_frames`)."""
    if isinstance(source, list):
        if not source:
            raise media.MediaError(_describe(source), "no frames given")
        return frame_list_clip(source, config.max_frames, config.max_image_pixels)
    return file_clip(Path(source), fps, max_frames, config.max_image_pixels)


def _describe(source: VideoInput) -> str:
    if isinstance(source, list):
        return f"list of {len(source)} frames"
    return str(source)
