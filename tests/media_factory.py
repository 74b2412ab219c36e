"""Real media files for tests and benchmarks: images whose layout shows their orientation,
videos whose frames carry their own index, and a folder of broken files.

Video frames draw their index as a 4x4 grid of black/white cells (16 bits), which survives
lossy codecs, so a test can tell exactly which frame a sampler returned with frame_index().
"""

from __future__ import annotations

import io
import os
import struct
import wave
import zlib
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)
QUADRANTS = (RED, GREEN, BLUE, WHITE)
"""make_image colours: top-left, top-right, bottom-left, bottom-right."""

EXIF_ORIENTATION_TAG = 0x0112
_GRID = 4  # cells per side of the frame-index grid
_SAVE_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP",
                 ".gif": "GIF", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF"}  # fmt: skip


# --- images ----------------------------------------------------------------------------


def quadrant_image(size: tuple[int, int] = (64, 48)) -> Image.Image:
    width, height = size
    pixels = np.empty((height, width, 3), np.uint8)
    half_w, half_h = width // 2, height // 2
    pixels[:half_h, :half_w] = RED
    pixels[:half_h, half_w:] = GREEN
    pixels[half_h:, :half_w] = BLUE
    pixels[half_h:, half_w:] = WHITE
    return Image.fromarray(pixels)


def quadrant_colours(image: Image.Image) -> tuple[tuple[int, int, int], ...]:
    """Mean colour near the centre of each quadrant (top-left, top-right, bottom-left,
    bottom-right), rounded: robust to lossy compression at the borders."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float64)
    height, width = pixels.shape[:2]
    colours = []
    for row in (height // 4, 3 * height // 4):
        for col in (width // 4, 3 * width // 4):
            rows = slice(row - height // 8, row + height // 8)
            cols = slice(col - width // 8, col + width // 8)
            mean = pixels[rows, cols].reshape(-1, 3).mean(axis=0)
            colours.append(tuple(round(float(v)) for v in mean))
    return tuple(colours)


def make_image(
    path: Path,
    fmt: str | None = None,
    size: tuple[int, int] = (64, 48),
    exif_orientation: int | None = None,
    mode: str = "RGB",
) -> Path:
    """Save a quadrant image (see QUADRANTS) in ``fmt`` (default: from the suffix),
    converted to ``mode``, optionally tagged with an EXIF orientation (1-8)."""
    fmt = fmt or _SAVE_FORMATS[path.suffix.lower()]
    image = quadrant_image(size).convert(mode)
    options: dict[str, object] = {}
    if exif_orientation is not None:
        exif = Image.Exif()
        exif[EXIF_ORIENTATION_TAG] = exif_orientation
        options["exif"] = exif
    if fmt == "WEBP":
        options["lossless"] = True
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=fmt, **options)
    return path


def make_animation(path: Path, colours: Sequence[tuple[int, int, int]], fmt: str = "GIF") -> Path:
    """An animated GIF or WebP whose frames are solid ``colours`` in order."""
    frames = [Image.new("RGB", (32, 24), colour) for colour in colours]
    options = {"lossless": True} if fmt == "WEBP" else {}
    frames[0].save(
        path, format=fmt, save_all=True, append_images=frames[1:], duration=100, loop=0, **options
    )
    return path


def make_png_bomb(path: Path, side: int) -> Path:
    """A valid 1-bit PNG of side x side black pixels: huge in pixels, tiny on disk.

    Written chunk by chunk, because PIL would need the whole image in memory and seconds
    to encode it.
    """
    row = bytes(1 + (side + 7) // 8)  # filter byte 0, then all-black pixels
    packer = zlib.compressobj(9)
    blocks, rest = divmod(side, 256)
    parts = [packer.compress(row * 256) for _ in range(blocks)]
    pixels = b"".join(parts) + packer.compress(row * rest) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    with path.open("wb") as handle:
        handle.write(b"\x89PNG\r\n\x1a\n")
        for kind, data in ((b"IHDR", header), (b"IDAT", pixels), (b"IEND", b"")):
            handle.write(struct.pack(">I", len(data)) + kind + data)
            handle.write(struct.pack(">I", zlib.crc32(kind + data)))
    return path


# --- videos ----------------------------------------------------------------------------


def make_video(
    path: Path,
    seconds: float = 2.0,
    fps: int = 25,
    size: tuple[int, int] = (64, 48),
    gop: int | None = None,
    codec: str = "libx264",
    frame_times: Sequence[float] | None = None,
    start: float = 0.0,
    rotation: int | None = None,
    texture: bool = False,
    options: dict[str, str] | None = None,
) -> list[float]:
    """Encode a video whose frame i shows the index i (read it back with frame_index).

    Frames come every 1/fps seconds for ``seconds``, or at the given ``frame_times``
    (variable frame rate). ``start`` shifts the first timestamp, ``gop`` fixes the keyframe
    spacing in frames (scene-cut keyframes off), ``rotation`` stores a counter-clockwise
    display rotation, ``texture`` adds moving noise so decoding costs what real footage
    does. Returns each frame's time in seconds from the first frame, in display order.
    """
    times = list(frame_times) if frame_times is not None else _regular_times(seconds, fps)
    ticks = Fraction(1, 1000) if frame_times is not None else Fraction(1, fps)
    width, height = size
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps, options=_codec_options(codec, gop, options))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = ticks
        if gop is not None:
            stream.gop_size = gop
        if rotation is not None:
            stream.set_display_rotation(rotation)
        texture_maker = _Texture(width, height) if texture else None
        offset = round(start / ticks)
        for index, seconds_at in enumerate(times):
            grey = _index_grey(index, width, height)
            if texture_maker is not None:
                grey = texture_maker.apply(grey, index)
            frame = av.VideoFrame.from_ndarray(grey, format="gray")
            frame.pts = offset + round(seconds_at / ticks)
            frame.time_base = ticks
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return [t - times[0] for t in times]


def frame_index(image: Image.Image) -> int:
    """The index a make_video frame shows (centre of each grid cell, thresholded)."""
    grey = np.asarray(image.convert("L"), dtype=np.float64)
    height, width = grey.shape
    cell_h, cell_w = height / _GRID, width / _GRID
    value = 0
    for bit in range(_GRID * _GRID):
        row, col = divmod(bit, _GRID)
        top, left = int((row + 0.25) * cell_h), int((col + 0.25) * cell_w)
        cell = grey[top : int((row + 0.75) * cell_h), left : int((col + 0.75) * cell_w)]
        if cell.mean() > 127:
            value |= 1 << bit
    return value


def _regular_times(seconds: float, fps: int) -> list[float]:
    return [i / fps for i in range(max(1, round(seconds * fps)))]


def _codec_options(codec: str, gop: int | None, extra: dict[str, str] | None) -> dict[str, str]:
    options: dict[str, str] = {}
    x26x_key = {"libx264": "x264-params", "libx265": "x265-params"}.get(codec)
    x26x: list[str] = []
    if gop is not None:
        # Encoders add keyframes at scene cuts, and every frame here is a "cut".
        if x26x_key:
            x26x.append(f"keyint={gop}:min-keyint={gop}:scenecut=0")
        elif codec.startswith("libvpx"):
            options["keyint_min"] = str(gop)
        else:
            options["sc_threshold"] = "1000000000"
    if codec == "libx265":
        x26x.append("log-level=error")  # x265 prints its settings to stderr otherwise
    if x26x_key and x26x:
        options[x26x_key] = ":".join(x26x)
    options.update(extra or {})
    return options


def _index_grey(index: int, width: int, height: int) -> np.ndarray:
    bits = (index >> np.arange(_GRID * _GRID)) & 1
    cells = (bits.reshape(_GRID, _GRID) * 255).astype(np.uint8)
    rows = np.arange(height) * _GRID // height
    cols = np.arange(width) * _GRID // width
    return cells[rows[:, None], cols[None, :]]


class _Texture:
    """Moving stripes plus grain: content that costs real bits to encode and decode.
    Shades stay within 0-87 of black or white, far from frame_index's threshold."""

    _NOISE_FRAMES = 8

    def __init__(self, width: int, height: int) -> None:
        rng = np.random.default_rng(0)
        ramp = (np.arange(width)[None, :] + np.arange(height)[:, None]) % 64
        self._ramp = ramp.astype(np.uint8)
        shape = (self._NOISE_FRAMES, height, width)
        self._noise = rng.integers(0, 24, size=shape, dtype=np.uint8)

    def apply(self, grey: np.ndarray, index: int) -> np.ndarray:
        shade = ((self._ramp + np.uint8(4 * index % 64)) & 63) + self._noise[
            index % self._NOISE_FRAMES
        ]
        return np.where(grey > 127, 255 - shade, shade)


# --- broken files -----------------------------------------------------------------------


def make_bad_files(directory: Path) -> dict[str, Path]:
    """Files no loader can use, by name: each has a suffix that promises media.

    ``unreadable.jpg`` (mode 000) is made only when not running as root, since root
    reads it anyway.
    """
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    files: dict[str, Path] = {}

    def add(name: str, data: bytes) -> None:
        files[name] = directory / name
        files[name].write_bytes(data)

    add("empty.jpg", b"")
    jpeg = _encoded(quadrant_image((256, 192)), "JPEG")
    add("truncated.jpg", jpeg[: len(jpeg) * 3 // 5])
    add("random.jpg", rng.bytes(4096))
    files["bomb.png"] = make_png_bomb(directory / "bomb.png", 12_000)
    add("text.png", b"This is a note, not a picture.\n")  # named as an image, holds text
    add("truncated.mp4", _truncated_video(directory))
    add("fake_header.mp4", b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + rng.bytes(2048))
    add("audio_only.avi", _wav_bytes())  # a real RIFF file, but sound only
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        add("unreadable.jpg", jpeg)
        files["unreadable.jpg"].chmod(0)
    return files


def _encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def _truncated_video(directory: Path) -> bytes:
    whole = directory / ".whole.mp4"
    make_video(whole, seconds=1.0, fps=10)
    data = whole.read_bytes()
    whole.unlink()
    return data[: len(data) // 2]


def _wav_bytes() -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as sound:
        sound.setnchannels(1)
        sound.setsampwidth(2)
        sound.setframerate(8000)
        sound.writeframes(bytes(16000))
    return buffer.getvalue()
