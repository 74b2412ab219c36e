"""Configuration: pydantic models loaded from YAML, with dotted-key overrides.

Unknown keys are errors (``extra="forbid"``) so a typo never silently falls back
to a default; every error names the offending key.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from indexers.documents.config import DocumentsConfig
from indexers.text_channels.config import TextChannelConfig
from pipeline.api.settings import ServeConfig
from pipeline.config_errors import SourceOf, explain
from pipeline.fusion import FusionConfig
from pipeline.settings import (
    BuildConfig,
    ConfigError,
    EmbedderConfig,
    HnswConfig,
    IndexConfig,
    IvfConfig,
    MediaConfig,
    _Strict,
)
from pipeline.ui.settings import UiConfig
from rerankers.config import RerankerConfig
from rerankers.qwen3_vl.config import Qwen3VLRerankerConfig

__all__ = [
    "BuildConfig",
    "Config",
    "ConfigError",
    "EmbedderConfig",
    "HnswConfig",
    "IndexConfig",
    "IvfConfig",
    "MediaConfig",
    "RecallConfig",
    "RerankConfig",
    "load_config",
    "native_fusion_problem",
    "validate_config",
]

PROFILE_ENV = "VLSEARCH_MODELS"
DEFAULT_RERANKER_BACKEND = "qwen3_vl"

ChannelName = Literal["clip_image", "clip_text", "text_dense", "bm25"]
MILVUS_FIELD_CHANNELS = ("clip_image", "clip_text", "text_dense")
"""Channels a Milvus index can serve from its own vector fields (text_dense only when it is
one of the text_channels; bm25 always stays a bm25s channel beside the index)."""


class RecallConfig(_Strict):
    """Stage one: which channels a query goes to, and how many hits each returns. An
    image or video query uses the image channels only; a text query every listed one."""

    channels: list[ChannelName] = Field(
        default_factory=lambda: ["clip_image", "clip_text"],
        description="Channels a text query goes to: clip_image, clip_text, and bm25 and "
        "text_dense where text_channels builds them.",
    )
    top_k: dict[ChannelName, int] = Field(
        default_factory=dict, description="Hits per channel; channels not named get 100."
    )
    fold_by: str | None = Field(
        default=None,
        description="Metadata key whose value folds hits into one parent (e.g. 'doc_id' "
        "folds PDF pages and passages into their document); none keeps every asset.",
    )

    def top_k_of(self, channel: str) -> int:
        return self.top_k.get(channel, 100)  # type: ignore[call-overload]


class RerankConfig(_Strict):
    """Stage two over the fused top N, and how its score merges with stage one's."""

    enabled: bool = Field(default=True, description="Run stage two; off ranks by fusion alone.")
    top_n: int = Field(default=50, ge=1, description="Fused candidates sent to the reranker.")
    blend: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="None ranks by the rerank score alone; w gives w * rerank + (1 - w) * "
        "the fused score min-max normalised over the candidates.",
    )
    min_score: float | None = Field(
        default=None, description="Drop final results scoring below this."
    )


class Config(_Strict):
    profile: Literal["default", "tiny"] = Field(
        default="default",
        description="'tiny' swaps every model for offline random-weight ones (smoke tests).",
    )
    embedder: EmbedderConfig = Field(
        default_factory=EmbedderConfig, description="Stage one's CLIP model (open_clip)."
    )
    media: MediaConfig = Field(
        default_factory=MediaConfig, description="Decoding for stage one: video frames, limits."
    )
    index: IndexConfig = Field(
        default_factory=IndexConfig, description="Where and how the vectors are searched."
    )
    build: BuildConfig = Field(default_factory=BuildConfig, description="Offline index builds.")
    reranker: RerankerConfig = Field(
        default_factory=Qwen3VLRerankerConfig, description="Stage two's model."
    )
    recall: RecallConfig = Field(
        default_factory=RecallConfig, description="Stage one: channels and hits per channel."
    )
    text_channels: list[TextChannelConfig] = Field(
        default_factory=list, description="Text channels built with the index (bm25, text_dense)."
    )
    fusion: FusionConfig = Field(
        default_factory=FusionConfig, description="How the channels' lists merge into one."
    )
    rerank: RerankConfig = Field(
        default_factory=RerankConfig, description="Stage two over the fused candidates."
    )
    documents: DocumentsConfig = Field(
        default_factory=DocumentsConfig,
        description="PDF pages and text passages, when a build reads documents.",
    )
    serve: ServeConfig = Field(
        default_factory=ServeConfig, description="`vlsearch serve`: the REST API and its limits."
    )
    ui: UiConfig = Field(
        default_factory=UiConfig, description="The web page: `vlsearch ui`, and /ui in serve."
    )

    @model_validator(mode="after")
    def _native_fusion_possible(self) -> Config:
        if self.fusion.native == "on":
            problem = native_fusion_problem(self)
            if problem is not None:
                raise ValueError(f"fusion.native is 'on' but {problem}")
        return self

    def fingerprint(self) -> str:
        """A stable hash of the settings, recorded in index manifests."""
        payload = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def native_fusion_problem(config: Config, backend: str | None = None) -> str | None:
    """Why this config's recall cannot be fused by the index itself, or None when it can.
    ``backend`` overrides ``index.backend`` (an index opened by its manifest)."""
    fusion, recall = config.fusion, config.recall
    backend = backend or config.index.backend
    if backend != "milvus":
        return f"index.backend is {backend!r}; only 'milvus' fuses natively"
    if fusion.method not in ("rrf", "weighted"):
        return f"fusion.method {fusion.method!r} has no Milvus ranker (use rrf or weighted)"
    if fusion.method == "rrf" and fusion.k < 1:
        return f"fusion.k is {fusion.k}; Milvus's RRF needs k >= 1"
    if fusion.method == "rrf" and any(fusion.weight(c) != 1.0 for c in recall.channels):
        return "fusion.weights: Milvus's RRF ranker has no per-channel weights"
    if fusion.method == "weighted" and fusion.normalization != "minmax":
        # Milvus's WeightedRanker normalises with arctan only (its nearest to min-max).
        return f"fusion.normalization {fusion.normalization!r} has no Milvus counterpart"
    if recall.fold_by is not None:
        return "recall.fold_by folds each channel before fusion, which Milvus cannot"
    if len(recall.channels) < 2:
        return "recall.channels lists fewer than two channels: nothing to fuse"
    dense = any(channel.backend == "text_dense" for channel in config.text_channels)
    for channel in recall.channels:
        if channel not in MILVUS_FIELD_CHANNELS or (channel == "text_dense" and not dense):
            return f"recall channel {channel!r} is not a Milvus vector field"
    return None


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (or the defaults), apply ``key.sub=value`` overrides,
    apply the ``VLSEARCH_MODELS`` profile, and validate."""
    raw: dict[str, Any] = {}
    if path is not None:
        raw = _read_yaml(Path(path))
    overrides = list(overrides or [])
    for item in overrides:
        _apply_override(raw, item)
    if os.environ.get(PROFILE_ENV):
        raw["profile"] = os.environ[PROFILE_ENV]
        overrides.append(f"profile={os.environ[PROFILE_ENV]} (from {PROFILE_ENV})")
    return validate_config(raw, source=SourceOf(str(path) if path else None, overrides))


def validate_config(raw: dict[str, Any], source: str | SourceOf = "<config>") -> Config:
    """The validated config; ConfigError naming each bad key, where its value came from
    (``source``: a name, or which override or file set which key) and, for an unknown
    key, the nearest known one."""
    source_of = SourceOf(source, []) if isinstance(source, str) else source
    try:
        return Config.model_validate(_with_default_backend(raw))
    except ValidationError as exc:
        raise ConfigError(explain(exc, Config, source_of)) from None


def _with_default_backend(raw: dict[str, Any]) -> dict[str, Any]:
    """``--set reranker.top_n=5`` alone means the default reranker's key: the default
    backend is filled in where a reranker section names none."""
    reranker = raw.get("reranker")
    if isinstance(reranker, dict) and "backend" not in reranker:
        return {**raw, "reranker": {"backend": DEFAULT_RERANKER_BACKEND, **reranker}}
    return raw


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def _apply_override(raw: dict[str, Any], item: str) -> None:
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r}: expected KEY=VALUE, e.g. index.kind=hnsw")
    node = raw
    parts = key.strip().split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {item!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = yaml.safe_load(text) if text.strip() else None
