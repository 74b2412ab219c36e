"""Text knowledge-base recall: BM25, dense (MiniLM) and their fusion on MS MARCO DL19.

Reads a BEIR-layout folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels.tsv`` with no
header: ``qid docid grade``), indexes every passage into both text channels, retrieves
the top ``--depth`` (1000) per query and channel, fuses those lists with vlsearch's own
``pipeline.fusion``, writes one TREC run per system to OUT (``bm25.trec``,
``text_dense.trec``, ``fused.trec``: ``qid Q0 docid rank score tag``, ``--depth`` deep)
and prints nDCG@10 and Recall@100 over the judged queries, computed with ranx.

Relevance: nDCG@10 uses the graded judgements (gain = grade, grades 0-3). Recall@100 is
binary at grade >= 2, the TREC DL passage convention (grade 1 is "related", not
relevant).

The protocol never picks a setting with the judgements of the queries it is scored on:

* untuned fusions, settings fixed in advance: RRF (k = 60, Cormack et al. 2009) and the
  equal-weight sum of min-max and of z-score normalised scores (``--weights``);
* ``cv``: a convex combination whose normalisation (min-max or z) and BM25 weight (0 to 1
  in steps of 0.05, dense weight 1 - w) are chosen by k-fold cross-validation over the
  queries: each fold is fused with the setting that scores best (mean nDCG@10) on the
  other folds, and the run scored is the union of the held-out folds. The setting each
  fold picked is printed: where the folds agree, that one setting is what the score
  supports for a shipped config.

Every fused run is compared with the best single channel by a paired t-test and a paired
randomisation test over the per-query nDCG@10 (ranx ``compare``); 43 queries resolve
only large gaps. ``--fusion`` picks the run written to ``fused.trec``.

    python benchmarks/text_kb.py --data ../shared/data/msmarco-dl19-5k --out /tmp/text_kb

``--reuse-runs`` reads ``bm25.trec`` and ``text_dense.trec`` from OUT instead of
indexing (the dense channel encodes 5,000 passages in about 7 minutes on 2 cores), for
fusion experiments only; a reported result runs end to end.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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

NDCG = "ndcg@10"
RECALL = "recall@100-l2"  # "-l2": relevant means grade >= 2 (ranx syntax)
CHANNELS = ("bm25", "text_dense")
CV_WEIGHT_STEPS = 20  # BM25 weight 0, 0.05, ..., 1
PERMUTATIONS = 10_000
Run = dict[str, dict[str, float]]  # qid -> docid -> score, best first
Qrels = dict[str, dict[str, int]]
ChannelLists = dict[str, dict[str, list[FusionHit]]]  # qid -> channel -> hits, best first


# -- data ---------------------------------------------------------------------------------


def read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def read_qrels(path: Path) -> Qrels:
    qrels: Qrels = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            qid, docid, grade = line.split()
            qrels.setdefault(qid, {})[docid] = int(grade)
    return qrels


def passage(row: dict) -> str:
    title = (row.get("title") or "").strip()
    return f"{title}. {row['text']}" if title else row["text"]


def write_trec(path: Path, run: Run, tag: str) -> None:
    lines = []
    for qid, docs in run.items():
        lines += [
            f"{qid} Q0 {d} {rank} {s:.6f} {tag}" for rank, (d, s) in enumerate(ranked(docs), 1)
        ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def read_trec(path: Path) -> Run:
    rows = sorted(
        (line.split() for line in path.read_text(encoding="utf-8").splitlines() if line),
        key=lambda row: (row[0], int(row[3])),
    )
    run: Run = {}
    for qid, _, docid, _, score, _ in rows:
        run.setdefault(qid, {})[docid] = float(score)
    return run


def ranked(docs: dict[str, float]) -> list[tuple[str, float]]:
    """Best first; equal scores keep the order the system gave (sorted is stable)."""
    return sorted(docs.items(), key=lambda item: -item[1])


# -- retrieval and fusion -----------------------------------------------------------------


def index_and_search(
    channel: TextChannel, corpus: list[dict], queries: dict[str, str], depth: int
) -> tuple[Run, float, float]:
    """The channel's top-``depth`` run for every query, with indexing and search seconds."""
    started = time.perf_counter()
    channel.add([row["_id"] for row in corpus], [passage(row) for row in corpus])
    channel.search(["warm up"], 1)  # bm25 builds its index at the first search
    indexed = time.perf_counter()
    hits = channel.search(list(queries.values()), depth)
    searched = time.perf_counter()
    return to_run(queries, hits), indexed - started, searched - indexed


def to_run(queries: dict[str, str], hits: list[list[ChannelHit]]) -> Run:
    return {
        qid: {hit.id: hit.score for hit in query_hits}
        for qid, query_hits in zip(queries, hits, strict=True)
    }


def channel_lists(runs: dict[str, Run]) -> ChannelLists:
    """Every query's hit list per channel, in the fuser's input type, built once."""
    qids = dict.fromkeys(qid for run in runs.values() for qid in run)
    return {
        qid: {
            name: [FusionHit(id=d, score=s) for d, s in ranked(run.get(qid, {}))]
            for name, run in runs.items()
        }
        for qid in qids
    }


def fuse(lists: ChannelLists, config: FusionConfig, qids: Sequence[str], depth: int) -> Run:
    """Fuses each query's channel lists with the product's own fuser."""
    fuser = create_fuser(config)
    return {
        qid: {hit.id: hit.score for hit in fuser.fuse(lists.get(qid, {}), depth)} for qid in qids
    }


def convex(normalization: str, bm25_weight: float) -> FusionConfig:
    return FusionConfig(
        method="weighted",
        normalization=normalization,  # type: ignore[arg-type]
        weights={"bm25": bm25_weight, "text_dense": round(1.0 - bm25_weight, 4)},
    )


def describe(config: FusionConfig) -> str:
    weights = "/".join(f"{config.weight(name):g}" for name in CHANNELS)
    return f"{config.normalization} {weights}"


# -- evaluation ---------------------------------------------------------------------------


def run_of(qrels: Qrels, run: Run, name: str):  # -> ranx.Run
    """The run over the judged queries, scored by rank so ranx keeps the system's order
    among equal scores."""
    import ranx

    judged: Run = {}
    for qid in qrels:
        docs = ranked(run.get(qid) or {})
        judged[qid] = {d: float(len(docs) - i) for i, (d, _) in enumerate(docs)} or {"-": 0.0}
    return ranx.Run.from_dict(judged, name=name)


def qrels_of(qrels: Qrels):  # -> ranx.Qrels
    import ranx

    return ranx.Qrels.from_dict(qrels)


@dataclass
class Scored:
    ndcg: dict[str, float]  # per judged query
    recall: dict[str, float]

    @property
    def mean_ndcg(self) -> float:
        return statistics.fmean(self.ndcg.values())

    @property
    def mean_recall(self) -> float:
        return statistics.fmean(self.recall.values())


def score(qrels: Qrels, run: Run) -> Scored:
    import ranx

    scored = run_of(qrels, run, "run")
    ranx.evaluate(qrels_of(qrels), scored, [NDCG, RECALL])
    return Scored(
        ndcg={q: float(v) for q, v in scored.scores[NDCG].items()},
        recall={q: float(v) for q, v in scored.scores[RECALL].items()},
    )


def p_values(qrels: Qrels, baseline: Run, run: Run) -> tuple[float, float]:
    """Two-sided p of a paired t-test and a paired randomisation test on nDCG@10."""
    import ranx

    runs = [run_of(qrels, baseline, "baseline"), run_of(qrels, run, "run")]
    found = []
    for test in ("student", "fisher"):
        report = ranx.compare(
            qrels_of(qrels), runs, [NDCG], stat_test=test, n_permutations=PERMUTATIONS
        )
        found.append(float(report.comparisons[("baseline", "run")][NDCG]["p_value"]))
    return found[0], found[1]


# -- cross-validation ---------------------------------------------------------------------


@dataclass
class Fold:
    queries: list[str]
    chosen: FusionConfig
    train_ndcg: float


def folds_of(qids: Sequence[str], folds: int, seed: int) -> list[list[str]]:
    order = sorted(qids)
    random.Random(seed).shuffle(order)
    return [sorted(order[i::folds]) for i in range(folds)]


def cross_validated(
    candidates: dict[str, Run],
    ndcg_of: Callable[[str], dict[str, float]],
    configs: dict[str, FusionConfig],
    folds: list[list[str]],
) -> tuple[Run, list[Fold]]:
    """Each fold takes the candidate fused run (by name) with the best mean nDCG@10 over
    the *other* folds' queries; ties go to the candidate listed first."""
    run: Run = {}
    picked: list[Fold] = []
    for held_out in folds:
        train = [q for fold in folds if fold is not held_out for q in fold]
        best, best_ndcg = None, -1.0
        for name in candidates:
            mean = statistics.fmean(ndcg_of(name)[q] for q in train)
            if mean > best_ndcg:
                best, best_ndcg = name, mean
        assert best is not None
        run.update({q: candidates[best][q] for q in held_out})
        picked.append(Fold(held_out, configs[best], best_ndcg))
    return run, picked


# -- the benchmark ------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="BEIR-layout folder")
    parser.add_argument("--out", type=Path, required=True, help="folder for the TREC runs")
    parser.add_argument("--depth", type=int, default=1000, help="hits per channel fused")
    parser.add_argument("--fusion", choices=("cv", "rrf", "minmax", "z"), default="cv")
    parser.add_argument("--rrf-k", type=int, default=60)
    parser.add_argument(
        "--weights", default="0.5,0.5", help="bm25,text_dense weights of the untuned rows"
    )
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0, help="query shuffle of the folds")
    parser.add_argument(
        "--model",
        default=DenseTextChannelConfig().model,
        help="text_dense model: hub id (the packaged copy is used offline), folder or "
        "local-dir:PATH",
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--k1", type=float, default=Bm25ChannelConfig().k1)
    parser.add_argument("--b", type=float, default=Bm25ChannelConfig().b)
    parser.add_argument(
        "--stemmer",
        default=Bm25ChannelConfig().stemmer,
        type=lambda name: None if name.lower() == "none" else name,
        help="bm25 PyStemmer algorithm, or none",
    )
    parser.add_argument(
        "--reuse-runs",
        action="store_true",
        help="read OUT/bm25.trec and OUT/text_dense.trec instead of indexing",
    )
    args = parser.parse_args()
    if args.folds < 2:
        parser.error("--folds must be at least 2")
    return args


def single_runs(
    args: argparse.Namespace, corpus: list[dict], queries: dict[str, str]
) -> tuple[dict[str, Run], dict[str, str]]:
    """Each channel's run, and a note of its timing (or of where it was read from)."""
    if args.reuse_runs:
        missing = [f"{name}.trec" for name in CHANNELS if not (args.out / f"{name}.trec").is_file()]
        if missing:
            sys.exit(f"--reuse-runs: {args.out} lacks {' and '.join(missing)}; run once without it")
        return (
            {name: read_trec(args.out / f"{name}.trec") for name in CHANNELS},
            dict.fromkeys(CHANNELS, "reused"),
        )
    configs = {
        "bm25": Bm25ChannelConfig(k1=args.k1, b=args.b, stemmer=args.stemmer),
        "text_dense": DenseTextChannelConfig(model=args.model, device=args.device),
    }
    runs: dict[str, Run] = {}
    notes: dict[str, str] = {}
    for name, config in configs.items():
        runs[name], index_s, search_s = index_and_search(
            create_text_channel(config), corpus, queries, args.depth
        )
        notes[name] = f"index {index_s:.1f} s, search {search_s:.2f} s"
        write_trec(args.out / f"{name}.trec", runs[name], name)
    return runs, notes


def untuned_fusions(args: argparse.Namespace) -> dict[str, FusionConfig]:
    """The fusions whose settings are fixed in advance, by ``--fusion`` name."""
    weights = dict(zip(CHANNELS, (float(w) for w in args.weights.split(",")), strict=True))
    return {
        "rrf": FusionConfig(method="rrf", k=args.rrf_k),
        "minmax": FusionConfig(method="weighted", normalization="minmax", weights=weights),
        "z": FusionConfig(method="weighted", normalization="z", weights=weights),
    }


def cross_validated_fusion(
    args: argparse.Namespace, lists: ChannelLists, qrels: Qrels
) -> tuple[Run, list[Fold]]:
    grid = {
        f"{norm} {step / CV_WEIGHT_STEPS:g}": convex(norm, step / CV_WEIGHT_STEPS)
        for norm in ("minmax", "z")
        for step in range(CV_WEIGHT_STEPS + 1)
    }
    candidates = {
        name: fuse(lists, config, list(qrels), args.depth) for name, config in grid.items()
    }
    ndcg: dict[str, dict[str, float]] = {}

    def ndcg_of(name: str) -> dict[str, float]:
        if name not in ndcg:
            ndcg[name] = score(qrels, candidates[name]).ndcg
        return ndcg[name]

    folds = folds_of(list(qrels), args.folds, args.seed)
    return cross_validated(candidates, ndcg_of, grid, folds)


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    warnings.filterwarnings("ignore", message="unsafe cast from uint64")  # ranx's numba

    corpus = read_jsonl(args.data / "corpus.jsonl")
    queries = {row["_id"]: row["text"] for row in read_jsonl(args.data / "queries.jsonl")}
    qrels = read_qrels(args.data / "qrels.tsv")
    qrels = {qid: docs for qid, docs in qrels.items() if qid in queries}
    if args.folds > len(qrels):
        sys.exit(f"--folds {args.folds}: only {len(qrels)} judged queries")
    args.out.mkdir(parents=True, exist_ok=True)

    runs, notes = single_runs(args, corpus, queries)
    singles = {
        name: {q: dict(ranked(d)[: args.depth]) for q, d in run.items()}
        for name, run in runs.items()
    }
    started = time.perf_counter()
    lists = channel_lists(singles)
    fused: dict[str, Run] = {}
    labels: dict[str, str] = {}
    for option, config in untuned_fusions(args).items():
        labels[option] = f"rrf k={config.k}" if option == "rrf" else describe(config)
        fused[labels[option]] = fuse(lists, config, list(queries), args.depth)
    labels["cv"] = f"cv {args.folds}-fold"
    fused[labels["cv"]], picked = cross_validated_fusion(args, lists, qrels)
    fuse_s = time.perf_counter() - started

    chosen = labels[args.fusion]
    write_trec(args.out / "fused.trec", fused[chosen], args.fusion)
    report(args, corpus, queries, qrels, singles, notes, fused, chosen, picked, fuse_s)


def report(
    args: argparse.Namespace,
    corpus: list[dict],
    queries: dict[str, str],
    qrels: Qrels,
    singles: dict[str, Run],
    notes: dict[str, str],
    fused: dict[str, Run],
    chosen: str,
    picked: list[Fold],
    fuse_s: float,
) -> None:
    scores = {name: score(qrels, run) for name, run in {**singles, **fused}.items()}
    best = max(singles, key=lambda name: scores[name].mean_ndcg)
    print(
        f"{len(corpus)} passages, {len(queries)} queries, {len(qrels)} judged; nDCG@10 graded, "
        f"R@100 at grade >= 2; {args.depth} hits per channel fused; bm25 k1={args.k1} "
        f"b={args.b} stemmer={args.stemmer}; text_dense {args.model}"
    )
    print(
        f"p: paired t-test / randomisation test ({PERMUTATIONS} permutations) on nDCG@10 "
        f"against the best single channel, {best}"
    )
    print(f"{'system':<20} {'nDCG@10':>8} {'R@100':>7} {'dNDCG':>8} {'p t':>6} {'p perm':>7}")
    for name, run in {**singles, **fused}.items():
        row = f"{name:<20} {scores[name].mean_ndcg:>8.4f} {scores[name].mean_recall:>7.4f}"
        if name in singles:
            row += f"   {notes[name]}"
        else:
            p_t, p_perm = p_values(qrels, singles[best], run)
            gain = scores[name].mean_ndcg - scores[best].mean_ndcg
            row += f" {gain:>+8.4f} {p_t:>6.3f} {p_perm:>7.3f}"
        print(row + ("  -> fused.trec" if name == chosen else ""))
    print(f"fusion time, untuned rows and the cross-validation grid: {fuse_s:.1f} s")
    print(
        f"cv: {args.folds} folds (query shuffle seed {args.seed}); each fold fused with the "
        "setting best on the other folds (min-max or z, BM25 weight 0..1 step 0.05):"
    )
    for number, fold in enumerate(picked, 1):
        print(
            f"  fold {number} ({len(fold.queries)} queries): {describe(fold.chosen)} "
            f"(bm25/text_dense), training nDCG@10 {fold.train_ndcg:.4f}"
        )


if __name__ == "__main__":
    main()
