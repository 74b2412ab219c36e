"""Filtered search on both index backends: latency of unfiltered and filtered searches for
FAISS flat and Milvus Lite FLAT on the same vectors, printed side by side in one run, with a
check that each backend's filtered top-k equals brute force over the matching assets.

    python benchmarks/filtered_search.py --assets 20000 --dim 256 --queries 200
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from indexers.backends import SearchIndex, create_index
from indexers.store import EmbeddedVector
from pipeline.config import validate_config
from pipeline.filters import parse_filter
from pipeline.schema import Asset

FILTERS = {
    "none": None,
    "10% (category)": 'category == "c3"',
    "1% (range)": "500 <= price < 600",
    "null check": "discount == null",  # Milvus cannot push this: checked after the search
}


def corpus(n: int, dim: int, seed: int = 0) -> tuple[np.ndarray, list[dict]]:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    metadata = [
        {"category": f"c{i % 10}", "price": int(rng.integers(0, 10_000))}
        | ({"discount": None} if i % 2 else {})
        for i in range(n)
    ]
    return vectors, metadata


def build(backend: str, directory: Path, vectors: np.ndarray, metadata: list[dict]) -> SearchIndex:
    config = validate_config({"index": {"backend": backend, "kind": "flat"}})
    index = create_index(directory, config, "bench", vectors.shape[1])
    items = [
        (
            Asset(id=f"a{i}", text="x", metadata=metadata[i]),
            [EmbeddedVector(modality="text", vector=v)],
        )
        for i, v in enumerate(vectors)
    ]
    for start in range(0, len(items), 2000):
        index.upsert_many(items[start : start + 2000])
    index.commit()
    return index


def timed(index: SearchIndex, queries: np.ndarray, expression: str | None, k: int):
    index.search_vectors(queries[:2], k, filter=expression)  # warm up
    started = time.perf_counter()
    hits = [index.search_vectors(q, k, filter=expression)[0] for q in queries]
    return (time.perf_counter() - started) / len(queries) * 1000, hits


def truth_ids(vectors, metadata, queries, expression, k) -> list[list[str]]:
    keep = np.ones(len(vectors), bool)
    if expression:
        parsed = parse_filter(expression)
        keep = np.array([parsed.matches(m) for m in metadata])
    ids = np.flatnonzero(keep)
    scores = queries @ vectors[ids].T
    order = np.argsort(-scores, axis=1)[:, :k]
    return [[f"a{ids[j]}" for j in row] for row in order]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)

    vectors, metadata = corpus(args.assets, args.dim)
    queries = corpus(args.queries, args.dim, seed=1)[0]
    with tempfile.TemporaryDirectory() as root:
        indexes = {}
        for backend in ("faiss", "milvus"):
            started = time.perf_counter()
            indexes[backend] = build(backend, Path(root) / backend, vectors, metadata)
            print(
                f"{backend}: built {args.assets} x {args.dim} in "
                f"{time.perf_counter() - started:.1f}s"
            )
        print(f"\nper-query latency (ms), k={args.k}, {args.queries} queries one at a time")
        print(f"{'filter':<16}{'faiss':>9}{'milvus':>9}{'milvus/faiss':>14}  exact")
        for name, expression in FILTERS.items():
            truth = truth_ids(vectors, metadata, queries, expression, args.k)
            row, exact = [], []
            for index in indexes.values():
                ms, hits = timed(index, queries, expression, args.k)
                row.append(ms)
                exact.append([[h.id for h in q] for q in hits] == truth)
            print(f"{name:<16}{row[0]:>9.2f}{row[1]:>9.2f}{row[1] / row[0]:>14.1f}  {exact}")
        for index in indexes.values():
            index.close()


if __name__ == "__main__":
    main()
