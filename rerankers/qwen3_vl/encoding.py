"""A (query, document) pair as token ids: render, expand vision placeholders, truncate.

Expansion matches Qwen3VLProcessor's in transformers 4.57, the version the reference
pins: an image's ``<|image_pad|>`` becomes one pad per merged patch; a video's whole
``<|vision_start|><|video_pad|><|vision_end|>`` becomes, per pair of frames, the text
``<t seconds>`` and a ``<|vision_start|>pads<|vision_end|>`` block. (transformers 5
replaces the pad alone and keeps the outer start and end tokens around the blocks,
which changes every video's score.) Truncation matches
the reference's: the prompt before the assistant suffix keeps every special token and
the first ``max_length - specials`` other tokens; the suffix is always kept. Tokens
inside a video's expansion (its timestamps) are kept too, so a placeholder run is never
cut.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from rerankers.qwen3_vl.visual import VisualInput, visual_identity

ASSISTANT_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n"


@dataclass(frozen=True)
class EncodedPair:
    input_ids: list[int]
    visuals: list[VisualInput]

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def identity(self) -> Hashable:
        """Equal for pairs the model would see as the same input."""
        return tuple(self.input_ids), tuple(visual_identity(v) for v in self.visuals)


class PairEncoder:
    def __init__(self, processor: Any, max_length: int) -> None:
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.max_length = max_length
        self.image_token = processor.image_token
        self.video_token = processor.video_token
        self.vision_start = processor.vision_start_token
        self.vision_end = processor.vision_end_token
        self.merge_length = processor.image_processor.merge_size**2
        self.temporal_patch = processor.video_processor.temporal_patch_size
        self.special_ids = frozenset(self.tokenizer.all_special_ids)
        self.suffix_ids = self.tokenizer(ASSISTANT_SUFFIX)["input_ids"]
        wrapped_video = self.vision_start + self.video_token + self.vision_end
        self._placeholder = re.compile(
            "|".join(re.escape(t) for t in (self.image_token, wrapped_video, self.video_token))
        )

    def render(self, messages: list[dict[str, Any]]) -> str:
        return self.processor.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )

    def encode(self, messages: list[dict[str, Any]], visuals: Sequence[VisualInput]) -> EncodedPair:
        text, protected_spans = self.expand(self.render(messages), visuals)
        encoded = self.tokenizer(text, return_offsets_mapping=True)
        ids: list[int] = encoded["input_ids"]
        protected = [
            token in self.special_ids or _inside(offset, protected_spans)
            for token, offset in zip(ids, encoded["offset_mapping"], strict=True)
        ]
        if ids[-len(self.suffix_ids) :] != self.suffix_ids:
            raise ValueError(
                "prompt does not end with the assistant prompt; check the chat template"
            )
        return EncodedPair(self.truncate(ids, protected), list(visuals))

    def expand(
        self, text: str, visuals: Sequence[VisualInput]
    ) -> tuple[str, list[tuple[int, int]]]:
        """Replace each placeholder, in order, by its visual's token run; also return the
        character spans of video expansions, whose timestamp text must survive truncation."""
        pieces: list[str] = []
        spans: list[tuple[int, int]] = []
        remaining = iter(visuals)
        last = length = 0
        for match in self._placeholder.finditer(text):
            visual = next(remaining, None)
            kind = "image" if match.group() == self.image_token else "video"
            if visual is None or visual.kind != kind:
                raise ValueError(f"prompt placeholder {match.group()} has no matching {kind}")
            # A wrapped video placeholder is replaced whole, its start and end included.
            before = text[last : match.start()]
            run = self.image_run(visual) if kind == "image" else self.video_run(visual)
            pieces += [before, run]
            length += len(before)
            if kind == "video":
                spans.append((length, length + len(run)))
            length += len(run)
            last = match.end()
        if next(remaining, None) is not None:
            raise ValueError("more images/videos than placeholders in the prompt")
        pieces.append(text[last:])
        return "".join(pieces), spans

    def image_run(self, visual: VisualInput) -> str:
        t, h, w = visual.grid_thw
        return self.image_token * (t * h * w // self.merge_length)

    def video_run(self, visual: VisualInput) -> str:
        t, h, w = visual.grid_thw
        per_frame = self.video_token * (h * w // self.merge_length)
        times = self.group_timestamps(visual.timestamps)
        if len(times) != t:
            raise ValueError(f"video has {t} frame groups but {len(times)} timestamps")
        return "".join(
            f"<{time:.1f} seconds>{self.vision_start}{per_frame}{self.vision_end}" for time in times
        )

    def group_timestamps(self, timestamps: Sequence[float]) -> list[float]:
        """One time per group of frames the vision tower merges: the mean of its first and
        last frame, the last frame repeated to fill the final group (as the processor does)."""
        size = self.temporal_patch
        padded = list(timestamps) + [timestamps[-1]] * (-len(timestamps) % size)
        return [(padded[i] + padded[i + size - 1]) / 2 for i in range(0, len(padded), size)]

    def truncate(self, ids: list[int], protected: list[bool]) -> list[int]:
        cut = len(ids) - len(self.suffix_ids)
        body, suffix = ids[:cut], ids[cut:]
        if len(body) <= self.max_length:
            return ids
        keep_ordinary = self.max_length - sum(protected[:cut])
        kept: list[int] = []
        for token, is_protected in zip(body, protected[:cut], strict=True):
            if is_protected:
                kept.append(token)
            elif keep_ordinary > 0:
                kept.append(token)
                keep_ordinary -= 1
        return kept + suffix


def _inside(offset: tuple[int, int], spans: list[tuple[int, int]]) -> bool:
    start, end = offset
    return any(lo <= start and end <= hi for lo, hi in spans)
