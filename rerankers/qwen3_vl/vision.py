"""The vision tower's output per image or video, computed once and reused.

The tower reads each image or video on its own (its attention never crosses from one
visual to the next), so its output for a visual is the same whichever prompt or batch the
visual appears in. A query image is therefore encoded once for all the documents it is
paired with, an image several documents share once, and a document seen in an earlier
request not at all, while it stays in the bounded cache. The outputs go to the model
through ``mm_encoder_outputs``; transformers releases without that argument get pixels
and run the tower themselves, as before.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from rerankers.qwen3_vl.visual import BoundedCache, VisualInput, visual_identity


@dataclass(frozen=True)
class VisionFeatures:
    merged: torch.Tensor
    """[tokens, hidden]: what replaces the visual's placeholder tokens."""
    deepstack: tuple[torch.Tensor, ...]
    """Per deepstack layer, [tokens, hidden]: added to the decoder's early hidden states."""

    @property
    def nbytes(self) -> int:
        tensors = (self.merged, *self.deepstack)
        return sum(t.element_size() * t.nelement() for t in tensors)


class VisionEncoder:
    def __init__(self, model: Any, max_bytes: int) -> None:
        self.model = model  # Qwen3VLModel
        self.cache: BoundedCache[VisionFeatures] = BoundedCache(max_bytes)

    def encoder_outputs(self, visuals: Sequence[VisualInput]) -> dict[str, Any]:
        """``mm_encoder_outputs`` for a forward whose prompts hold ``visuals`` in order."""
        from transformers.models.qwen3_vl.modeling_qwen3_vl import (
            BaseModelOutputWithDeepstackFeatures,
        )

        features = self.features(visuals)
        outputs = {}
        for kind in ("image", "video"):
            chosen = [f for v, f in zip(visuals, features, strict=True) if v.kind == kind]
            if chosen:
                layers = range(len(chosen[0].deepstack))
                outputs[kind] = BaseModelOutputWithDeepstackFeatures(
                    pooler_output=tuple(f.merged for f in chosen),
                    deepstack_features=[tuple(f.deepstack[i] for f in chosen) for i in layers],
                )
        return outputs

    def features(self, visuals: Sequence[VisualInput]) -> list[VisionFeatures]:
        """One entry per visual; each distinct visual goes through the tower at most once."""
        found: dict[Hashable, VisionFeatures] = {}
        missing: dict[Hashable, VisualInput] = {}
        for visual in visuals:
            key = visual_identity(visual)
            if key in found or key in missing:
                continue
            cached = self.cache.get(key) if visual.key is not None else None
            if cached is not None:
                found[key] = cached
            else:
                missing[key] = visual
        for kind in ("image", "video"):
            todo = {key: v for key, v in missing.items() if v.kind == kind}
            if todo:
                found.update(zip(todo, self._encode(kind, list(todo.values())), strict=True))
        for key, visual in missing.items():
            if visual.key is not None:
                self.cache.put(key, found[key])
        return [found[visual_identity(visual)] for visual in visuals]

    def _encode(self, kind: str, visuals: list[VisualInput]) -> list[VisionFeatures]:
        device = self.model.device
        pixels = torch.cat([visual.pixel_values for visual in visuals]).to(device)
        grids = torch.tensor([visual.grid_thw for visual in visuals], device=device)
        tower = self.model.get_image_features if kind == "image" else self.model.get_video_features
        output = tower(pixels, grids, return_dict=True)
        per_layer = output.deepstack_features
        return [
            VisionFeatures(merged, tuple(layer[i] for layer in per_layer))
            for i, merged in enumerate(output.pooler_output)
        ]

    def clear(self) -> None:
        self.cache.clear()
