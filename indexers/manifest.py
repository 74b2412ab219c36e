"""The index manifest: what built an index, so it can be reopened with the right model.

``manifest.json`` records the embedder settings (enough to recreate the embedder), the
model id and vector dim the vectors came from, the index kind and its parameters, the
config fingerprint and the library versions that last wrote the index.
"""

from __future__ import annotations

import importlib.metadata
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from indexers.atomic import atomic_write_text
from indexers.media_paths import MediaPathStyle
from pipeline.config import Config, ConfigError, IndexConfig

MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 1

# Distribution names whose versions are recorded; faiss is asked directly because it
# ships as faiss-cpu or faiss-gpu under the same module.
_RECORDED_DISTRIBUTIONS = {
    "vlsearch": "vlsearch",
    "torch": "torch",
    "open_clip": "open-clip-torch",
    "numpy": "numpy",
}


class IndexError_(Exception):
    """Base of every index error a user can act on (the CLI prints these as one line).
    The trailing underscore keeps it apart from the builtin ``IndexError``."""


class IndexNotFoundError(IndexError_, FileNotFoundError):
    """The directory holds no index (or not a readable one)."""


class IndexExistsError(IndexError_, FileExistsError):
    """Creating an index where a non-empty one already is."""


class IncompatibleIndexError(IndexError_, ValueError):
    """The index was built with another model, dim or format than the caller uses."""


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format_version: int = FORMAT_VERSION
    model_id: str = Field(min_length=1)
    dim: int = Field(ge=1)
    profile: str = "default"
    embedder: dict[str, Any]
    media: dict[str, Any]
    index: IndexConfig
    config_fingerprint: str
    media_paths: MediaPathStyle = "as_given"  # manifests written before the field
    versions: dict[str, str]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def new(cls, config: Config, model_id: str, dim: int) -> Manifest:
        now = _utc_now()
        return cls(
            model_id=model_id,
            dim=dim,
            profile=config.profile,
            embedder=config.embedder.model_dump(mode="json"),
            media=config.media.model_dump(mode="json"),
            index=config.index,
            config_fingerprint=config.fingerprint(),
            media_paths="index_relative",
            versions=library_versions(),
            created_at=now,
            updated_at=now,
        )

    def touched(self) -> Manifest:
        """A copy stamped with the current time and the libraries now writing the index."""
        return self.model_copy(update={"updated_at": _utc_now(), "versions": library_versions()})

    def check_model(self, model_id: str | None, dim: int | None = None) -> None:
        if model_id is not None and model_id != self.model_id:
            raise IncompatibleIndexError(
                f"index was built with model {self.model_id!r} but is being opened with "
                f"model {model_id!r}; rebuild the index or use the model it was built with"
            )
        if dim is not None and dim != self.dim:
            raise IncompatibleIndexError(
                f"index holds {self.dim}-dim vectors but the embedder makes {dim}-dim vectors"
            )

    def save(self, directory: Path) -> None:
        atomic_write_text(directory / MANIFEST_FILE, self.model_dump_json(indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path) -> Manifest:
        path = directory / MANIFEST_FILE
        if not path.is_file():
            raise IndexNotFoundError(f"{directory} is not a vlsearch index (no {MANIFEST_FILE})")
        try:
            manifest = cls.model_validate_json(path.read_bytes())
        except ValidationError as exc:
            raise IndexNotFoundError(f"{path}: unreadable manifest ({_first_error(exc)})") from None
        if manifest.format_version > FORMAT_VERSION:
            raise IncompatibleIndexError(
                f"{path}: index format {manifest.format_version} is newer than this vlsearch "
                f"understands ({FORMAT_VERSION}); upgrade vlsearch"
            )
        return manifest


def validate_index_config(config: IndexConfig, dim: int) -> None:
    """Refuse settings FAISS would reject later, naming the key."""
    if config.kind == "ivf_pq" and dim % config.ivf.pq_m != 0:
        raise ConfigError(
            f"index.ivf.pq_m: {config.ivf.pq_m} sub-quantizers do not divide the embedding "
            f"dim {dim}; pick a divisor of {dim}"
        )


def library_versions() -> dict[str, str]:
    import faiss

    versions = {"faiss": faiss.__version__}
    for name, distribution in _RECORDED_DISTRIBUTIONS.items():
        try:
            versions[name] = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    location = ".".join(str(part) for part in error["loc"]) or "<root>"
    return f"{location}: {error['msg']}"
