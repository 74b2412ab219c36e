"""The config sections of stage one, and the error every config problem raises.

They live apart from ``pipeline.config`` (which composes them with the reranker's)
so that backends can import them without importing every other backend's settings.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr


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
    batch_size: int = Field(default=32, ge=1, description="Images or texts per forward pass.")


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
    m: int = Field(default=32, ge=4, description="Graph neighbours per node.")
    ef_construction: int = Field(
        default=200, ge=8, description="Candidate list while building: higher, better graph."
    )
    ef_search: int = Field(
        default=128, ge=1, description="Candidate list while searching: higher, better recall."
    )


class IvfConfig(_Strict):
    nlist: int = Field(default=1024, ge=1, description="Clamped to the training sample size.")
    nprobe: int = Field(default=16, ge=1, description="Lists visited per search.")
    pq_m: int = Field(default=64, ge=1, description="PQ sub-quantizers; must divide the dim.")
    pq_bits: int = Field(default=8, ge=1, le=16, description="Bits per PQ code.")
    train_size: int = Field(
        default=100_000, ge=1, description="Vectors sampled to train the IVF (and PQ) codebooks."
    )


class MilvusConfig(_Strict):
    """Where a ``backend: milvus`` index keeps its vectors. The index kind, HNSW and IVF
    settings are the shared ``index.kind``/``index.hnsw``/``index.ivf`` ones."""

    uri: str | None = Field(
        default=None,
        description="Milvus Lite folder (relative paths are inside the index directory; "
        "default INDEX_DIR/milvus.db) or a server URL 'http(s)://host:port'.",
    )
    # Never written to the manifest: give it in the config or MILVUS_TOKEN when opening.
    token: SecretStr | None = Field(
        default=None,
        exclude=True,
        description="Server token; better given as MILVUS_TOKEN. Never written to the manifest.",
    )
    collection: str = Field(
        default="vlsearch",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,254}$",
        description="Collection name (several indexes can share one server).",
    )
    partition_key: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="A string metadata field every asset has (e.g. a tenant) to partition by.",
    )


class IndexConfig(_Strict):
    backend: Literal["faiss", "milvus"] = Field(
        default="faiss", description="FAISS beside SQLite in the index folder, or Milvus."
    )
    kind: Literal["flat", "hnsw", "ivf_flat", "ivf_pq"] = Field(
        default="flat", description="flat is exact; the others approximate, for large indexes."
    )
    hnsw: HnswConfig = Field(default_factory=HnswConfig)
    ivf: IvfConfig = Field(default_factory=IvfConfig)
    milvus: MilvusConfig = Field(default_factory=MilvusConfig)


class BuildConfig(_Strict):
    workers: int = Field(
        default=2, ge=0, description="Decode/preprocess workers; 0 decodes in the main thread."
    )
    checkpoint_every: int = Field(default=256, ge=1, description="Assets committed per checkpoint.")
