"""Search overhead: ``Index.search_vectors`` against a bare ``search`` call on the same FAISS
object, flat and HNSW, same queries, one run.

Goal: batched ``search_vectors`` at k=100 within 10 % of the bare FAISS call on 1M x 512
random unit vectors (one vector per asset, so FAISS does identical work and the rest is
our overhead: row -> asset mapping, grouping, ids and metadata from SQLite, SearchHit
objects). Also prints single-query p50/p95 latency for both.

Needs about 2.2 GB of disk per kind for the store (vectors are stored there too) and
about 2.5 GB of memory per loaded kind at n=1M. HNSW construction at 1M dominates the
run time on small machines; ``--ef-construction`` trades build time for graph quality.

    python benchmarks/search.py --n 1000000 --workdir /tmp/vlsearch-bench
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from indexers.index import EmbeddedVector, Index
from pipeline.config import validate_config
from pipeline.schema import Asset

UPSERT_BATCH = 20_000


def unit_vectors(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    vectors = rng.standard_normal((n, dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def build(directory: Path, kind: str, args: argparse.Namespace) -> tuple[Index, float, float]:
    """Fill an index through the public upsert path; returns it with store and FAISS times."""
    config = validate_config(
        {
            "index": {
                "kind": kind,
                "hnsw": {
                    "m": args.hnsw_m,
                    "ef_construction": args.ef_construction,
                    "ef_search": args.ef_search,
                },
            }
        }
    )
    index = Index.create(directory, config, model_id="random-unit-vectors", dim=args.dim)
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    for start in range(0, args.n, UPSERT_BATCH):
        vectors = unit_vectors(rng, min(UPSERT_BATCH, args.n - start), args.dim)
        index.upsert_many(
            [
                (
                    Asset(
                        id=f"doc-{start + i}",
                        text=f"document {start + i}",
                        metadata={"n": start + i},
                    ),
                    [EmbeddedVector(modality="text", vector=vector)],
                )
                for i, vector in enumerate(vectors)
            ]
        )
    stored = time.perf_counter() - started
    started = time.perf_counter()
    index.commit()
    return index, stored, time.perf_counter() - started


def seconds(run: Callable[[], object]) -> float:
    """Wall time until ``run`` returns (freeing its result afterwards is not counted)."""
    started = time.perf_counter()
    result = run()
    elapsed = time.perf_counter() - started
    del result
    return elapsed


def latencies(queries: np.ndarray, run: Callable[[np.ndarray], object]) -> tuple[float, float]:
    samples = [seconds(lambda q=query: run(q[None, :])) for query in queries]
    cuts = statistics.quantiles(samples, n=20)
    return statistics.median(samples) * 1e3, cuts[18] * 1e3  # ms: p50, p95


def measure(index: Index, batch: int, args: argparse.Namespace) -> dict[str, float]:
    """Batched seconds (median over fresh query batches, so no cache sees a batch twice)
    and single-query latencies of both, on the same FAISS object and the same queries."""
    bare = index.faiss.index  # the FAISS object search_vectors itself searches
    k = args.k
    rng = np.random.default_rng(args.seed + 1)
    warm_up = unit_vectors(rng, batch, args.dim)
    ours_hits = index.search_vectors(warm_up, k)
    bare_scores, _ = bare.search(warm_up, k)
    ours_scores = [[hit.score for hit in hits] for hits in ours_hits]
    assert np.allclose(ours_scores, bare_scores), "search_vectors disagrees with FAISS"
    bare_runs, ours_runs = [], []
    for repeat in range(args.repeats):
        queries = unit_vectors(rng, batch, args.dim)
        runs = [("bare", lambda q=queries: bare.search(q, k))]
        runs.append(("ours", lambda q=queries: index.search_vectors(q, k)))
        # Alternate who goes first so drifting machine load hits both alike.
        for name, run in runs if repeat % 2 == 0 else runs[::-1]:
            (bare_runs if name == "bare" else ours_runs).append(seconds(run))
    single = unit_vectors(rng, args.latency_queries, args.dim)
    bare_p50, bare_p95 = latencies(single, lambda q: bare.search(q, k))
    ours_p50, ours_p95 = latencies(single, lambda q: index.search_vectors(q, k))
    return {
        "bare_s": statistics.median(bare_runs),
        "ours_s": statistics.median(ours_runs),
        "overhead": statistics.median(o / b - 1 for o, b in zip(ours_runs, bare_runs, strict=True)),
        "bare_p50": bare_p50,
        "bare_p95": bare_p95,
        "ours_p50": ours_p50,
        "ours_p95": ours_p95,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="vectors (= assets)")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--kinds", nargs="+", default=["flat", "hnsw"], choices=["flat", "hnsw"])
    parser.add_argument("--flat-queries", type=int, default=256)
    parser.add_argument("--hnsw-queries", type=int, default=2000)
    parser.add_argument("--latency-queries", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--hnsw-m", type=int, default=32)
    parser.add_argument("--ef-construction", type=int, default=200)
    parser.add_argument("--ef-search", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temp dir")
    parser.add_argument("--keep", action="store_true", help="keep the indexes afterwards")
    parser.add_argument("--reuse", action="store_true", help="reuse indexes kept in --workdir")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="vlsearch-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    need = 1.15 * args.n * args.dim * 4 * len(args.kinds)
    free = shutil.disk_usage(workdir).free
    if free < need:
        raise SystemExit(f"{workdir}: {free / 1e9:.1f} GB free, need ~{need / 1e9:.1f} GB")

    rows = []
    for kind in args.kinds:
        directory = workdir / kind
        if args.reuse and (directory / "manifest.json").is_file():
            index, stored_s, faiss_s = Index.open(directory), float("nan"), float("nan")
            if len(index) != args.n:
                raise SystemExit(f"{directory} holds {len(index)} vectors, not --n {args.n}")
        else:
            shutil.rmtree(directory, ignore_errors=True)
            index, stored_s, faiss_s = build(directory, kind, args)
        batch = args.flat_queries if kind == "flat" else args.hnsw_queries
        result = measure(index, batch, args)
        index.close()
        if not (args.keep or args.reuse):
            shutil.rmtree(directory)
        rows.append((kind, batch, stored_s, faiss_s, result))

    print(
        f"n={args.n} dim={args.dim} k={args.k}; hnsw m={args.hnsw_m} "
        f"ef_construction={args.ef_construction} ef_search={args.ef_search}"
    )
    print(
        f"{'kind':6} {'queries':>7} {'store s':>8} {'faiss s':>8} {'bare s':>8} {'ours s':>8} "
        f"{'overhead':>9} {'bare p50/p95 ms':>16} {'ours p50/p95 ms':>16}"
    )
    for kind, count, stored_s, faiss_s, r in rows:
        overhead = 100 * r["overhead"]
        print(
            f"{kind:6} {count:7d} {stored_s:8.1f} {faiss_s:8.1f} {r['bare_s']:8.3f} "
            f"{r['ours_s']:8.3f} {overhead:8.1f}% "
            f"{r['bare_p50']:7.2f}/{r['bare_p95']:<8.2f} {r['ours_p50']:7.2f}/{r['ours_p95']:<8.2f}"
        )
    print("goal: batched overhead <= 10 %")


if __name__ == "__main__":
    main()
