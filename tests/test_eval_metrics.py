"""``vlsearch eval``'s numbers: trec_eval's values on a case worked out by hand, the
paired tests and their Holm correction against the libraries' own, win/tie/loss and
latency percentiles against the stored per-query figures."""

from __future__ import annotations

import json
from math import log2

import numpy as np
import pytest

from tests.eval_support import write_suite

pytest.importorskip("ranx")

# The hand-checked case. Judgements (grade >= 1 is relevant for the binary metrics, as
# trec_eval's default -l 1):
QRELS = """\
q1 0 cat-0 3
q1 0 cat-1 0
q1 0 cat-2 1
q1 0 coffee-0 2
q1 0 coffee-1 1
q2 0 rocket-0 1
q3 0 piano-0 2
"""
# A run listed out of order, with a rank column that disagrees with the scores: trec_eval
# orders by score, so q1 ranks cat-0, cat-1, cat-2, garden-0 (unjudged), coffee-0, and
# coffee-1 (relevant) is never retrieved. q2 finds its one relevant document third; q3
# finds nothing relevant.
RUN = """\
q1 Q0 coffee-0 1 1.0 hand
q1 Q0 garden-0 2 2.0 hand
q1 Q0 cat-2 3 3.0 hand
q1 Q0 cat-1 4 4.0 hand
q1 Q0 cat-0 5 5.0 hand
q2 Q0 rocket-0 1 0.7 hand
q2 Q0 camera-1 2 0.8 hand
q2 Q0 camera-0 3 0.9 hand
q3 Q0 bicycle-0 1 1.0 hand
"""
# q1: DCG@10 = 3/log2(2) + 0/log2(3) + 1/log2(4) + 0/log2(5) + 2/log2(6) = 4.273706;
#     IDCG@10 (grades 3, 2, 1, 1) = 3 + 2/log2(3) + 1/log2(4) + 1/log2(5) = 5.192536;
#     nDCG@10 = 0.823048 (linear gain, trec_eval's ndcg_cut.10).
#     Exponential gain (2^g - 1): (7 + 1/2 + 3/log2(6)) / (7 + 3/log2(3) + 1/2 + 1/log2(5))
#     = 8.660558 / 9.823466 = 0.881619 (ranx ndcg_burges, not trec_eval's).
#     P@5 = 3/5; P@10 = 3/10 (trec_eval divides by the cut-off); Recall@100 = 3/4;
#     MRR@10 = 1/1; AP = (1/1 + 2/3 + 3/5) / 4 relevant = 0.566667.
# q2: nDCG@10 = (1/log2(4)) / 1 = 0.5; P@5 = 1/5; P@10 = 1/10; Recall = 1; MRR = 1/3;
#     AP = (1/3) / 1.
# q3: every metric 0.
EXPECTED = {
    "ndcg@10": {"q1": 4.273705614469083 / 5.192536065216308, "q2": 0.5, "q3": 0.0},
    "ndcg_burges@10": {"q1": 8.660558421703625 / 9.823465818787767, "q2": 0.5, "q3": 0.0},
    "precision@5": {"q1": 0.6, "q2": 0.2, "q3": 0.0},
    "precision@10": {"q1": 0.3, "q2": 0.1, "q3": 0.0},
    "recall@100": {"q1": 0.75, "q2": 1.0, "q3": 0.0},
    "mrr@10": {"q1": 1.0, "q2": 1 / 3, "q3": 0.0},
    "map@100": {"q1": (1 + 2 / 3 + 3 / 5) / 4, "q2": 1 / 3, "q3": 0.0},
}


def test_the_hand_checked_case(tmp_path, eval_collection):
    assert EXPECTED["ndcg@10"]["q1"] == pytest.approx(
        (3 + 1 / log2(4) + 2 / log2(6)) / (3 + 2 / log2(3) + 1 / log2(4) + 1 / log2(5))
    )
    from pipeline.evaluation import run_eval

    (tmp_path / "qrels.txt").write_text(QRELS)
    (tmp_path / "hand.trec").write_text(RUN)
    queries = "".join(
        json.dumps({"id": q, "text": f"query {q}"}) + "\n" for q in ("q1", "q2", "q3")
    )
    (tmp_path / "queries.jsonl").write_text(queries)
    suite = write_suite(
        tmp_path / "suite.yaml",
        {"hand": {"run": "hand.trec"}, "again": {"run": "hand.trec"}},
        eval_collection["config"],
        metrics=["nDCG@10", "ndcg_burges@10", "P@5", "P@10", "R@100", "MRR@10", "MAP@100"],
    )
    report = run_eval(
        eval_collection["index"],
        tmp_path / "queries.jsonl",
        tmp_path / "qrels.txt",
        suite,
        tmp_path / "out",
        cache=None,
    )
    for metric, by_query in EXPECTED.items():
        assert report.per_query["hand"][metric] == pytest.approx(by_query, abs=1e-12), metric
        mean = sum(by_query.values()) / 3
        assert report.system("hand").means[metric] == pytest.approx(mean, abs=1e-12)
    # The run file as written ranks as trec_eval would read it.
    lines = (tmp_path / "out" / "runs" / "hand.trec").read_text().splitlines()
    assert [line.split()[2] for line in lines[:5]] == [
        "cat-0", "cat-1", "cat-2", "garden-0", "coffee-0"
    ]  # fmt: skip
    # A system against itself: no difference anywhere, every query a tie.
    same = [row for row in report.comparisons if row.system == "again"]
    assert {(row.difference, row.ties, row.p_random) for row in same} == {(0.0, 3, 1.0)}
    assert all(row.p_t is None for row in same)  # a t-test of identical values has no p


def test_the_tests_and_their_correction(tmp_path):
    """Against the libraries' own answers: scipy's t-test (what ranx runs), ranx's own
    Fisher randomisation test (within its sampling error), statsmodels' Holm."""
    import ranx
    from scipy.stats import ttest_rel
    from statsmodels.stats.multitest import multipletests

    from pipeline.evaluation.metrics import compare, per_query

    rng = np.random.default_rng(7)
    qids = [f"q{i}" for i in range(30)]
    docs = [f"d{j}" for j in range(20)]
    qrels = {
        q: {d: int(rng.integers(0, 4)) for d in rng.choice(docs, 8, replace=False)} for q in qids
    }
    rankings = {
        name: {q: [(d, float(-i)) for i, d in enumerate(rng.permutation(docs))] for q in qids}
        for name in ("base", "a", "b", "c")
    }
    metrics = ["ndcg@10", "map@100"]
    scores = {name: per_query(qrels, ranked, metrics) for name, ranked in rankings.items()}
    rows = compare(qrels, rankings, scores, "base", metrics, permutations=20_000, seed=1)
    assert {row.system for row in rows} == {"a", "b", "c"}

    ranx_runs = {
        name: ranx.Run.from_dict(
            {q: {d: -r for r, (d, _) in enumerate(ranked[q])} for q in qids}, name=name
        )
        for name, ranked in rankings.items()
    }
    fisher = ranx.compare(
        ranx.Qrels.from_dict(qrels),
        list(ranx_runs.values()),
        metrics,
        stat_test="fisher",
        n_permutations=20_000,
    )
    for metric in metrics:
        of_metric = [row for row in rows if row.metric == metric]
        for row in of_metric:
            base = np.array([scores["base"][metric][q] for q in qids])
            mine = np.array([scores[row.system][metric][q] for q in qids])
            assert row.p_t == pytest.approx(ttest_rel(base, mine).pvalue)
            assert row.difference == pytest.approx(mine.mean() - base.mean())
            assert row.wins == int((mine > base).sum()) and row.losses == int((mine < base).sum())
            assert row.wins + row.ties + row.losses == len(qids)
            p_ranx = fisher.comparisons[("base", row.system)][metric]["p_value"]
            assert row.p_random == pytest.approx(p_ranx, abs=0.03)
        for raw, corrected in (("p_t", "p_t_holm"), ("p_random", "p_random_holm")):
            expected = multipletests([getattr(r, raw) for r in of_metric], method="holm")[1]
            assert [getattr(r, corrected) for r in of_metric] == pytest.approx(list(expected))


def test_randomisation_p_is_the_same_in_every_run():
    """ranx's own Fisher test is not (numba's per-thread generators ignore its seed): a
    resumed evaluation must give the p values of an uninterrupted one."""
    from pipeline.evaluation.metrics import randomisation_p

    rng = np.random.default_rng(3)
    a, b = rng.random(40), rng.random(40)
    assert len({randomisation_p(a, b, 5000, seed=42) for _ in range(3)}) == 1


def test_latency_and_counts_follow_the_stored_results(tmp_path, eval_collection):
    from pipeline.evaluation import run_eval

    suite = write_suite(
        tmp_path / "suite.yaml",
        {"bm25": {"recall.channels": ["bm25"], "rerank.enabled": False}, "fused+clip": {}},
        eval_collection["config"],
        permutations=200,
    )
    out = tmp_path / "out"
    report = run_eval(
        eval_collection["index"],
        eval_collection["queries"],
        eval_collection["qrels"],
        suite,
        out,
        cache=None,
    )
    stored = [json.loads(line) for line in (out / "results" / "fused+clip.jsonl").open()]
    assert len(stored) == report.judged == 9
    summary = report.system("fused+clip")
    for stage in ("embed_s", "recall_s", "fusion_s", "rerank_s", "total_s"):
        values = [row["timings"][stage] for row in stored]
        assert summary.latency[stage].p50 == pytest.approx(np.percentile(values, 50))
        assert summary.latency[stage].p95 == pytest.approx(np.percentile(values, 95))
    assert "rerank_s" not in report.system("bm25").latency  # it does not rerank
    assert summary.rerank_pairs == sum(len(row["results"]) for row in stored)
    # Stage two's output is its top_n 5; the photo query has only the 4 photos to rank.
    assert [len(row["results"]) for row in stored] == [5] * 8 + [4]
    assert summary.mean_results == pytest.approx(44 / 9)
    failed = [p for p in report.problems if p.kind == "query_failed"]
    assert [(p.line, p.message.split(":")[0]) for p in failed] == [(9, "bm25")]  # no text
    for metric in report.metrics:
        per_query = report.per_query["fused+clip"][metric]
        assert summary.means[metric] == pytest.approx(np.mean(list(per_query.values())))


def test_ranx_linear_gain_is_trec_eval_ndcg():
    """The variant the docs name: ranx "ndcg" (gain = grade), not "ndcg_burges"."""
    import ranx

    qrels = {"q": {"a": 3, "b": 1}}
    run = {"q": {"b": 2.0, "a": 1.0}}
    linear = ranx.evaluate(qrels, run, "ndcg@10")
    exponential = ranx.evaluate(qrels, run, "ndcg_burges@10")
    assert linear == pytest.approx((1 + 3 / log2(3)) / (3 + 1 / log2(3)))
    assert exponential == pytest.approx((1 + 7 / log2(3)) / (7 + 1 / log2(3)))
