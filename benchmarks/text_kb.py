"""Text knowledge-base recall: BM25, dense (MiniLM) and a study of their fusion.

For each ``--data`` folder (a BEIR layout such as the MS MARCO DL19 slice, or a Flickr8k
``captions.txt`` read as paraphrase retrieval; see ``benchmarks/text_collections.py``)
the script indexes every document into both text channels, retrieves the top 1,000 per
query and channel, fuses those lists with vlsearch's own ``pipeline.fusion`` and scores
nDCG@10 and Recall@100 over the judged queries with ranx. Runs go to ``OUT/<folder
name>/``: ``bm25.trec`` and ``text_dense.trec`` (1,000 deep) and ``fused.trec`` (the top
100 of ``--fusion``), all ``qid Q0 docid rank score tag``.

Relevance: nDCG@10 uses the graded judgements (gain = grade). Recall@100 counts grade
>= 2 where the judgements grade beyond 1 (MS MARCO DL19: grade 1 is "related"), grade
>= 1 otherwise (captions: every paraphrase is grade 1).

The study (``CANDIDATES``, fixed before any run): RRF with k in {10, 20, 60, 100}, and at
k = 60 with the shipped 0.25/0.75 weights; the weighted sum of min-max, z and dbsf
normalised scores at equal weights and at bm25 0.25 / text_dense 0.75 (the setting
``configs/kb-qa.yaml`` shipped, tuned on MS MARCO); each fusing the top 100 and the top
1,000 hits per channel (``recall.top_k`` in a config). Every candidate is compared with
its collection's best single channel (mean nDCG@10) by a paired t-test and a paired
randomisation test on per-query nDCG@10 (ranx ``compare``).

The choice rule (``choose``), stated before any run: among the candidates whose nDCG@10
is not below the best single channel's on any collection (point estimates), the one with
the best mean nDCG@10 over the collections; ties go to the candidate listed first. That
choice is itself a selection on these collections: only a collection it never saw (such
as a held-out BEIR set run with this script) tests it, and there the row to read is the
one marked ``(kb-qa.yaml)``, the setting shipped, not the rule's choice on that set.

A reference row, never a candidate for a shipped default: ``cv``, a convex combination
whose normalisation (min-max or z) and BM25 weight (0 to 1 in steps of 0.05) are chosen
by k-fold cross-validation over the collection's queries: each fold is fused with the
setting best (mean nDCG@10) on the other folds, and the run scored is the union of the
held-out folds. It shows what tuning on a collection's own judgements gains.

    python benchmarks/text_kb.py --data ../shared/data/msmarco-dl19-5k \\
        ../shared/data/flickr8k-1k --out /tmp/text_kb

``--reuse-runs`` reads ``bm25.trec`` and ``text_dense.trec`` from ``OUT/<folder name>/``
instead of indexing (the dense channel encodes the 5,000 MS MARCO passages in 2 to 7
minutes on 2 shared cores), for fusion experiments only; a reported result runs end to end.
Progress goes to stderr; the report on stdout.
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from benchmarks.text_collections import Collection, Qrels, load_collection
from indexers.text_channels import (
    Bm25ChannelConfig,
    ChannelHit,
    DenseTextChannelConfig,
    TextChannel,
    create_text_channel,
)
from pipeline.config import load_config
from pipeline.fusion import ChannelHit as FusionHit
from pipeline.fusion import FusionConfig, Normalization, create_fuser

NDCG = "ndcg@10"
CHANNELS = ("bm25", "text_dense")
RETRIEVED = 1000  # hits per channel and query, written to the channel runs
SCORED = 100  # fused hits kept per query: the metrics read no deeper
ADD_CHUNK = 256  # documents per channel.add, one progress step each
QUERY_CHUNK = 64  # queries per channel.search
CV_WEIGHT_STEPS = 20  # BM25 weight 0, 0.05, ..., 1
PERMUTATIONS = 10_000
SHIPPED_WEIGHTS = (0.25, 0.75)  # bm25, text_dense in configs/kb-qa.yaml before this study
Run = dict[str, dict[str, float]]  # qid -> docid -> score, best first
ChannelLists = dict[str, dict[str, list[FusionHit]]]  # qid -> channel -> hits, best first


# -- the candidates, fixed before any run ---------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    name: str
    config: FusionConfig
    depth: int  # hits per channel fused (recall.top_k)


def weights_of(bm25: float, dense: float) -> dict[str, float]:
    return dict(zip(CHANNELS, (bm25, dense), strict=True))


def convex(normalization: Normalization, bm25_weight: float) -> FusionConfig:
    return FusionConfig(
        method="weighted",
        normalization=normalization,
        weights=weights_of(bm25_weight, round(1.0 - bm25_weight, 4)),
    )


def study_settings() -> dict[str, FusionConfig]:
    settings = {f"rrf k={k}": FusionConfig(method="rrf", k=k) for k in (10, 20, 60, 100)}
    # Weighted RRF at the shipped weights: does leaning on the dense channel help ranks too?
    settings["rrf k=60 0.25/0.75"] = FusionConfig(
        method="rrf", k=60, weights=weights_of(*SHIPPED_WEIGHTS)
    )
    for normalization in ("minmax", "z", "dbsf"):
        for bm25 in (0.5, SHIPPED_WEIGHTS[0]):
            settings[f"{normalization} {bm25:g}/{1 - bm25:g}"] = convex(normalization, bm25)
    return settings


CANDIDATES = [
    Candidate(f"{name} @{depth}", config, depth)
    for name, config in study_settings().items()
    for depth in (100, 1000)
]
SHIPPED = "minmax 0.25/0.75 @1000"  # what configs/kb-qa.yaml fused before this study
KB_QA = Path(__file__).resolve().parents[1] / "configs" / "kb-qa.yaml"


def kb_qa_candidate() -> str | None:
    """The candidate ``configs/kb-qa.yaml`` fuses its text channels with (its fusion and
    ``recall.top_k``), marked in the report: on a held-out collection that row is the
    test, not the rule's choice, which would be tuned on it."""
    config = load_config(KB_QA)
    depths = {config.recall.top_k_of(name) for name in CHANNELS}
    return next(
        (
            c.name
            for c in CANDIDATES
            if {c.depth} == depths and same_fusion(c.config, config.fusion)
        ),
        None,
    )


def same_fusion(a: FusionConfig, b: FusionConfig) -> bool:
    """Equal on the text channels: method, its parameter (k or normalisation), weights."""
    setting = (a.k == b.k) if a.method == "rrf" else (a.normalization == b.normalization)
    weights = all(a.weight(name) == b.weight(name) for name in CHANNELS)
    return a.method == b.method and setting and weights


def choose(ndcg: Mapping[str, Mapping[str, float]], best_single: Mapping[str, float]) -> str | None:
    """The rule: among candidates (name -> collection -> mean nDCG@10) not below the best
    single channel (collection -> its mean nDCG@10) on any collection, the best mean over
    the collections; ties go to the candidate listed first; None when none qualifies."""
    eligible = [
        name
        for name, by_collection in ndcg.items()
        if all(by_collection[c] >= best for c, best in best_single.items())
    ]
    return max(eligible, key=lambda name: statistics.fmean(ndcg[name].values()), default=None)


# -- runs ---------------------------------------------------------------------------------


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


def progress_bar() -> Progress:
    """Progress on stderr, so the report printed on stdout stays clean."""
    return Progress(
        TextColumn("{task.description:<36}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    )


# -- retrieval and fusion -----------------------------------------------------------------


def index_and_search(
    channel: TextChannel, collection: Collection, progress: Progress
) -> tuple[Run, float, float]:
    """The channel's top-``RETRIEVED`` run for every query, with indexing and search
    seconds. Documents go in by chunks only to show progress: a channel's result does
    not depend on how its documents were batched."""
    ids, texts = list(collection.documents), list(collection.documents.values())
    started = time.perf_counter()
    for start in progress.track(
        range(0, len(ids), ADD_CHUNK),
        description=f"{collection.name} {channel.name}: index",
    ):
        channel.add(ids[start : start + ADD_CHUNK], texts[start : start + ADD_CHUNK])
    channel.search(["warm up"], 1)  # bm25 builds its index at the first search
    indexed = time.perf_counter()
    qids, questions = list(collection.queries), list(collection.queries.values())
    hits: list[list[ChannelHit]] = []
    for start in progress.track(
        range(0, len(qids), QUERY_CHUNK),
        description=f"{collection.name} {channel.name}: search",
    ):
        hits += channel.search(questions[start : start + QUERY_CHUNK], RETRIEVED)
    searched = time.perf_counter()
    return to_run(qids, hits), indexed - started, searched - indexed


def to_run(qids: Sequence[str], hits: list[list[ChannelHit]]) -> Run:
    return {
        qid: {hit.id: hit.score for hit in query_hits}
        for qid, query_hits in zip(qids, hits, strict=True)
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


def fuse(
    lists: ChannelLists,
    config: FusionConfig,
    qids: Sequence[str],
    depth: int,
    advance: Callable[[], None] = lambda: None,
) -> Run:
    """Fuses each query's top-``depth`` channel lists with the product's own fuser and
    keeps the fused top ``SCORED``."""
    fuser = create_fuser(config)
    run: Run = {}
    for qid in qids:
        cut = {name: hits[:depth] for name, hits in lists.get(qid, {}).items()}
        run[qid] = {hit.id: hit.score for hit in fuser.fuse(cut, SCORED)}
        advance()
    return run


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


def recall_metric(collection: Collection) -> str:
    return f"recall@100-l{collection.recall_grade}"  # "-lN": relevant means grade >= N


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


def score(collection: Collection, run: Run) -> Scored:
    import ranx

    scored = run_of(collection.qrels, run, "run")
    recall = recall_metric(collection)
    ranx.evaluate(qrels_of(collection.qrels), scored, [NDCG, recall])
    return Scored(
        ndcg={q: float(v) for q, v in scored.scores[NDCG].items()},
        recall={q: float(v) for q, v in scored.scores[recall].items()},
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


def cross_validated_fusion(
    args: argparse.Namespace, lists: ChannelLists, collection: Collection, progress: Progress
) -> tuple[Run, list[Fold]]:
    grid = {
        f"{norm} {step / CV_WEIGHT_STEPS:g}": convex(norm, step / CV_WEIGHT_STEPS)
        for norm in ("minmax", "z")
        for step in range(CV_WEIGHT_STEPS + 1)
    }
    judged = list(collection.qrels)
    task = progress.add_task(
        f"{collection.name}: cv grid ({len(grid)} settings)", total=len(grid) * len(judged)
    )
    candidates = {
        name: fuse(lists, config, judged, RETRIEVED, lambda: progress.advance(task))
        for name, config in grid.items()
    }
    ndcg: dict[str, dict[str, float]] = {}

    def ndcg_of(name: str) -> dict[str, float]:
        if name not in ndcg:
            ndcg[name] = score(collection, candidates[name]).ndcg
        return ndcg[name]

    folds = folds_of(judged, args.folds, args.seed)
    return cross_validated(candidates, ndcg_of, grid, folds)


# -- one collection -----------------------------------------------------------------------


@dataclass
class Row:
    """One system's scores on one collection, against its best single channel."""

    ndcg: float
    recall: float
    gain: float = 0.0  # nDCG@10 minus the best single channel's
    p_t: float = 1.0
    p_perm: float = 1.0


@dataclass
class Evaluated:
    collection: Collection
    singles: dict[str, Row]
    best: str  # the best single channel
    candidates: dict[str, Row]  # by Candidate.name, in CANDIDATES order
    cv: Row
    picked: list[Fold]
    runs: dict[str, Run]  # every fused run, by name ("cv" too)
    notes: dict[str, str]  # per channel: timing, or where the run was read from
    seconds: float  # end to end


def single_runs(
    args: argparse.Namespace, collection: Collection, out: Path, progress: Progress
) -> tuple[dict[str, Run], dict[str, str]]:
    """Each channel's run, and a note of its timing (or of where it was read from)."""
    if args.reuse_runs:
        missing = [f"{name}.trec" for name in CHANNELS if not (out / f"{name}.trec").is_file()]
        if missing:
            sys.exit(f"--reuse-runs: {out} lacks {' and '.join(missing)}; run once without it")
        return (
            {name: read_trec(out / f"{name}.trec") for name in CHANNELS},
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
            create_text_channel(config), collection, progress
        )
        notes[name] = f"index {index_s:.1f} s, search {search_s:.2f} s"
        write_trec(out / f"{name}.trec", runs[name], name)
    return runs, notes


def evaluate_collection(args: argparse.Namespace, folder: Path, progress: Progress) -> Evaluated:
    started = time.perf_counter()
    collection = load_collection(folder)
    if args.folds > len(collection.qrels):
        sys.exit(f"--folds {args.folds}: {folder} has only {len(collection.qrels)} judged queries")
    out = args.out / collection.name
    out.mkdir(parents=True, exist_ok=True)
    runs, notes = single_runs(args, collection, out, progress)
    singles = {
        name: {q: dict(ranked(d)[:RETRIEVED]) for q, d in run.items()} for name, run in runs.items()
    }
    lists = channel_lists(singles)
    qids = list(collection.queries)
    task = progress.add_task(
        f"{collection.name}: fusion sweep ({len(CANDIDATES)})", total=len(CANDIDATES) * len(qids)
    )
    fused = {
        c.name: fuse(lists, c.config, qids, c.depth, lambda: progress.advance(task))
        for c in CANDIDATES
    }
    fused["cv"], picked = cross_validated_fusion(args, lists, collection, progress)

    single_rows = {name: as_row(score(collection, run)) for name, run in singles.items()}
    best = max(single_rows, key=lambda name: single_rows[name].ndcg)
    rows = compare_with(collection, singles[best], fused, progress)
    cv_row = rows.pop("cv")
    return Evaluated(
        collection, single_rows, best, rows, cv_row, picked, fused, notes,
        time.perf_counter() - started,
    )  # fmt: skip


def as_row(scored: Scored) -> Row:
    return Row(scored.mean_ndcg, scored.mean_recall)


def compare_with(
    collection: Collection, baseline: Run, fused: dict[str, Run], progress: Progress
) -> dict[str, Row]:
    """Each fused run's scores and its paired tests against the best single channel."""
    base_ndcg = score(collection, baseline).mean_ndcg
    rows: dict[str, Row] = {}
    for name in progress.track(fused, description=f"{collection.name}: significance tests"):
        row = as_row(score(collection, fused[name]))
        row.gain = row.ndcg - base_ndcg
        row.p_t, row.p_perm = p_values(collection.qrels, baseline, fused[name])
        rows[name] = row
    return rows


# -- the report ---------------------------------------------------------------------------


def verdict(row: Row) -> str:
    """Beats, ties or loses to the best single channel (point estimate of nDCG@10)."""
    return "beats" if row.gain > 0 else "loses" if row.gain < 0 else "ties"


def report_collection(args: argparse.Namespace, result: Evaluated, marks: dict[str, str]) -> None:
    c = result.collection
    grades = sorted({grade for docs in c.qrels.values() for grade in docs.values()})
    print(
        f"\n== {c.name} ({c.kind}): {len(c.documents)} documents, {len(c.queries)} queries, "
        f"{len(c.qrels)} judged; nDCG@10 gain = grade (judged {grades[0]}-{grades[-1]}), "
        f"R@100 at grade >= {c.recall_grade}; "
        f"{time.strftime('%M:%S', time.gmtime(result.seconds))} end to end"
    )
    print(
        f"bm25 k1={args.k1} b={args.b} stemmer={args.stemmer}; text_dense {args.model}; "
        f"p: paired t-test / randomisation test ({PERMUTATIONS} permutations) on nDCG@10 "
        f"against the best single channel, {result.best}"
    )
    print(f"{'system':<24} {'nDCG@10':>8} {'R@100':>7} {'dNDCG':>8} {'p t':>6} {'p perm':>7}")
    for name, row in result.singles.items():
        print(f"{name:<24} {row.ndcg:>8.4f} {row.recall:>7.4f}   {result.notes[name]}")
    for name, row in {**result.candidates, f"cv {args.folds}-fold": result.cv}.items():
        mark = marks.get(name, "")
        print(
            f"{name:<24} {row.ndcg:>8.4f} {row.recall:>7.4f} {row.gain:>+8.4f} "
            f"{row.p_t:>6.3f} {row.p_perm:>7.3f}  {verdict(row)}{mark}"
        )
    print(
        f"cv: {args.folds} folds (query shuffle seed {args.seed}); each fold fused 1000 deep "
        "with the setting best on the other folds (min-max or z, BM25 weight 0..1 step 0.05):"
    )
    for number, fold in enumerate(result.picked, 1):
        print(
            f"  fold {number} ({len(fold.queries)} queries): {describe(fold.chosen)} "
            f"(bm25/text_dense), training nDCG@10 {fold.train_ndcg:.4f}"
        )


def report_study(results: list[Evaluated], chosen: str | None, marks: dict[str, str]) -> None:
    names = [r.collection.name for r in results]
    print(
        f"\n== study over {', '.join(names)}: nDCG@10 and R@100 per collection, their means; "
        "ok = nDCG@10 not below the best single channel's on every collection"
    )
    header = " ".join(f"{n[:16]:>16} {'R@100':>7}" for n in names)
    print(f"{'system':<24} {header} {'mean':>7} {'R@100':>7} ok")
    rows = {channel: [r.singles[channel] for r in results] for channel in CHANNELS}
    rows.update({c.name: [r.candidates[c.name] for r in results] for c in CANDIDATES})
    for name, by_collection in rows.items():
        cells = " ".join(f"{row.ndcg:>16.4f} {row.recall:>7.4f}" for row in by_collection)
        mean_ndcg = statistics.fmean(row.ndcg for row in by_collection)
        mean_recall = statistics.fmean(row.recall for row in by_collection)
        ok = "" if name in CHANNELS else "ok" if all(r.gain >= 0 for r in by_collection) else "--"
        mark = ("  <- chosen" if name == chosen else "") + marks.get(name, "")
        print(f"{name:<24} {cells} {mean_ndcg:>7.4f} {mean_recall:>7.4f} {ok}{mark}")
    print(
        "rule: among candidates not below the best single channel on any collection, the "
        f"best mean nDCG@10 (ties: the first listed). Chosen: {chosen or 'none qualifies'}"
    )


def study_choice(results: list[Evaluated]) -> str | None:
    ndcg = {
        c.name: {r.collection.name: r.candidates[c.name].ndcg for r in results} for c in CANDIDATES
    }
    best = {r.collection.name: r.singles[r.best].ndcg for r in results}
    return choose(ndcg, best)


# -- the command line ---------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data",
        type=Path,
        nargs="+",
        required=True,
        help="collection folders: BEIR layout, or a captions.txt (image,caption)",
    )
    parser.add_argument("--out", type=Path, required=True, help="runs go to OUT/<folder name>")
    parser.add_argument(
        "--fusion",
        choices=("chosen", "cv"),
        default="chosen",
        help="the fused run written to fused.trec: the study's choice, or cross-validated",
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
        help="read OUT/<folder name>/{bm25,text_dense}.trec instead of indexing",
    )
    args = parser.parse_args()
    if args.folds < 2:
        parser.error("--folds must be at least 2")
    names = [folder.name for folder in args.data]
    if len(set(names)) < len(names):
        parser.error("--data folders must have distinct names (each gets OUT/<name>)")
    return args


@contextmanager
def quiet_libraries() -> Iterator[None]:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="unsafe cast from uint64")  # ranx's numba
        # scipy's t-test of a run against itself (cv may pick the best channel's setting)
        warnings.filterwarnings("ignore", message="Precision loss occurred in moment")
        yield


def main() -> None:
    args = parse_args()
    with quiet_libraries(), progress_bar() as progress:
        results = [evaluate_collection(args, folder, progress) for folder in args.data]
    chosen = study_choice(results)
    marks = {SHIPPED: "  (kb-qa before)"}
    shipped_now = kb_qa_candidate()
    if shipped_now is not None:
        marks[shipped_now] = marks.get(shipped_now, "") + "  (kb-qa.yaml)"
    for result in results:
        report_collection(args, result, marks)
        written = chosen if args.fusion == "chosen" else "cv"
        out = args.out / result.collection.name / "fused.trec"
        if written is None:
            out.unlink(missing_ok=True)  # no candidate qualified: leave no stale run behind
        else:
            write_trec(out, result.runs[written], written.replace(" ", "_"))
    report_study(results, chosen, marks)


if __name__ == "__main__":
    main()
