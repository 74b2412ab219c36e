"""Qwen3-VL-Reranker, run locally with transformers.

Importing this package is light; the seed-compatible ``Qwen3VLReranker`` (which needs
torch) is imported on first access.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Qwen3VLReranker"]


def __getattr__(name: str) -> Any:
    if name == "Qwen3VLReranker":
        from rerankers.qwen3_vl.seed import Qwen3VLReranker

        return Qwen3VLReranker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
