"""The Qwen3-VL reranker: relevance = P("yes") against "no" after the judging prompt.

score = sigmoid(h . (W_yes - W_no)), h the last position's final hidden state and W the
LM-head rows of the single tokens "yes" and "no" (equal to sigmoid(logit_yes - logit_no));
only that one projection is computed, never full-vocabulary logits.
"""

from __future__ import annotations

import gc
import importlib.util
import inspect
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pipeline import media
from pipeline.schema import Content
from rerankers.base import DocumentFailure, RerankerBase, ScoreReport
from rerankers.qwen3_vl.batching import score_in_batches
from rerankers.qwen3_vl.config import (
    CPU_BATCH_TOKENS,
    GPU_BATCH_TOKENS,
    Qwen3VLRerankerConfig,
)
from rerankers.qwen3_vl.encoding import EncodedPair, PairEncoder
from rerankers.qwen3_vl.prompt import build_messages
from rerankers.qwen3_vl.visual import VisualInput, VisualPreprocessor

logger = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_announced: set[str] = set()
_UNREADABLE = (media.MediaError, OSError, ValueError)


def _log_once(message: str) -> None:
    if message not in _announced:
        _announced.add(message)
        logger.info(message)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return _DTYPES[dtype]


def resolve_batch_tokens(setting: int | str, device: torch.device) -> int:
    if setting == "auto":
        return GPU_BATCH_TOKENS if device.type == "cuda" else CPU_BATCH_TOKENS
    return int(setting)


def resolve_attention(choice: str, device: torch.device) -> str:
    if choice != "auto":
        return choice
    if device.type == "cuda" and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


@dataclass
class _Runtime:
    model: Any  # Qwen3VLModel: the decoder without its LM head
    processor: Any
    encoder: PairEncoder
    visuals: VisualPreprocessor
    score_vector: torch.Tensor  # W_yes - W_no, float32
    device: torch.device
    rope_takes_token_types: bool
    batch_tokens: int


class Qwen3VLRerankerBackend(RerankerBase):
    """Scores (query, document) pairs with Qwen3-VL-Reranker; loads on first use."""

    def __init__(self, config: Qwen3VLRerankerConfig | None = None) -> None:
        self.config = config or Qwen3VLRerankerConfig()
        self._runtime: _Runtime | None = None

    @property
    def loaded(self) -> bool:
        return self._runtime is not None

    @property
    def model(self) -> Any:
        """The loaded Qwen3VLModel (decoder and vision tower); loads if needed."""
        return self._load().model

    @property
    def visual_preprocessor(self) -> VisualPreprocessor:
        return self._load().visuals

    def load(self) -> None:
        self._load()

    def unload(self) -> None:
        was_cuda = self._runtime is not None and self._runtime.device.type == "cuda"
        self._runtime = None
        gc.collect()
        if was_cuda:
            torch.cuda.empty_cache()

    def score_report(
        self,
        query: Content,
        documents: Sequence[Content],
        instruction: str | None = None,
        fps: float | None = None,
        max_frames: int | None = None,
    ) -> ScoreReport:
        if not documents:
            return ScoreReport(scores=[])
        encoded, failures = self._encode(query, documents, instruction, fps, max_frames)
        order = sorted(encoded)
        outcome = score_in_batches(
            [len(encoded[i]) for i in order],
            lambda batch: self._forward([encoded[order[j]] for j in batch]),
            self._load().batch_tokens,
            self.config.max_batch_size,
            release_memory=self._release_memory,
        )
        scores = [math.nan] * len(documents)
        for position, score in outcome.scores.items():
            scores[order[position]] = score
        for position, reason in outcome.failures.items():
            failures[order[position]] = reason
        return ScoreReport(
            scores=scores,
            failures=[DocumentFailure(index=i, reason=failures[i]) for i in sorted(failures)],
        )

    def prompt_lengths(
        self,
        query: Content,
        documents: Sequence[Content],
        instruction: str | None = None,
        fps: float | None = None,
        max_frames: int | None = None,
    ) -> list[int | None]:
        """Tokens each pair feeds the model after truncation (None: unreadable document)."""
        encoded, _ = self._encode(query, documents, instruction, fps, max_frames)
        return [len(encoded[i]) if i in encoded else None for i in range(len(documents))]

    def _encode(
        self,
        query: Content,
        documents: Sequence[Content],
        instruction: str | None,
        fps: float | None,
        max_frames: int | None,
    ) -> tuple[dict[int, EncodedPair], dict[int, str]]:
        runtime = self._load()
        fps = fps or self.config.fps
        max_frames = max_frames or self.config.max_frames
        instruction = instruction or self.config.instruction
        try:
            query_visuals = self._side_visuals(query, fps, max_frames)
        except _UNREADABLE as exc:
            raise ValueError(f"query cannot be used: {_reason(exc)}") from exc
        encoded: dict[int, EncodedPair] = {}
        failures: dict[int, str] = {}
        for index, document in enumerate(documents):
            try:
                visuals = query_visuals + self._side_visuals(document, fps, max_frames)
                messages = build_messages(instruction, query, document)
                encoded[index] = runtime.encoder.encode(messages, visuals)
            except _UNREADABLE as exc:
                failures[index] = _reason(exc)
        return encoded, failures

    def _side_visuals(self, side: Content, fps: float, max_frames: int) -> list[VisualInput]:
        # Same order as the prompt lays a side out: video, then image.
        preprocessor = self._load().visuals
        visuals = []
        if side.video is not None:
            visuals.append(preprocessor.video(side.video, side.fps or fps, max_frames))
        if side.image is not None:
            visuals.append(preprocessor.image(side.image))
        return visuals

    @torch.inference_mode()
    def _forward(self, pairs: list[EncodedPair]) -> list[float]:
        runtime = self._load()
        inputs = collate(
            pairs,
            pad_id=runtime.processor.tokenizer.pad_token_id,
            image_token_id=runtime.model.config.image_token_id,
            video_token_id=runtime.model.config.video_token_id,
        )
        inputs = {name: tensor.to(runtime.device) for name, tensor in inputs.items()}
        rope_inputs = {
            key: inputs.get(key) for key in ("image_grid_thw", "video_grid_thw", "attention_mask")
        }
        if runtime.rope_takes_token_types:
            rope_inputs["mm_token_type_ids"] = inputs["mm_token_type_ids"]
        else:
            inputs.pop("mm_token_type_ids")
        # Explicit positions: with left padding every row then gets exactly the
        # positions it would get alone.
        position_ids, _ = runtime.model.get_rope_index(inputs["input_ids"], **rope_inputs)
        output = runtime.model(**inputs, position_ids=position_ids, use_cache=False)
        last = output.last_hidden_state[:, -1, :].float()
        return torch.sigmoid(last @ runtime.score_vector).tolist()

    def _release_memory(self) -> None:
        gc.collect()
        if self._runtime is not None and self._runtime.device.type == "cuda":
            torch.cuda.empty_cache()

    def _load(self) -> _Runtime:
        if self._runtime is None:
            self._runtime = _load_runtime(self.config)
        return self._runtime


def collate(
    pairs: Sequence[EncodedPair], pad_id: int, image_token_id: int, video_token_id: int
) -> dict[str, torch.Tensor]:
    """Left-padded ids and mask, modality types, and the pairs' patches in prompt order."""
    width = max(len(pair) for pair in pairs)
    input_ids = torch.full((len(pairs), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(pairs), width), dtype=torch.long)
    for row, pair in enumerate(pairs):
        input_ids[row, width - len(pair) :] = torch.tensor(pair.input_ids, dtype=torch.long)
        attention_mask[row, width - len(pair) :] = 1
    token_types = torch.zeros_like(input_ids, dtype=torch.int)
    token_types[input_ids == image_token_id] = 1
    token_types[input_ids == video_token_id] = 2
    batch = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "mm_token_type_ids": token_types,
    }
    for kind, values_key, grid_key in (
        ("image", "pixel_values", "image_grid_thw"),
        ("video", "pixel_values_videos", "video_grid_thw"),
    ):
        visuals = [visual for pair in pairs for visual in pair.visuals if visual.kind == kind]
        if visuals:
            batch[values_key] = torch.cat([visual.pixel_values for visual in visuals])
            batch[grid_key] = torch.tensor([visual.grid_thw for visual in visuals])
    return batch


def _reason(exc: BaseException) -> str:
    if isinstance(exc, media.MediaError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _load_runtime(config: Qwen3VLRerankerConfig) -> _Runtime:
    from transformers import AutoProcessor, Qwen3VLForConditionalGeneration

    path = config.model_path
    if config.model.startswith("local-dir:") and not Path(path).is_dir():
        raise FileNotFoundError(f"reranker model folder {path!r} does not exist")
    device = resolve_device(config.device)
    dtype = resolve_dtype(config.dtype, device)
    attention = resolve_attention(config.attn_implementation, device)
    _log_once(f"Qwen3-VL reranker: {attention} attention, {dtype} on {device}")
    kwargs: dict[str, Any] = {"dtype": dtype, "attn_implementation": attention}
    if config.load_in_4bit:
        kwargs.update(_four_bit_kwargs(dtype, device))
    full_model = Qwen3VLForConditionalGeneration.from_pretrained(path, **kwargs)
    if not config.load_in_4bit:
        full_model = full_model.to(device)
    full_model.eval()
    processor = AutoProcessor.from_pretrained(path, padding_side="left")
    score_vector = _yes_minus_no(full_model, processor.tokenizer).to(device)
    # Keep only the decoder: an untied LM head (vocabulary x hidden) is freed here.
    model = full_model.model
    del full_model
    parameters = inspect.signature(model.get_rope_index).parameters
    return _Runtime(
        model=model,
        processor=processor,
        encoder=PairEncoder(processor, config.max_length),
        visuals=VisualPreprocessor(processor, config),
        score_vector=score_vector,
        device=device,
        rope_takes_token_types="mm_token_type_ids" in parameters,
        batch_tokens=resolve_batch_tokens(config.max_batch_tokens, device),
    )


def _yes_minus_no(full_model: Any, tokenizer: Any) -> torch.Tensor:
    ids = []
    for word in ("yes", "no"):
        pieces = tokenizer.encode(word, add_special_tokens=False)
        if len(pieces) != 1:
            raise ValueError(f"the tokenizer splits {word!r} into {len(pieces)} tokens; need one")
        ids.append(pieces[0])
    weight = full_model.get_output_embeddings().weight
    return (weight[ids[0]].float() - weight[ids[1]].float()).detach().clone()


def _four_bit_kwargs(dtype: torch.dtype, device: torch.device) -> dict[str, Any]:
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ImportError("load_in_4bit needs bitsandbytes: pip install 'vlsearch[quant]'")
    from transformers import BitsAndBytesConfig

    quantization = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype
    )
    return {"quantization_config": quantization, "device_map": {"": str(device)}}
