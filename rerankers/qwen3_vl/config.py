"""Settings of the Qwen3-VL reranker backend.

Defaults are the published reference's (QwenLM/Qwen3-VL-Embedding,
``src/models/qwen3_vl_reranker.py``): a 32-pixel grid unit (16-pixel patches merged
2x2), images between 4 and 1800 units, video frames at 1 fps, at most 64 frames,
at most 768 units per frame, and 10 x 768 units per video given as a list of frames
(video files keep qwen-vl-utils' far larger budget, as the reference leaves it).
Importing this module is light: no torch, no transformers.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rerankers.preprocessing import (
    BLUR_SIGMA,
    RESAMPLE,
    RESIZE_MODE,
    TARGET_SIZE,
    ImagePreprocessing,
    Resample,
    ResizeMode,
)
from rerankers.qwen3_vl.prompt import DEFAULT_INSTRUCTION

GRID_UNIT = 32
"""Pixels per side of one merged vision token (16-pixel patch x 2x2 merge)."""

UNIT_PIXELS = GRID_UNIT * GRID_UNIT
FILE_TOTAL_PIXELS = int(128_000 * UNIT_PIXELS * 0.9)

AUTO_PREPROCESS_WORKERS = 8
GPU_BATCH_TOKENS = 16384
CPU_BATCH_TOKENS = 2048


class Qwen3VLRerankerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    backend: Literal["qwen3_vl"] = "qwen3_vl"
    model: str = Field(
        default="Qwen/Qwen3-VL-Reranker-2B",
        description="Hugging Face id, a local folder, or 'local-dir:PATH'.",
    )
    device: str = Field(default="auto", description="'auto' picks CUDA when present, else CPU.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto", description="'auto' is bfloat16 on CUDA and float32 on CPU."
    )
    attn_implementation: Literal["auto", "flash_attention_2", "sdpa", "eager"] = Field(
        default="auto",
        description="'auto' is flash_attention_2 when importable on CUDA, else sdpa.",
    )
    load_in_4bit: bool = Field(
        default=False, description="4-bit weights via bitsandbytes (extra 'quant'); CUDA only."
    )
    instruction: str = Field(
        default=DEFAULT_INSTRUCTION, description="Used when a request brings none."
    )

    max_length: int = Field(
        default=10240,
        ge=16,
        description="Token budget of a prompt before the assistant-prompt suffix, as in the "
        "reference; only ordinary text tokens are cut.",
    )
    min_pixels: int = Field(
        default=4 * UNIT_PIXELS, ge=UNIT_PIXELS, description="Smallest an image is resized to."
    )
    max_pixels: int = Field(
        default=1800 * UNIT_PIXELS, ge=UNIT_PIXELS, description="Largest an image is resized to."
    )
    fps: float = Field(
        default=1.0,
        gt=0.0,
        description="Frames per second sampled from a video file (at least 4 frames, as the "
        "reference samples); a list of frames is timed at 2 per second, as there.",
    )
    max_frames: int = Field(
        default=64,
        ge=1,
        description="Most frames of a video file (made even) or of a list of frames; a "
        "request's max_frames applies to files only, as in the reference.",
    )
    frame_min_pixels: int = Field(
        default=128 * UNIT_PIXELS,
        ge=UNIT_PIXELS,
        description="Smallest a video frame is resized to.",
    )
    frame_max_pixels: int = Field(
        default=768 * UNIT_PIXELS,
        ge=UNIT_PIXELS,
        description="Largest a video frame is resized to.",
    )
    total_pixels: int = Field(
        default=10 * 768 * UNIT_PIXELS,
        ge=UNIT_PIXELS,
        description="Pixel budget of a video given as a list of frames, shared by its frames "
        "(the reference passes this budget with frame lists only).",
    )
    file_total_pixels: int = Field(
        default=FILE_TOTAL_PIXELS,
        ge=UNIT_PIXELS,
        description="Pixel budget of a video file, shared by its frames: qwen-vl-utils' own "
        "default (0.9 x 128,000 tokens), which the reference leaves in place for files, so "
        "in practice each frame gets frame_max_pixels.",
    )
    max_image_pixels: int = Field(
        default=89_478_485,
        ge=1,
        description="Images with more pixels are refused as decompression bombs.",
    )

    target_size: tuple[int, int] | None = TARGET_SIZE
    resize_mode: ResizeMode = RESIZE_MODE
    resample: Resample = RESAMPLE
    blur_sigma: float | None = BLUR_SIGMA

    max_batch_tokens: int | Literal["auto"] = Field(
        default="auto",
        description="Padded tokens per forward pass (rows x longest row); longer pairs go alone. "
        f"'auto' is {GPU_BATCH_TOKENS} on CUDA and {CPU_BATCH_TOKENS} on CPU, where big batches "
        "lose cache locality and gain nothing (see benchmarks/rerank.py).",
    )
    max_batch_size: int = Field(default=32, ge=1, description="Pairs per forward pass at most.")
    preprocess_workers: int | Literal["auto"] = Field(
        default="auto",
        description="Threads decoding and preprocessing a request's document images and "
        f"videos; 'auto' is the CPU count, at most {AUTO_PREPROCESS_WORKERS}; 1 works in "
        "the calling thread.",
    )
    cache_bytes: int = Field(
        default=512 * 1024 * 1024,
        ge=0,
        description="Bound of the decoded/preprocessed image and video cache; 0 disables it.",
    )
    vision_cache_bytes: int = Field(
        default=256 * 1024 * 1024,
        ge=0,
        description="Bound of the vision tower outputs kept for reuse across requests, on the "
        "model's device; 0 keeps none (within one request each visual is still encoded once).",
    )
    share_prefix: bool = Field(
        default=True,
        description="Run the start all pairs share (system prompt, instruction, query and its "
        "images) once per request and reuse its keys and values; off runs every pair's full "
        "prompt, as the reference does. Scores agree either way up to float rounding.",
    )
    dedupe: bool = Field(
        default=True,
        description="Score identical pairs once (same tokens, same image and video content and "
        "settings; a candidate list often holds one photo under several ids) and copy the "
        "score; off scores every pair, as the reference does.",
    )

    @model_validator(mode="after")
    def _check(self) -> Qwen3VLRerankerConfig:
        if self.min_pixels > self.max_pixels:
            raise ValueError("min_pixels must not exceed max_pixels")
        if self.frame_min_pixels > self.frame_max_pixels:
            raise ValueError("frame_min_pixels must not exceed frame_max_pixels")
        if self.preprocess_workers != "auto" and self.preprocess_workers < 1:
            raise ValueError("preprocess_workers must be 'auto' or a positive integer")
        if self.max_batch_tokens != "auto" and self.max_batch_tokens < 1:
            raise ValueError("max_batch_tokens must be 'auto' or a positive integer")
        # The image settings' rules live in their own model: building it checks them.
        _ = self.image_preprocessing
        return self

    @property
    def image_preprocessing(self) -> ImagePreprocessing:
        """The flat image settings as one value: what a request bringing none gets."""
        return ImagePreprocessing.model_validate(
            {name: getattr(self, name) for name in ImagePreprocessing.model_fields}
        )

    @property
    def model_path(self) -> str:
        """The id or folder to load, without the 'local-dir:' prefix."""
        return self.model.removeprefix("local-dir:")
