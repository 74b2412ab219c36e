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
from pydantic import BaseModel, ConfigDict, Field, ValidationError

PROFILE_ENV = "VLSEARCH_MODELS"


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EmbedderConfig(_Strict):
    backend: Literal["open_clip"] = "open_clip"
    model: str = Field(
        default="ViT-B-32",
        description="open_clip model name, or 'hf-hub:ORG/NAME', or 'local-dir:PATH'.",
    )
    pretrained: str | None = Field(
        default="laion2b_s34b_b79k",
        description="open_clip pretrained tag or weights file; ignored for hf-hub:/local-dir:.",
    )
    device: str = Field(default="auto", description="'auto' picks CUDA when present.")
    precision: Literal["auto", "fp32", "fp16", "bf16"] = Field(
        default="auto", description="'auto' is fp16 on CUDA and fp32 on CPU."
    )
    batch_size: int = Field(default=32, ge=1)


class MediaConfig(_Strict):
    video_fps: float = Field(default=1.0, gt=0.0, description="Frames sampled per second.")
    max_frames: int = Field(
        default=64, ge=1, description="Beyond this, sampled frames are thinned uniformly."
    )
    max_image_pixels: int = Field(
        default=89_478_485,
        ge=1,
        description="Images with more pixels are refused as decompression bombs.",
    )


class HnswConfig(_Strict):
    m: int = Field(default=32, ge=4)
    ef_construction: int = Field(default=200, ge=8)
    ef_search: int = Field(default=128, ge=1)


class IvfConfig(_Strict):
    nlist: int = Field(default=1024, ge=1, description="Clamped to the training sample size.")
    nprobe: int = Field(default=16, ge=1)
    pq_m: int = Field(default=64, ge=1, description="PQ sub-quantizers; must divide the dim.")
    pq_bits: int = Field(default=8, ge=1, le=16)
    train_size: int = Field(default=100_000, ge=1)


class IndexConfig(_Strict):
    backend: Literal["faiss"] = "faiss"
    kind: Literal["flat", "hnsw", "ivf_flat", "ivf_pq"] = "flat"
    hnsw: HnswConfig = Field(default_factory=HnswConfig)
    ivf: IvfConfig = Field(default_factory=IvfConfig)


class BuildConfig(_Strict):
    workers: int = Field(
        default=2, ge=0, description="Decode/preprocess workers; 0 decodes in the main thread."
    )
    checkpoint_every: int = Field(
        default=256, ge=1, description="Assets committed per checkpoint."
    )


class Config(_Strict):
    profile: Literal["default", "tiny"] = Field(
        default="default",
        description="'tiny' swaps every model for offline random-weight ones (smoke tests).",
    )
    embedder: EmbedderConfig = Field(default_factory=EmbedderConfig)
    media: MediaConfig = Field(default_factory=MediaConfig)
    index: IndexConfig = Field(default_factory=IndexConfig)
    build: BuildConfig = Field(default_factory=BuildConfig)

    def fingerprint(self) -> str:
        """A stable hash of the settings, recorded in index manifests."""
        payload = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def load_config(
    path: str | Path | None = None, overrides: list[str] | None = None
) -> Config:
    """Read a YAML config (or the defaults), apply ``key.sub=value`` overrides,
    apply the ``VLSEARCH_MODELS`` profile, and validate."""
    raw: dict[str, Any] = {}
    if path is not None:
        raw = _read_yaml(Path(path))
    for item in overrides or []:
        _apply_override(raw, item)
    if os.environ.get(PROFILE_ENV):
        raw["profile"] = os.environ[PROFILE_ENV]
    return validate_config(raw, source=str(path) if path else "<defaults>")


def validate_config(raw: dict[str, Any], source: str = "<config>") -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"{source}: {problems}") from None


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
