"""Still images: sniffing and decoding to upright RGB, with decompression bombs refused."""

from __future__ import annotations

import io
import logging
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pipeline.media._files import os_error_reason, require_content
from pipeline.media.errors import MediaError

logger = logging.getLogger(__name__)

DEFAULT_MAX_PIXELS = 89_478_485
"""Same as PIL's own default ``Image.MAX_IMAGE_PIXELS`` (about 0.25 GB as 24-bit RGB)."""

IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
"""PIL plugins we accept (JPEG includes multi-picture MPO files from phones). Naming them
keeps PIL's weak-signature formats (TGA, XBM...) from claiming arbitrary bytes."""

_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})

# warnings.catch_warnings swaps process-wide state; the lock keeps our own concurrent
# opens from restoring each other's filters. It is held only while PIL reads the header.
_WARNINGS_LOCK = threading.Lock()


def load_image(source: Path | bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode a JPEG, PNG, WebP, GIF, BMP or TIFF to a fully loaded, upright RGB image.

    Animated images give their first frame. Images over ``max_pixels`` are refused from
    their header, before any pixel is decoded; PIL's own hard limit (twice its global
    ``Image.MAX_IMAGE_PIXELS``) refuses larger ones whatever ``max_pixels`` says. Anything
    unusable raises MediaError.
    """
    image = decode_image(source, max_pixels)
    item = _item(source)
    try:
        return _to_rgb(_upright(image, item))
    except Exception as exc:
        raise MediaError(item, f"corrupt image data ({type(exc).__name__}: {exc})") from None


def decode_image(source: Path | bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """As :func:`load_image`, but the pixels as stored: mode, alpha and EXIF orientation
    untouched (the reranker converts them as its reference does)."""
    item = _item(source)
    if isinstance(source, Path):
        require_content(source)
    elif not source:
        raise MediaError(item, "empty image data (0 bytes)")
    try:
        with _open(source) as image:
            _refuse_bomb(image, max_pixels, item)
            image.load()
            return image
    except MediaError:
        raise
    except UnidentifiedImageError:
        raise MediaError(item, f"not a supported image ({', '.join(IMAGE_FORMATS)})") from None
    except Image.DecompressionBombError as exc:
        raise MediaError(item, f"refused as a possible decompression bomb ({exc})") from None
    except OSError as exc:
        raise MediaError(item, _os_or_decode_reason(exc)) from None
    except Exception as exc:
        # PIL plugins raise many types (SyntaxError, ValueError, struct.error, EOFError...)
        # on malformed data; to the caller they all mean "this file is broken".
        raise MediaError(item, f"corrupt image data ({type(exc).__name__}: {exc})") from None


def _item(source: Path | bytes) -> str:
    return str(source) if isinstance(source, Path) else f"<{len(source)} bytes>"


def is_image(path: Path) -> bool:
    """Whether the content of ``path`` opens as one of IMAGE_FORMATS (header only)."""
    try:
        with _open(path):
            return True
    except Image.DecompressionBombError:
        return True  # an image, and load_image will refuse it
    except PermissionError:
        raise MediaError(path, "permission denied") from None
    except Exception:
        return False


@contextmanager
def _open(source: Path | bytes) -> Iterator[Image.Image]:
    fp = source if isinstance(source, Path) else io.BytesIO(source)
    with _WARNINGS_LOCK, warnings.catch_warnings():
        # PIL warns above its own global limit; our max_pixels check is the one that
        # decides (it equals PIL's limit by default and may be set higher on purpose).
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        image = Image.open(fp, formats=IMAGE_FORMATS)
    with image:
        yield image


def _refuse_bomb(image: Image.Image, max_pixels: int, item: str) -> None:
    width, height = image.size
    pixels = width * height
    if pixels > max_pixels:
        raise MediaError(
            item,
            f"{width}x{height} image has {pixels:,} pixels, over the {max_pixels:,} limit "
            "(possible decompression bomb)",
        )


def _upright(image: Image.Image, item: str) -> Image.Image:
    try:
        return ImageOps.exif_transpose(image)
    except Exception as exc:
        # A broken EXIF block should not cost the picture itself.
        logger.warning("%s: ignoring unreadable EXIF orientation (%s)", item, exc)
        return image


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in _SIXTEEN_BIT_MODES or image.mode == "F":
        image = _to_8bit_grey(image)
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        # Transparent pixels often hide black; show them on white, as viewers do.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _to_8bit_grey(image: Image.Image) -> Image.Image:
    """PIL's own conversion clips 16-bit and float greys at 255, turning them white."""
    values = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        finite = values[np.isfinite(values)]
        scale = 255.0 if finite.size and finite.max() <= 1.0 else 1.0
    else:
        scale = 255.0 / 65535.0
    grey = np.clip(np.nan_to_num(values * scale), 0, 255).round().astype(np.uint8)
    return Image.fromarray(grey)


def _os_or_decode_reason(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError):
        return os_error_reason(exc)
    message = str(exc)
    if "truncated" in message:
        return f"truncated image data ({message})"
    return f"cannot decode image ({message})"
