"""The calling convention of the published reranker script, on top of our backend.

Code written against QwenLM's ``Qwen3VLReranker`` keeps working::

    model = Qwen3VLReranker(model_name_or_path="Qwen/Qwen3-VL-Reranker-2B",
                            torch_dtype=torch.bfloat16)
    scores = model.process({"instruction": "...", "query": {"text": "a dog"},
                            "documents": [{"image": "dog.jpg"}, {"text": "a cat"}],
                            "fps": 1.0})

Items use the keys ``text``, ``image`` (a path or a PIL image) and ``video`` (a video
file, a list of frame files, or a list of PIL frames), and optionally ``fps``. Unlike
the script, the model loads on the first call, a document that cannot be read scores
NaN (and is logged) instead of being scored as an empty prompt, and each item holds at
most one image and one video.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from pipeline.schema import Content, Frame, VideoInput
from rerankers.base import ScoreReport
from rerankers.qwen3_vl.config import Qwen3VLRerankerConfig
from rerankers.qwen3_vl.reranker import Qwen3VLRerankerBackend

logger = logging.getLogger(__name__)

_ITEM_KEYS = frozenset({"text", "image", "video", "fps"})
_REQUEST_KEYS = frozenset({"instruction", "query", "documents", "fps", "max_frames"})
_DTYPE_NAMES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}
# The script's constructor names that differ from our config's.
_ALIASES = {"default_instruction": "instruction", "torch_dtype": "dtype"}


class Qwen3VLReranker:
    """Seed-compatible wrapper: ``process`` gives scores in document order, ``rank``
    the documents best first."""

    def __init__(
        self,
        model_name_or_path: str,
        torch_dtype: torch.dtype | str | None = None,
        **kwargs: Any,
    ) -> None:
        settings = {_ALIASES.get(key, key): value for key, value in kwargs.items()}
        unknown = sorted(set(settings) - set(Qwen3VLRerankerConfig.model_fields) - {"dtype"})
        if unknown:
            accepted = ", ".join(sorted(Qwen3VLRerankerConfig.model_fields))
            raise TypeError(f"unknown Qwen3VLReranker settings {unknown}; accepted: {accepted}")
        dtype = settings.pop("dtype", torch_dtype)
        if dtype is not None:
            settings["dtype"] = _DTYPE_NAMES.get(dtype, dtype)
        self.backend = Qwen3VLRerankerBackend(
            Qwen3VLRerankerConfig(model=str(model_name_or_path), **settings)
        )

    def process(self, inputs: Mapping[str, Any]) -> list[float]:
        return self._score(inputs).scores

    def rank(self, inputs: Mapping[str, Any]) -> list[dict[str, Any]]:
        documents = list(inputs.get("documents") or [])
        report = self._score(inputs)
        reasons = {failure.index: failure.reason for failure in report.failures}
        ranked = []
        for index, score in enumerate(report.scores):
            entry: dict[str, Any] = {"index": index, "score": score, "document": documents[index]}
            if index in reasons:
                entry["error"] = reasons[index]
            ranked.append(entry)
        # NaN (unreadable) last; ties keep document order.
        ranked.sort(
            key=lambda e: (math.isnan(e["score"]), 0.0 if math.isnan(e["score"]) else -e["score"])
        )
        return ranked

    def _score(self, inputs: Mapping[str, Any]) -> ScoreReport:
        unknown = sorted(set(inputs) - _REQUEST_KEYS)
        if unknown:
            raise ValueError(f"unknown request keys {unknown}; accepted: {sorted(_REQUEST_KEYS)}")
        fps = inputs.get("fps")
        query_item = inputs.get("query") or {}
        documents = inputs.get("documents") or []
        query = to_content(query_item, "query")
        if query.is_empty or not documents:
            return ScoreReport(scores=[])
        contents = [to_content(item, f"documents[{index}]") for index, item in enumerate(documents)]
        report = self.backend.score_report(
            query,
            contents,
            instruction=inputs.get("instruction"),
            fps=fps,
            max_frames=inputs.get("max_frames"),
        )
        for failure in report.failures:
            logger.warning("document %d not scored: %s", failure.index, failure.reason)
        return report


def to_content(item: Mapping[str, Any], name: str) -> Content:
    """A seed-format item as Content; errors name the item and the key."""
    if not isinstance(item, Mapping):
        raise ValueError(
            f"{name}: expected a dict with text/image/video, got {type(item).__name__}"
        )
    unknown = sorted(set(item) - _ITEM_KEYS)
    if unknown:
        raise ValueError(f"{name}: unknown keys {unknown}; accepted: {sorted(_ITEM_KEYS)}")
    return Content(
        text=item.get("text"),
        image=_image(item.get("image"), f"{name}.image"),
        video=_video(item.get("video"), f"{name}.video"),
        fps=item.get("fps"),
    )


def _path(value: str | Path, name: str) -> Path:
    text = str(value)
    if text.startswith(("http://", "https://")):
        raise ValueError(f"{name}: remote URLs are not fetched; download {text!r} first")
    return Path(text.removeprefix("file://"))


def _image(value: Any, name: str) -> Path | Image.Image | None:
    if isinstance(value, list):
        if len(value) != 1:
            raise ValueError(f"{name}: one image per item is supported, got {len(value)}")
        value = value[0]
    if value is None or isinstance(value, Image.Image):
        return value
    if isinstance(value, (str, Path)):
        return _path(value, name)
    raise ValueError(f"{name}: expected a path or a PIL image, got {type(value).__name__}")


def _video(value: Any, name: str) -> VideoInput | None:
    if value is None or isinstance(value, (str, Path)):
        return None if value is None else _path(value, name)
    if not isinstance(value, Sequence) or not value:
        raise ValueError(f"{name}: expected a video path or a non-empty list of frames")
    if all(isinstance(frame, Frame) for frame in value):
        return list(value)
    if all(isinstance(frame, Image.Image) for frame in value):
        return list(value)  # timed as the reference times a frame list
    if all(isinstance(frame, (str, Path)) for frame in value):
        return [_path(frame, f"{name}[{i}]") for i, frame in enumerate(value)]
    raise ValueError(f"{name}: frames must all be paths, PIL images or Frames")
