"""The reference's image rules: the size an image is resized to, and how it becomes RGB."""

from __future__ import annotations

import math

from PIL import Image

from rerankers.qwen3_vl.config import GRID_UNIT

_MAX_ASPECT_RATIO = 200


def smart_resize(
    height: int, width: int, min_pixels: int, max_pixels: int, factor: int = GRID_UNIT
) -> tuple[int, int]:
    """Snap to the ``factor``-pixel grid, keep the aspect ratio, and keep height x width
    within [min_pixels, max_pixels].

    Written out rather than imported: transformers' variant differs for images smaller
    than one grid unit, and scores must match the reference's.
    """
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
    """RGB as the reference converts: RGBA flattened onto white; any other mode, palette
    transparency and grey + alpha included, converted by PIL, which drops the alpha."""
    if image.mode == "RGBA":
        canvas = Image.new("RGB", image.size, (255, 255, 255))
        canvas.paste(image, mask=image.getchannel("A"))
        return canvas
    return image.convert("RGB")
