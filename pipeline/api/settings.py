"""The ``serve:`` config section: where the server listens and what it lets in.

It has no FastAPI import, so the config loads without the ``serve`` extra.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

MiB = 2**20


class ServeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = Field(
        default="127.0.0.1",
        description="Address to bind; anything but loopback without a token logs a warning.",
    )
    port: int = Field(default=8000, ge=1, le=65535, description="TCP port.")
    token_file: Path | None = Field(
        default=None,
        description="File holding the bearer token every /v1 route needs (VLSEARCH_API_TOKEN "
        "wins over it); none and no variable: no token is asked.",
    )
    admin_token_file: Path | None = Field(
        default=None,
        description="File holding a separate token for writes and model loading "
        "(VLSEARCH_ADMIN_TOKEN wins over it); none: the API token serves for those too.",
    )
    media_roots: list[Path] = Field(
        default_factory=list,
        description="Folders whose files a request may name by server path; empty: none.",
    )
    allow_urls: bool = Field(
        default=False, description="Fetch http(s) URLs given as media (public addresses only)."
    )
    allow_hosts: list[str] = Field(
        default_factory=list,
        description="Host names, addresses or CIDR networks fetched even though private.",
    )
    url_timeout_s: float = Field(default=10.0, gt=0, description="Deadline for one URL fetch.")
    max_body_bytes: int = Field(default=64 * MiB, ge=1, description="Largest request body.")
    max_upload_bytes: int = Field(
        default=32 * MiB,
        ge=1,
        description="Largest media item: an uploaded file, a base64 item or a fetched URL.",
    )
    max_video_seconds: float = Field(default=600.0, gt=0, description="Longest video accepted.")
    max_video_frames: int = Field(
        default=256, ge=1, description="Most frames a video given as frames may have."
    )
    max_documents: int = Field(default=100, ge=1, description="Documents per rerank request.")
    max_top_k: int = Field(default=1000, ge=1, description="Largest top_k / top_n a request asks.")
    max_assets_per_upsert: int = Field(default=256, ge=1, description="Assets per upsert request.")
    max_concurrency: int = Field(
        default=2,
        ge=1,
        description="Requests running at once in each model stage (embed, rerank).",
    )
    max_queue: int = Field(
        default=16,
        ge=0,
        description="Requests waiting per stage; beyond, 503 with Retry-After at once.",
    )
    request_timeout_s: float = Field(
        default=120.0, gt=0, description="A search or rerank over this (queue included): 504."
    )
    retry_after_s: int = Field(default=1, ge=0, description="Retry-After sent with a 503.")
    thumbnail_px: int = Field(default=256, ge=16, le=2048, description="Thumbnails' longest side.")
    drain_timeout_s: float = Field(
        default=30.0, ge=0, description="On Ctrl-C or SIGTERM, wait this long for requests."
    )
