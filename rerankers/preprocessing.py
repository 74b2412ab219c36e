"""How a request's images are brought into shape before the model's own resizing: the
study knobs (target size, letterbox or centre crop, resampling filter, blur).

A request may carry its own settings, so trying another preprocessing needs no second
reranker (and no second copy of the model in memory); a backend's config holds the
value used when a request brings none. Video frames are never touched: these knobs
are for images only.
"""

from __future__ import annotations

from typing import Literal

from PIL import Image, ImageFilter, ImageOps
from pydantic import BaseModel, ConfigDict, Field, model_validator

ResizeMode = Literal["none", "fit", "crop"]
Resample = Literal["bicubic", "bilinear", "nearest"]

PIL_FILTERS: dict[Resample, Image.Resampling] = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
}


# The fields, shared with the backends' configs that hold the value a request lacks.
TARGET_SIZE = Field(
    default=None,
    description="[width, height] images are brought to before the processor's own resizing.",
)
RESIZE_MODE = Field(
    default="none",
    description="'fit' letterboxes into target_size, 'crop' centre-crops to it, "
    "'none' leaves images as they are.",
)
RESAMPLE = Field(default="bicubic", description="Filter of the target_size step.")
BLUR_SIGMA = Field(default=None, gt=0.0, description="Gaussian blur (standard deviation, pixels).")


class ImagePreprocessing(BaseModel):
    """Applied to every image of a request, query and documents alike. Frozen, so it
    can key the caches of preprocessed images."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    target_size: tuple[int, int] | None = TARGET_SIZE
    resize_mode: ResizeMode = RESIZE_MODE
    resample: Resample = RESAMPLE
    blur_sigma: float | None = BLUR_SIGMA

    @model_validator(mode="after")
    def _check(self) -> ImagePreprocessing:
        if self.resize_mode != "none" and self.target_size is None:
            raise ValueError(f"resize_mode {self.resize_mode!r} needs target_size [width, height]")
        if self.target_size is not None and min(self.target_size) < 1:
            raise ValueError("target_size must be two positive integers [width, height]")
        return self


def apply_user_preprocessing(image: Image.Image, preprocessing: ImagePreprocessing) -> Image.Image:
    """Bring to target_size (letterbox or centre crop), then blur."""
    if preprocessing.resize_mode != "none" and preprocessing.target_size is not None:
        size = (int(preprocessing.target_size[0]), int(preprocessing.target_size[1]))
        method = PIL_FILTERS[preprocessing.resample]
        if preprocessing.resize_mode == "fit":
            image = ImageOps.pad(image, size, method=method, color=(0, 0, 0))
        else:
            image = ImageOps.fit(image, size, method=method)
    if preprocessing.blur_sigma is not None:
        image = image.filter(ImageFilter.GaussianBlur(radius=preprocessing.blur_sigma))
    return image


__all__ = [
    "PIL_FILTERS",
    "ImagePreprocessing",
    "Resample",
    "ResizeMode",
    "apply_user_preprocessing",
]
