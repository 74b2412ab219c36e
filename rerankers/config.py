"""Stage-two configuration: one model per reranker backend, chosen by ``backend:``.

Importing this module stays light (pydantic only, no torch or transformers), so
configs validate before any model is loaded.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, TypeAdapter, ValidationError

from pipeline.settings import ConfigError, EmbedderConfig, MediaConfig
from rerankers.qwen3_vl.config import Qwen3VLRerankerConfig
from rerankers.qwen3_vl.prompt import DEFAULT_INSTRUCTION


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ClipRerankerConfig(_Strict):
    """The baseline: cosine of stage-one CLIP embeddings, best modality vector."""

    backend: Literal["clip"] = "clip"
    embedder: EmbedderConfig = Field(
        default_factory=EmbedderConfig,
        description="Ignored when the pipeline hands over its already loaded stage-one embedder.",
    )
    media: MediaConfig = Field(
        default_factory=MediaConfig,
        description="Video sampling and image limits; a request's fps overrides video_fps.",
    )


class CrossEncoderRerankerConfig(_Strict):
    """A sentence-transformers cross-encoder, for text-only corpora."""

    backend: Literal["cross_encoder"] = "cross_encoder"
    model: str = Field(
        default="cross-encoder/ms-marco-MiniLM-L6-v2",
        description="Hugging Face id or local folder; the 'local-dir:PATH' prefix is accepted.",
    )
    device: str = Field(default="auto", description="'auto' picks CUDA when present.")
    batch_size: int = Field(default=32, ge=1, description="Pairs per forward pass.")
    max_length: int | None = Field(
        default=512, ge=1, description="Tokens per (query, document) pair; longer pairs are cut."
    )


class VllmRerankerConfig(_Strict):
    """A vLLM server running Qwen3-VL-Reranker with the pooling runner."""

    backend: Literal["vllm"] = "vllm"
    url: str = Field(
        default="http://127.0.0.1:8000",
        description="Server base URL; requests go to URL/v1/rerank.",
    )
    model: str = Field(default="Qwen/Qwen3-VL-Reranker-2B", description="The served model name.")
    api_key: SecretStr | None = Field(default=None, description="Sent as a Bearer token.")
    timeout_s: float = Field(default=60.0, gt=0.0, description="Per HTTP request.")
    instruction: str = Field(
        default=DEFAULT_INSTRUCTION, description="Used when a request brings none."
    )
    fps: float = Field(default=1.0, gt=0.0, description="Video sampling rate asked of the server.")
    max_frames: int = Field(
        default=64, ge=1, description="Frames per video asked of the server, as the local default."
    )
    batch_size: int = Field(default=16, ge=1, description="Documents per HTTP request.")
    max_concurrency: int = Field(default=4, ge=1, description="HTTP requests in flight at once.")
    max_retries: int = Field(
        default=3, ge=0, description="Retries on connection errors, timeouts, 429 and 5xx."
    )
    backoff_s: float = Field(
        default=0.5, ge=0.0, description="First retry delay; doubles with each retry."
    )


RerankerConfig = Annotated[
    Qwen3VLRerankerConfig | ClipRerankerConfig | CrossEncoderRerankerConfig | VllmRerankerConfig,
    Field(discriminator="backend"),
]

_ADAPTER: TypeAdapter[RerankerConfig] = TypeAdapter(RerankerConfig)


def parse_reranker_config(raw: dict[str, Any], source: str = "reranker") -> RerankerConfig:
    """Validate a ``reranker:`` mapping; the error names each bad key."""
    try:
        return _ADAPTER.validate_python(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"{source}: {problems}") from None


__all__ = [
    "ClipRerankerConfig",
    "CrossEncoderRerankerConfig",
    "Qwen3VLRerankerConfig",
    "RerankerConfig",
    "VllmRerankerConfig",
    "parse_reranker_config",
]
