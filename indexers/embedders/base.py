"""The Embedder role: maps images and texts into one normalised vector space."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from PIL import Image


@runtime_checkable
class Embedder(Protocol):
    """Stage-one encoder. Every returned vector is float32 and L2-normalised, so an
    inner product is a cosine similarity."""

    @property
    def model_id(self) -> str:
        """Identifies the weights; an index built with one model refuses another."""
        ...

    @property
    def dim(self) -> int: ...

    @property
    def image_transform(self) -> Callable[[Image.Image], torch.Tensor]:
        """Picklable PIL -> tensor preprocessing, run in decode workers."""
        ...

    def embed_image_tensors(self, batch: torch.Tensor) -> np.ndarray:
        """Encode a stacked batch produced by ``image_transform``."""
        ...

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray: ...

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray: ...
