"""Data that crosses boundaries: assets, queries, sampled frames and search hits.

Every door (CLI, REST, Python) and both stages speak these types, so a document a
user hands the reranker is the same object the index stores and returns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Modality = Literal["text", "image", "video"]


class Frame(BaseModel):
    """One decoded video frame and where it sits in its video, in seconds."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    timestamp: float = Field(ge=0.0)
    image: Image.Image


VideoInput = Path | list[Path] | list[Frame] | list[Image.Image]
"""A video file, a list of frame image files, frames already sampled with their times, or
frame images without times."""


class Content(BaseModel):
    """Any mix of text, one image and one video: a query or a document."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    text: str | None = None
    image: Path | Image.Image | None = None
    video: VideoInput | None = None
    fps: float | None = Field(default=None, gt=0.0)

    @field_validator("text")
    @classmethod
    def _blank_text_is_none(cls, value: str | None) -> str | None:
        return value if value is not None and value.strip() else None

    @property
    def is_empty(self) -> bool:
        return self.text is None and self.image is None and self.video is None

    def modalities(self) -> list[Modality]:
        present: list[Modality] = []
        if self.video is not None:
            present.append("video")
        if self.image is not None:
            present.append("image")
        if self.text is not None:
            present.append("text")
        return present


class Query(Content):
    """What a user searches with."""


class Asset(Content):
    """One indexed item: a product, a photo, a clip, a PDF page, a passage."""

    id: str = Field(min_length=1)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _has_content(self) -> Asset:
        if self.is_empty:
            raise ValueError(f"asset {self.id!r} has no text, image or video")
        return self


class SearchHit(BaseModel):
    """One ranked result of stage one."""

    id: str
    score: float
    modality: Modality
    best_timestamp: float | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
