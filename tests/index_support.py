"""Shared helpers for the index tests: random unit vectors, assets, brute-force reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from indexers.index import EmbeddedVector, Index
from pipeline.config import Config, validate_config
from pipeline.schema import Asset

DIM = 32
MODEL = "test-model"
KINDS = ("flat", "hnsw", "ivf_flat", "ivf_pq")


def config_for(kind: str, **index: object) -> Config:
    """Sane small-corpus settings per kind."""
    settings: dict = {
        "kind": kind,
        "hnsw": {"m": 16, "ef_construction": 80, "ef_search": 64},
        # One 8-bit code per dimension: fine PQ, so the toy corpus tests our plumbing
        # rather than PQ's approximation error.
        "ivf": {"nlist": 32, "nprobe": 8, "pq_m": DIM, "pq_bits": 8, "train_size": 5000},
    }
    settings.update(index)
    return validate_config({"index": settings})


def unit_vectors(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def low_rank_unit_vectors(rng: np.random.Generator, n: int, basis: np.ndarray) -> np.ndarray:
    """Random unit vectors on the subspace spanned by ``basis`` rows. Real embeddings sit
    near low-dimensional manifolds (FAISS's own synthetic test sets are built the same
    way); isotropic random vectors in 32-d have no meaningful near neighbours."""
    coords = rng.standard_normal((n, len(basis))).astype(np.float32)
    vectors = coords @ basis
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def random_basis(rng: np.random.Generator, rank: int, dim: int = DIM) -> np.ndarray:
    return np.linalg.qr(rng.standard_normal((dim, rank)))[0].T.astype(np.float32)


def text_item(asset_id: str, vector: np.ndarray, **metadata: object) -> tuple:
    asset = Asset(id=asset_id, text=f"text of {asset_id}", metadata=metadata)
    return asset, [EmbeddedVector(modality="text", vector=vector)]


def video_item(asset_id: str, frames: np.ndarray, fps: float = 2.0) -> tuple:
    asset = Asset(id=asset_id, video=Path(f"/videos/{asset_id}.mp4"))
    vectors = [
        EmbeddedVector(modality="video", vector=frame, timestamp=i / fps)
        for i, frame in enumerate(frames)
    ]
    return asset, vectors


def new_index(directory: Path, kind: str, **index: object) -> Index:
    return Index.create(directory, config_for(kind, **index), MODEL, DIM)


def brute_force(
    queries: np.ndarray, vectors: np.ndarray, owners: np.ndarray, k: int
) -> list[list[tuple[str, float, int]]]:
    """Per query, the best k assets as (owner, best row score, best row index)."""
    scores = queries @ vectors.T
    results = []
    for row_scores in scores:
        best: dict[str, tuple[float, int]] = {}
        for row in np.argsort(-row_scores):
            owner = str(owners[row])
            if owner not in best:
                best[owner] = (float(row_scores[row]), int(row))
            if len(best) == k:
                break
        results.append([(owner, score, row) for owner, (score, row) in best.items()])
    return results


def recall(found: list[list[str]], truth: list[list[str]]) -> float:
    hits = sum(len(set(f) & set(t)) for f, t in zip(found, truth, strict=True))
    return hits / sum(len(t) for t in truth)
