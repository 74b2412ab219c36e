"""Checks and conversions of what callers hand to an index, shared by every backend so a
bad item or query gets the same error whichever backend is configured."""

from __future__ import annotations

import mimetypes
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from indexers.store import EmbeddedVector, asset_storage_problem
from pipeline.filters import Filter, parse_filter
from pipeline.schema import Asset, Query


def check_item(asset: Asset, vectors: Sequence[EmbeddedVector], dim: int) -> None:
    """Raise ValueError/TypeError naming the asset when it cannot be stored."""
    if not isinstance(asset, Asset):
        raise TypeError(f"expected an Asset, got {type(asset).__name__}")
    problem = asset_storage_problem(asset)
    if problem:
        raise ValueError(f"asset {asset.id!r} cannot be stored: {problem}")
    if not vectors:
        raise ValueError(f"asset {asset.id!r} has no vectors")
    present = asset.modalities()
    for vector in vectors:
        if vector.vector.shape != (dim,):
            raise ValueError(
                f"asset {asset.id!r}: {vector.modality} vector has dim "
                f"{vector.vector.shape[0]}, the index holds {dim}-dim vectors"
            )
        if vector.modality not in present:
            raise ValueError(
                f"asset {asset.id!r}: has a {vector.modality} vector but no {vector.modality}"
            )


def check_queries(queries: np.ndarray, dim: int, k: int) -> np.ndarray:
    """Query vectors as a C-contiguous float32 (n, dim) array."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if queries.ndim == 1:
        queries = queries[None, :]
    if queries.ndim != 2 or queries.shape[1] != dim:
        raise ValueError(f"query vectors must have shape (n, {dim}), got {queries.shape}")
    if not np.isfinite(queries).all():
        raise ValueError("query vectors have NaN or infinite values")
    return queries


def as_filter(value: Filter | str | None) -> Filter | None:
    """A parsed filter; text is parsed (raising FilterError saying where it went wrong)."""
    if value is None or isinstance(value, Filter):
        return value
    if isinstance(value, str):
        return parse_filter(value)
    raise TypeError(f"a filter is a Filter or a str, not {type(value).__name__}")


def as_query(query: Query | str | Path) -> Query:
    """A str is text; a Path is an image, or a video when its type says so."""
    if isinstance(query, Query):
        return query
    if isinstance(query, str):
        return Query(text=query)
    if isinstance(query, Path):
        kind, _ = mimetypes.guess_type(query.name)
        if kind is not None and kind.startswith("video/"):
            return Query(video=query)
        return Query(image=query)
    raise TypeError(f"a query is a Query, a str or a Path, not {type(query).__name__}")
