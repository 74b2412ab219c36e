"""Text knowledge-base recall: BM25, dense (MiniLM) and their fusion on MS MARCO DL19.

Reads a BEIR-layout folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels.tsv`` with no
header: ``qid docid grade``), indexes every passage into both text channels, retrieves
the top 100 per query, writes one TREC run per system to OUT (``bm25.trec``,
``text_dense.trec``, ``fused.trec``: ``qid Q0 docid rank score tag``) and prints nDCG@10
and Recall@100 over the judged queries, computed with ranx.

Relevance: nDCG@10 uses the graded judgements (gain = grade, grades 0-3). Recall@100 is
binary at grade >= 2, the TREC DL passage convention (grade 1 is "related", not
relevant).

Fusion is vlsearch's own (``pipeline.fusion``): RRF (score = sum of 1 / (k + rank),
k = 60) and a weighted sum of min-max normalised scores. Both are always printed;
``--fusion`` picks the one written to ``fused.trec``. The goal is fusion above the best
single channel on nDCG@10.

    python benchmarks/text_kb.py --data ../shared/data/msmarco-dl19-5k --out /tmp/text_kb
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from indexers.text_channels import (
    Bm25ChannelConfig,
    ChannelHit,
    DenseTextChannelConfig,
    TextChannel,
    create_text_channel,
)
from pipeline.fusion import ChannelHit as FusionHit
from pipeline.fusion import FusionConfig, create_fuser

DEPTH = 100
METRICS = ("ndcg@10", "recall@100-l2")  # "-l2": relevant means grade >= 2 (ranx syntax)
Run = dict[str, dict[str, float]]


def read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            qid, docid, grade = line.split()
            qrels.setdefault(qid, {})[docid] = int(grade)
    return qrels


def passage(row: dict) -> str:
    title = (row.get("title") or "").strip()
    return f"{title}. {row['text']}" if title else row["text"]


def index_and_search(
    channel: TextChannel, corpus: list[dict], queries: dict[str, str]
) -> tuple[Run, float, float]:
    """The channel's top-DEPTH run for every query, with indexing and search seconds."""
    started = time.perf_counter()
    channel.add([row["_id"] for row in corpus], [passage(row) for row in corpus])
    channel.search(["warm up"], 1)  # bm25 builds its index at the first search
    indexed = time.perf_counter()
    hits = channel.search(list(queries.values()), DEPTH)
    searched = time.perf_counter()
    return to_run(queries, hits), indexed - started, searched - indexed


def to_run(queries: dict[str, str], hits: list[list[ChannelHit]]) -> Run:
    return {
        qid: {hit.id: hit.score for hit in query_hits}
        for qid, query_hits in zip(queries, hits, strict=True)
    }


def fuse(runs: dict[str, Run], method: str, rrf_k: int, weights: list[float]) -> Run:
    """Fuses per query with the product's own fuser (``pipeline.fusion``)."""
    names = list(runs)
    config = FusionConfig(
        method="rrf" if method == "rrf" else "weighted",
        k=rrf_k,
        normalization="minmax",
        weights=dict(zip(names, weights, strict=True)) if method != "rrf" else {},
    )
    fuser = create_fuser(config)
    fused: Run = {}
    for qid in runs[names[0]]:
        lists = {
            name: [
                FusionHit(id=doc, score=score)
                for doc, score in sorted(runs[name].get(qid, {}).items(), key=lambda x: -x[1])
            ]
            for name in names
        }
        fused[qid] = {hit.id: hit.score for hit in fuser.fuse(lists, DEPTH)}
    return fused


def top(scores: dict[str, float], depth: int) -> dict[str, float]:
    return dict(sorted(scores.items(), key=lambda item: -item[1])[:depth])


def evaluate(qrels: dict[str, dict[str, int]], run: Run) -> dict[str, float]:
    import ranx

    # Judged queries only; a judged query the system found nothing for scores 0.
    judged_run = {qid: run.get(qid) or {} for qid in qrels}
    empty = [qid for qid, docs in judged_run.items() if not docs]
    for qid in empty:
        judged_run[qid] = {"__none__": 0.0}
    scores = ranx.evaluate(ranx.Qrels.from_dict(qrels), ranx.Run.from_dict(judged_run), METRICS)
    return {metric: float(scores[metric]) for metric in METRICS}


def write_trec(path: Path, run: Run, tag: str) -> None:
    lines = []
    for qid, docs in run.items():
        ranked = sorted(docs.items(), key=lambda item: -item[1])[:DEPTH]
        lines += [f"{qid} Q0 {d} {rank} {s:.6f} {tag}" for rank, (d, s) in enumerate(ranked, 1)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="BEIR-layout folder")
    parser.add_argument("--out", type=Path, required=True, help="folder for the TREC runs")
    parser.add_argument("--fusion", choices=("rrf", "weighted"), default="rrf")
    parser.add_argument("--rrf-k", type=int, default=60)
    parser.add_argument(
        "--weights", default="0.5,0.5", help="bm25,text_dense weights for --fusion weighted"
    )
    parser.add_argument(
        "--model",
        default=DenseTextChannelConfig().model,
        help="text_dense model: hub id (the packaged copy is used offline), folder or "
        "local-dir:PATH",
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--k1", type=float, default=Bm25ChannelConfig().k1)
    parser.add_argument("--b", type=float, default=Bm25ChannelConfig().b)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    warnings.filterwarnings("ignore", message="unsafe cast from uint64")  # ranx's numba
    weights = [float(w) for w in args.weights.split(",")]

    corpus = read_jsonl(args.data / "corpus.jsonl")
    queries = {row["_id"]: row["text"] for row in read_jsonl(args.data / "queries.jsonl")}
    qrels = read_qrels(args.data / "qrels.tsv")
    qrels = {qid: docs for qid, docs in qrels.items() if qid in queries}
    args.out.mkdir(parents=True, exist_ok=True)

    channels: dict[str, TextChannel] = {
        "bm25": create_text_channel(Bm25ChannelConfig(k1=args.k1, b=args.b)),
        "text_dense": create_text_channel(
            DenseTextChannelConfig(model=args.model, device=args.device)
        ),
    }
    runs: dict[str, Run] = {}
    timings: dict[str, tuple[float, float]] = {}
    for name, channel in channels.items():
        runs[name], index_s, search_s = index_and_search(channel, corpus, queries)
        timings[name] = (index_s, search_s)
        write_trec(args.out / f"{name}.trec", runs[name], name)

    singles = {"bm25": runs["bm25"], "text_dense": runs["text_dense"]}
    fused = {
        "fused rrf": fuse(singles, "rrf", args.rrf_k, weights),
        "fused weighted": fuse(singles, "weighted", args.rrf_k, weights),
    }
    chosen = "fused rrf" if args.fusion == "rrf" else "fused weighted"
    write_trec(args.out / "fused.trec", fused[chosen], args.fusion)

    print(
        f"{len(corpus)} passages, {len(queries)} queries, {len(qrels)} judged; "
        f"nDCG@10 graded, Recall@100 at grade >= 2; rrf k={args.rrf_k}, "
        f"weights (min-max) bm25={weights[0]} text_dense={weights[1]}"
    )
    print(f"{'system':<16} {'nDCG@10':>8} {'R@100':>8} {'index s':>8} {'search s':>9}")
    for name, run in {**runs, **fused}.items():
        metrics = evaluate(qrels, run)
        index_s, search_s = timings.get(name, (float("nan"), float("nan")))
        marker = "  -> fused.trec" if name == chosen else ""
        print(
            f"{name:<16} {metrics['ndcg@10']:>8.4f} {metrics['recall@100-l2']:>8.4f} "
            f"{index_s:>8.1f} {search_s:>9.2f}{marker}"
        )


if __name__ == "__main__":
    main()
