"""Images and videos turned into Qwen3-VL vision patches, decoded once and cached.

The resizing follows the published reference (qwen-vl-utils as the reranker script
calls it): sizes snap to the 32-pixel grid within a pixel budget; images are resized
with PIL's bicubic filter, video frames with torchvision's antialiased bicubic, and
the processor then only rescales, normalises and patchifies (``do_resize=False``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Literal, Protocol, TypeVar

import numpy as np
import torch
from PIL import Image, ImageFilter, ImageOps

from pipeline import media
from pipeline.schema import Frame, VideoInput
from rerankers.qwen3_vl.config import GRID_UNIT, Qwen3VLRerankerConfig

_MAX_ASPECT_RATIO = 200
_FRAME_FACTOR = 2  # frames go to the vision tower in pairs (temporal patch size)

_PIL_FILTERS = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
}


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


def smart_resize(height: int, width: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """The reference's rule: snap to the 32-pixel grid, keep the aspect ratio, and keep
    height x width within [min_pixels, max_pixels].

    Written out rather than imported: transformers' variant differs for images smaller
    than one grid unit, and scores must match the reference's.
    """
    factor = GRID_UNIT
    if max(height, width) / min(height, width) > _MAX_ASPECT_RATIO:
        raise ValueError(
            f"aspect ratio {max(height, width) / min(height, width):.0f}:1 exceeds "
            f"{_MAX_ASPECT_RATIO}:1"
        )
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = math.floor(height / beta / factor) * factor
        w_bar = math.floor(width / beta / factor) * factor
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB, with transparency flattened onto white as the reference does."""
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return image.convert("RGB")


def apply_user_preprocessing(image: Image.Image, config: Qwen3VLRerankerConfig) -> Image.Image:
    """The study knobs: bring to target_size (letterbox or centre crop), then blur."""
    if config.resize_mode != "none" and config.target_size is not None:
        size = (int(config.target_size[0]), int(config.target_size[1]))
        method = _PIL_FILTERS[config.resample]
        if config.resize_mode == "fit":
            image = ImageOps.pad(image, size, method=method, color=(0, 0, 0))
        else:
            image = ImageOps.fit(image, size, method=method)
    if config.blur_sigma is not None:
        image = image.filter(ImageFilter.GaussianBlur(radius=config.blur_sigma))
    return image


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

    def frames(self, frames: Sequence[Path] | Sequence[Frame]) -> str:
        hasher = hashlib.blake2b(digest_size=16)
        for frame in frames:
            if isinstance(frame, Frame):
                hasher.update(f"{frame.timestamp!r}".encode())
                hasher.update(self.image(frame.image).encode())
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

    def image(self, source: Path | Image.Image) -> VisualInput:
        cfg = self.config
        settings = (
            cfg.min_pixels,
            cfg.max_pixels,
            cfg.max_image_pixels,
            cfg.target_size,
            cfg.resize_mode,
            cfg.resample,
            cfg.blur_sigma,
        )
        if isinstance(source, Image.Image):
            key = ("image", self.hasher.image(source), settings)
        else:
            key = ("image", self.hasher.file(Path(source)), settings)
        return self._once(key, lambda: self._prepare_image(source))

    def video(self, source: VideoInput, fps: float, max_frames: int) -> VisualInput:
        cfg = self.config
        settings = (
            fps,
            max_frames,
            cfg.frame_min_pixels,
            cfg.frame_max_pixels,
            cfg.total_pixels,
            cfg.max_image_pixels,
        )
        if isinstance(source, list):
            key = ("frames", self.hasher.frames(source), settings)
        else:
            key = ("video", self.hasher.file(Path(source)), settings)
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

    def _prepare_image(self, source: Path | Image.Image) -> VisualInput:
        cfg = self.config
        if isinstance(source, Image.Image):
            image = to_rgb(source)
        else:
            image = to_rgb(media.load_image(Path(source), max_pixels=cfg.max_image_pixels))
        image = apply_user_preprocessing(image, cfg)
        height, width = smart_resize(image.height, image.width, cfg.min_pixels, cfg.max_pixels)
        # PIL's default filter, as the reference's fetch_image resizes.
        image = image.resize((width, height), Image.Resampling.BICUBIC)
        out = self.image_processor(images=[image], do_resize=False, return_tensors="pt")
        grid = tuple(int(v) for v in out["image_grid_thw"][0])
        return VisualInput("image", out["pixel_values"], grid)  # type: ignore[arg-type]

    def _prepare_video(self, source: VideoInput, fps: float, max_frames: int) -> VisualInput:
        frames = self._frames(source, fps, max_frames)
        if not frames:
            raise media.MediaError(_describe(source), "no frames could be sampled")
        video = _stack_rgb([frame.image for frame in frames])
        height, width = smart_resize(
            video.shape[-2],
            video.shape[-1],
            self.config.frame_min_pixels,
            self._frame_budget(len(frames)),
        )
        # The reference resizes the whole clip with antialiased bicubic and keeps floats.
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as tvf

        video = tvf.resize(
            video, [height, width], interpolation=InterpolationMode.BICUBIC, antialias=True
        ).float()
        out = self.video_processor(
            videos=[video],
            do_resize=False,
            do_sample_frames=False,
            return_tensors="pt",
            **self._no_resize_flags,
        )
        grid = tuple(int(v) for v in out["video_grid_thw"][0])
        timestamps = tuple(float(frame.timestamp) for frame in frames)
        return VisualInput("video", out["pixel_values_videos"], grid, timestamps)  # type: ignore[arg-type]

    def _frame_budget(self, n_frames: int) -> int:
        """Per-frame pixel ceiling: the video's total budget shared by its (paired) frames."""
        cfg = self.config
        padded = math.ceil(n_frames / _FRAME_FACTOR) * _FRAME_FACTOR
        share = cfg.total_pixels / padded * _FRAME_FACTOR
        return int(max(min(cfg.frame_max_pixels, share), int(cfg.frame_min_pixels * 1.05)))

    def _frames(self, source: VideoInput, fps: float, max_frames: int) -> list[Frame]:
        cfg = self.config
        if not isinstance(source, list):
            return media.sample_video(
                Path(source), fps=fps, max_frames=max_frames, max_pixels=cfg.max_image_pixels
            )
        chosen = thin_uniformly(len(source), max_frames)
        frames: list[Frame] = []
        for index in chosen:
            item = source[index]
            if isinstance(item, Frame):
                frames.append(Frame(timestamp=item.timestamp, image=to_rgb(item.image)))
            else:
                # A list of frame files is taken as sampled at the request's fps.
                image = media.load_image(Path(item), max_pixels=cfg.max_image_pixels)
                frames.append(Frame(timestamp=index / fps, image=to_rgb(image)))
        return frames


def thin_uniformly(count: int, max_count: int) -> list[int]:
    """Indices of at most max_count items spread evenly over count (the reference's rule)."""
    if count <= max_count:
        return list(range(count))
    return np.linspace(0, count - 1, max_count, dtype=int).tolist()


def _stack_rgb(images: Sequence[Image.Image]) -> torch.Tensor:
    """uint8 (frames, 3, H, W); frames of another size are brought to the first one's."""
    size = images[0].size
    arrays = [
        np.asarray(image if image.size == size else image.resize(size, Image.Resampling.BICUBIC))
        for image in images
    ]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def _describe(source: VideoInput) -> str:
    if isinstance(source, list):
        return f"list of {len(source)} frames"
    return str(source)
