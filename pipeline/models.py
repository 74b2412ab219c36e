"""Model profiles. ``tiny`` swaps every model for random-weight ones built offline.

The tiny set runs every code path without a model hub, but its rankings are
meaningless: it exists for smoke tests and machines with no network.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
from pathlib import Path

import platformdirs

from pipeline.config import Config, EmbedderConfig
from rerankers.config import RerankerConfig

logger = logging.getLogger(__name__)

CACHE_ENV = "VLSEARCH_CACHE"
TINY_WARNING = (
    "profile 'tiny': using random-weight models built offline; "
    "rankings are meaningless (smoke tests only)"
)
_COMPLETE = ".complete"
# Bumped whenever the tiny set's files change (2: the reranker in the published layout),
# so a cache built by an older vlsearch is rebuilt rather than half understood.
TINY_SET = "tiny-models-2"
_warned = False


def cache_home() -> Path:
    return Path(os.environ.get(CACHE_ENV) or platformdirs.user_cache_dir("vlsearch"))


def build_tiny_models(out: Path) -> Path:
    """Write the tiny model set: ``out/clip`` (open_clip, ``local-dir:``),
    ``out/qwen3-vl-reranker`` and ``out/cross-encoder`` (Hugging Face folders)."""
    from indexers.embedders.tiny import build_tiny_clip
    from rerankers.qwen3_vl.tiny import build_tiny_qwen3_vl_reranker
    from rerankers.tiny_cross_encoder import build_tiny_cross_encoder

    out = Path(out)
    build_tiny_clip(out / "clip")
    build_tiny_qwen3_vl_reranker(out / "qwen3-vl-reranker")
    build_tiny_cross_encoder(out / "cross-encoder")
    (out / _COMPLETE).touch()
    return out


def ensure_tiny_models(home: Path | None = None) -> Path:
    """The tiny set in the user cache, built on first use. Concurrent callers
    wait on a file lock; a half-built set (killed mid-way) is rebuilt."""
    target = (home or cache_home()) / TINY_SET
    if (target / _COMPLETE).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with (target.parent / ".tiny-models.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / _COMPLETE).exists():
            logger.info("building the tiny model set in %s", target)
            staging = target.with_name(f"{TINY_SET}.partial")
            shutil.rmtree(staging, ignore_errors=True)
            build_tiny_models(staging)
            shutil.rmtree(target, ignore_errors=True)
            os.replace(staging, target)
    return target


def apply_profile(config: Config) -> Config:
    """Resolve model locations for the config's profile."""
    if config.profile != "tiny":
        return config
    _warn_once()
    home = ensure_tiny_models()
    embedder = config.embedder.model_copy(
        update={"model": f"local-dir:{home / 'clip'}", "pretrained": None}
    )
    return config.model_copy(
        update={"embedder": embedder, "reranker": _tiny_reranker(config.reranker, embedder, home)}
    )


def _tiny_reranker(
    reranker: RerankerConfig, embedder: EmbedderConfig, home: Path
) -> RerankerConfig:
    if reranker.backend == "qwen3_vl":
        return reranker.model_copy(update={"model": str(home / "qwen3-vl-reranker")})
    if reranker.backend == "cross_encoder":
        return reranker.model_copy(update={"model": str(home / "cross-encoder")})
    if reranker.backend == "clip":
        return reranker.model_copy(update={"embedder": embedder})
    return reranker  # vllm: the server owns its model


def _warn_once() -> None:
    global _warned
    if not _warned:
        logger.warning(TINY_WARNING)
        _warned = True
