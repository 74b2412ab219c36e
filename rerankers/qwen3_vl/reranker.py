"""The Qwen3-VL reranker: relevance = P("yes") against "no" after the judging prompt.

score = sigmoid(h . (W_yes - W_no)), h the last position's final hidden state and W the
LM-head rows of the single tokens "yes" and "no" (equal to sigmoid(logit_yes - logit_no));
only that one projection is computed, never full-vocabulary logits.
"""

from __future__ import annotations

import copy
import gc
import importlib.util
import inspect
import logging
import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pipeline.hub import WEIGHT_FILES, quiet_loading, require_hub_model
from pipeline.schema import Content, Frame, VideoInput
from rerankers.base import DocumentFailure, RerankerBase, ScoreOptions, ScoreReport
from rerankers.preprocessing import ImagePreprocessing
from rerankers.qwen3_vl.batching import OUT_OF_MEMORY, BatchOutcome, score_in_batches
from rerankers.qwen3_vl.config import (
    CPU_BATCH_TOKENS,
    GPU_BATCH_TOKENS,
    Qwen3VLRerankerConfig,
)
from rerankers.qwen3_vl.encoding import EncodedPair, PairEncoder
from rerankers.qwen3_vl.patch_embed import use_linear_patch_projection
from rerankers.qwen3_vl.prefix import SharedPrefix, find_shared_prefix
from rerankers.qwen3_vl.prepare import (
    UNREADABLE,
    documents_visuals,
    resolve_workers,
    side_visuals,
    unreadable_reason,
)
from rerankers.qwen3_vl.prompt import build_messages
from rerankers.qwen3_vl.vision import VisionEncoder
from rerankers.qwen3_vl.visual import VisualInput, VisualPreprocessor, sampled_clip

logger = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_announced: set[str] = set()


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
    cache_name: str  # the forward's key-value cache argument and output field
    batch_tokens: int
    vision: VisionEncoder | None  # None: this transformers runs the vision tower itself


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

    @property
    def placement(self) -> tuple[str, str] | None:
        """(device, dtype) of the loaded model; None while not loaded."""
        runtime = self._runtime
        if runtime is None:
            return None
        return str(runtime.device), str(runtime.model.dtype).removeprefix("torch.")

    def load(self) -> None:
        self._load()

    def unload(self) -> None:
        was_cuda = self._runtime is not None and self._runtime.device.type == "cuda"
        self._runtime = None
        gc.collect()
        if was_cuda:
            torch.cuda.empty_cache()

    def _score(
        self, query: Content, documents: Sequence[Content], options: ScoreOptions
    ) -> ScoreReport:
        encoded, failures = self._encode(query, documents, options)
        repeats = _repeated_pairs(encoded) if self.config.dedupe else {}
        order = sorted(set(encoded) - set(repeats))
        pairs = [encoded[i] for i in order]
        prefix = self._shared_prefix(pairs)
        settled = len(documents) - len(pairs)  # unreadable, and repeats of another pair

        def report(outcome: BatchOutcome) -> None:
            done = settled + len(outcome.scores) + len(outcome.failures)
            options.progress(done, len(documents))

        outcome = score_in_batches(
            [len(pair) for pair in pairs],
            lambda batch: self._forward([pairs[j] for j in batch], prefix),
            self._load().batch_tokens,
            self.config.max_batch_size,
            release_memory=self._release_memory,
            on_batch=report,
        )
        scores = [math.nan] * len(documents)
        for position, score in outcome.scores.items():
            scores[order[position]] = score
        for position, reason in outcome.failures.items():
            failures[order[position]] = reason
        for index, first in repeats.items():
            scores[index] = scores[first]
            if first in failures:
                failures[index] = failures[first]
        return ScoreReport(
            scores=scores,
            failures=[DocumentFailure(index=i, reason=failures[i]) for i in sorted(failures)],
            tokens=sum(len(pair) for pair in encoded.values()),
        )

    def prompt_lengths(
        self,
        query: Content,
        documents: Sequence[Content],
        instruction: str | None = None,
        fps: float | None = None,
        max_frames: int | None = None,
        *,
        image: ImagePreprocessing | None = None,
    ) -> list[int | None]:
        """Tokens each pair feeds the model after truncation (None: unreadable document)."""
        options = ScoreOptions(instruction=instruction, fps=fps, max_frames=max_frames, image=image)
        encoded, _ = self._encode(query, documents, options)
        return [len(encoded[i]) if i in encoded else None for i in range(len(documents))]

    def sampled_frames(
        self, video: VideoInput, fps: float | None = None, max_frames: int | None = None
    ) -> list[Frame]:
        """The frames the model sees of ``video`` (``fps`` and ``max_frames`` as a request
        gives them, None: configured), each with the time the prompt gives it. A frame
        list's padding frame, which only repeats the last one to make the count even, is
        left out: it is no moment of the video. Loads no model; raises what an unreadable
        video raises."""
        clip = sampled_clip(
            video, fps or self.config.fps, max_frames or self.config.max_frames, self.config
        )
        count = len(clip.images) - int(clip.padded)
        return [
            Frame(timestamp=timestamp, image=image)
            for image, timestamp in zip(clip.images[:count], clip.timestamps[:count], strict=True)
        ]

    def _encode(
        self, query: Content, documents: Sequence[Content], options: ScoreOptions
    ) -> tuple[dict[int, EncodedPair], dict[int, str]]:
        runtime = self._load()
        fps = options.fps or self.config.fps
        max_frames = options.max_frames or self.config.max_frames
        instruction = options.instruction or self.config.instruction
        image = self.config.image_preprocessing if options.image is None else options.image
        try:
            query_visuals = side_visuals(runtime.visuals, query, fps, max_frames, image)
        except UNREADABLE as exc:
            raise ValueError(f"query cannot be used: {unreadable_reason(exc)}") from exc
        workers = resolve_workers(self.config.preprocess_workers)
        prepared = documents_visuals(runtime.visuals, documents, fps, max_frames, image, workers)
        encoded: dict[int, EncodedPair] = {}
        failures: dict[int, str] = {}
        for index, (document, visuals) in enumerate(zip(documents, prepared, strict=True)):
            if isinstance(visuals, str):
                failures[index] = visuals
                continue
            try:
                messages = build_messages(instruction, query, document)
                encoded[index] = runtime.encoder.encode(messages, query_visuals + visuals)
            except UNREADABLE as exc:
                failures[index] = unreadable_reason(exc)
        return encoded, failures

    @torch.inference_mode()
    def _shared_prefix(self, pairs: list[EncodedPair]) -> _PrefixState | None:
        """Run the start all pairs share once; None when off, absent or out of memory."""
        runtime = self._load()
        if not self.config.share_prefix:
            return None
        config = runtime.model.config
        shared = find_shared_prefix(
            pairs, config.image_token_id, config.video_token_id, runtime.encoder.merge_length
        )
        if shared is None:
            return None
        first = pairs[0]
        positions = self._positions(self._collate([first]))[..., : shared.length]
        ids = torch.tensor([first.input_ids[: shared.length]], device=runtime.device)
        try:
            output = runtime.model(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                position_ids=positions,
                use_cache=True,
                **self._visual_inputs(first.visuals[: shared.visual_count]),
            )
        except OUT_OF_MEMORY:
            self._release_memory()
            logger.warning("out of memory on the shared prompt start; scoring full prompts")
            return None
        return _PrefixState(shared, output[runtime.cache_name])

    @torch.inference_mode()
    def _forward(self, pairs: list[EncodedPair], prefix: _PrefixState | None) -> list[float]:
        runtime = self._load()
        inputs = self._collate(pairs)
        positions = self._positions(inputs)
        if prefix is None:
            tokens = {
                "input_ids": inputs["input_ids"],
                "attention_mask": inputs["attention_mask"],
                "position_ids": positions,
            }
            visuals = [visual for pair in pairs for visual in pair.visuals]
        else:
            pad_id = runtime.processor.tokenizer.pad_token_id
            tokens = _after_prefix(inputs, positions, prefix, pad_id, runtime.cache_name)
            visuals = [v for pair in pairs for v in pair.visuals[prefix.shared.visual_count :]]
        # With a shared start the cache must be on: the layers read the start's keys and
        # values from it.
        use_cache = prefix is not None
        output = runtime.model(**tokens, **self._visual_inputs(visuals), use_cache=use_cache)
        last = output.last_hidden_state[:, -1, :].float()
        return torch.sigmoid(last @ runtime.score_vector).tolist()

    def _collate(self, pairs: list[EncodedPair]) -> dict[str, torch.Tensor]:
        runtime = self._load()
        inputs = collate(
            pairs,
            pad_id=runtime.processor.tokenizer.pad_token_id,
            image_token_id=runtime.model.config.image_token_id,
            video_token_id=runtime.model.config.video_token_id,
        )
        return {name: tensor.to(runtime.device) for name, tensor in inputs.items()}

    def _positions(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Multimodal rope positions, explicit: with left padding (and after a shared
        prefix) every row then gets exactly the positions it would get alone."""
        runtime = self._load()
        rope_inputs = {
            key: inputs.get(key) for key in ("image_grid_thw", "video_grid_thw", "attention_mask")
        }
        if runtime.rope_takes_token_types:
            rope_inputs["mm_token_type_ids"] = inputs["mm_token_type_ids"]
        positions, _ = runtime.model.get_rope_index(inputs["input_ids"], **rope_inputs)
        return positions

    def _visual_inputs(self, visuals: list[VisualInput]) -> dict[str, Any]:
        """The vision tower's outputs for ``visuals`` (reused where already computed), or
        their pixels where this transformers cannot take outputs."""
        runtime = self._load()
        if not visuals:
            return {}
        if runtime.vision is not None:
            return {"mm_encoder_outputs": runtime.vision.encoder_outputs(visuals)}
        pixels = pixel_inputs(visuals)
        return {name: tensor.to(runtime.device) for name, tensor in pixels.items()}

    def _release_memory(self) -> None:
        if self._runtime is not None and self._runtime.vision is not None:
            self._runtime.vision.clear()
        gc.collect()
        if self._runtime is not None and self._runtime.device.type == "cuda":
            torch.cuda.empty_cache()

    def _load(self) -> _Runtime:
        if self._runtime is None:
            self._runtime = _load_runtime(self.config)
        return self._runtime


def _repeated_pairs(encoded: dict[int, EncodedPair]) -> dict[int, int]:
    """Index of each pair that repeats an earlier one -> that earlier pair's index."""
    first_of: dict[Hashable, int] = {}
    repeats = {}
    for index, pair in sorted(encoded.items()):
        first = first_of.setdefault(pair.identity, index)
        if first != index:
            repeats[index] = first
    return repeats


def collate(
    pairs: Sequence[EncodedPair], pad_id: int, image_token_id: int, video_token_id: int
) -> dict[str, torch.Tensor]:
    """Left-padded ids and mask, modality types, and the pairs' visual grids in prompt
    order: what the rope positions need. Patches go separately (:func:`pixel_inputs`),
    only where the model runs the vision tower itself."""
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
    return batch | grid_inputs([visual for pair in pairs for visual in pair.visuals])


def grid_inputs(visuals: Sequence[VisualInput]) -> dict[str, torch.Tensor]:
    """Grids of ``visuals``, per kind, in order."""
    grids = {}
    for kind, grid_key in (("image", "image_grid_thw"), ("video", "video_grid_thw")):
        chosen = [visual.grid_thw for visual in visuals if visual.kind == kind]
        if chosen:
            grids[grid_key] = torch.tensor(chosen)
    return grids


def pixel_inputs(visuals: Sequence[VisualInput]) -> dict[str, torch.Tensor]:
    """Patches and grids of ``visuals``, per kind, in order."""
    batch = grid_inputs(visuals)
    for kind, values_key in (("image", "pixel_values"), ("video", "pixel_values_videos")):
        chosen = [visual.pixel_values for visual in visuals if visual.kind == kind]
        if chosen:
            batch[values_key] = torch.cat(chosen)
    return batch


@dataclass(frozen=True)
class _PrefixState:
    shared: SharedPrefix
    past: Any  # the shared start's key/value cache, one row


def _after_prefix(
    inputs: dict[str, torch.Tensor],
    positions: torch.Tensor,
    prefix: _PrefixState,
    pad_id: int,
    cache_name: str,
) -> dict[str, Any]:
    """A left-padded batch cut to each row's own tokens, attending to the shared start.

    Rows are right-aligned, so the last ``width - length`` columns hold every row's own
    tokens (shorter rows also show some shared or padding columns there, which are masked
    and blanked). Their positions are those the full prompts get.
    """
    length = prefix.shared.length
    own_lengths = inputs["attention_mask"].sum(dim=1) - length
    ids = inputs["input_ids"][:, length:].clone()
    width = ids.shape[1]
    columns = torch.arange(width, device=ids.device)
    own = columns[None, :] >= (width - own_lengths)[:, None]
    ids[~own] = pad_id
    past = copy.deepcopy(prefix.past)
    past.batch_repeat_interleave(len(ids))
    shared_mask = torch.ones((len(ids), length), dtype=torch.long, device=ids.device)
    return {
        "input_ids": ids,
        "attention_mask": torch.cat([shared_mask, own.long()], dim=1),
        "position_ids": positions[..., length:],
        cache_name: past,
    }


def _load_runtime(config: Qwen3VLRerankerConfig) -> _Runtime:
    from transformers import AutoProcessor, Qwen3VLForConditionalGeneration

    path = config.model_path
    if config.model.startswith("local-dir:") and not Path(path).is_dir():
        raise FileNotFoundError(f"reranker model folder {path!r} does not exist")
    files = [("config.json",), WEIGHT_FILES, ("preprocessor_config.json",)]
    require_hub_model("reranker", path, "reranker.model", files)
    device = resolve_device(config.device)
    dtype = resolve_dtype(config.dtype, device)
    attention = resolve_attention(config.attn_implementation, device)
    _log_once(f"Qwen3-VL reranker: {attention} attention, {dtype} on {device}")
    kwargs: dict[str, Any] = {"dtype": dtype, "attn_implementation": attention}
    if config.load_in_4bit:
        kwargs.update(_four_bit_kwargs(dtype, device))
    with quiet_loading(path):
        full_model = Qwen3VLForConditionalGeneration.from_pretrained(path, **kwargs)
        processor = AutoProcessor.from_pretrained(path, padding_side="left", **_fast_images())
    if not config.load_in_4bit:
        full_model = full_model.to(device)
    full_model.eval()
    score_vector = _yes_minus_no(full_model, processor.tokenizer).to(device)
    # Keep only the decoder: an untied LM head (vocabulary x hidden) is freed here.
    model = full_model.model
    del full_model
    use_linear_patch_projection(model)
    parameters = inspect.signature(model.get_rope_index).parameters
    takes_encoder_outputs = "mm_encoder_outputs" in inspect.signature(model.forward).parameters
    return _Runtime(
        model=model,
        processor=processor,
        encoder=PairEncoder(processor, config.max_length),
        visuals=VisualPreprocessor(processor, config),
        score_vector=score_vector,
        device=device,
        rope_takes_token_types="mm_token_type_ids" in parameters,
        # transformers 5.24 renamed past_key_values to cache (the old name warns).
        cache_name=_cache_argument(model),
        batch_tokens=resolve_batch_tokens(config.max_batch_tokens, device),
        vision=VisionEncoder(model, config.vision_cache_bytes) if takes_encoder_outputs else None,
    )


def _fast_images() -> dict[str, Any]:
    """transformers 4.x picks the fast image processor by default and warns that it does
    on every load; asking for it by name is silent and changes nothing. 5 has no other
    kind and deprecates the flag."""
    from transformers import __version__

    return {"use_fast": True} if int(__version__.split(".")[0]) < 5 else {}


def _cache_argument(model: Any) -> str:
    # transformers 5.24 renamed the forward's past_key_values to cache; the old name warns.
    parameters = inspect.signature(model.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


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
