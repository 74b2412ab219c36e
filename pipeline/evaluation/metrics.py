"""Metrics (ranx), paired significance tests and their Holm correction, win/tie/loss and
latency percentiles. No metric is computed here by hand.

* Metrics: ``ranx.evaluate`` per query. ``ndcg@k`` is ranx's Järvelin-Kekäläinen form
  with linear gain (gain = grade, discount log2(rank + 1)), which is what trec_eval's
  ``ndcg_cut`` computes; ``ndcg_burges@k`` is the exponential-gain (2^grade - 1) form.
  Binary metrics count grade >= 1 as relevant unless the name says ``-lN``.
* Runs go to ranx scored by rank, so ranx ranks exactly as the system did, ties included.
  They go as plain dicts: ranx's ``Run`` and ``Qrels`` objects cost seconds of numba
  compilation in every new process (their code is not cached), the dict path does not.
* Paired t-test: ranx's ``paired_student_t_test``, the one ``ranx.compare(stat_test=
  "student")`` runs (scipy's ``ttest_rel``, two-sided), on the per-query values.
* Randomisation test: scipy's ``permutation_test`` over paired samples (a sign flip of
  each query's difference; the mean difference, two-sided), seeded. ranx's own "fisher"
  test draws from numba's per-thread generators, which its seed does not fix, so two
  runs on the same numbers give different p values; a resumed evaluation must equal an
  uninterrupted one exactly, so the permutations come from scipy (a test checks the two
  agree to within sampling error).
* Holm (statsmodels ``multipletests``) across the systems compared with the baseline,
  for each metric and each test apart.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
from pydantic import BaseModel

from pipeline.evaluation.errors import EvalError
from pipeline.evaluation.inputs import Qrels, Ranking

PerQuery = dict[str, dict[str, float]]
"""metric -> qid -> value."""
_EMPTY = "\x00no-results"  # stands for an empty ranking: ranx wants a document per query


class Comparison(BaseModel):
    """One system against the baseline on one metric."""

    system: str
    metric: str
    baseline: float
    value: float
    difference: float
    p_t: float | None = None
    p_t_holm: float | None = None
    p_random: float | None = None
    p_random_holm: float | None = None
    wins: int
    ties: int
    losses: int


class Percentiles(BaseModel):
    p50: float
    p95: float


def per_query(qrels: Qrels, rankings: Mapping[str, Ranking], metrics: Sequence[str]) -> PerQuery:
    """Each metric of each judged query (every query of ``qrels``; one the system did not
    answer counts as an empty ranking)."""
    ranx = _ranx()
    run = ranx_run(qrels, rankings)
    with _quiet():
        found = ranx.evaluate(qrels, run, list(metrics), return_mean=False)
    if len(metrics) == 1:
        found = {metrics[0]: found}
    # The dict path gives each metric's values in the qrels' (and run's) query order.
    return {m: dict(zip(qrels, map(float, found[m]), strict=True)) for m in metrics}


def means(scores: PerQuery) -> dict[str, float]:
    return {metric: float(np.mean(list(values.values()))) for metric, values in scores.items()}


def ranx_run(qrels: Qrels, rankings: Mapping[str, Ranking]) -> dict[str, dict[str, float]]:
    """The judged queries' rankings in the qrels' order, scored by rank (ranx sorts by
    score: the system's own order must survive equal scores)."""
    scored: dict[str, dict[str, float]] = {}
    for qid in qrels:
        ranking = rankings.get(qid) or []
        docs = {docid: float(len(ranking) - i) for i, (docid, _) in enumerate(ranking)}
        scored[qid] = docs or {_EMPTY: 0.0}
    return scored


def compare(
    qrels: Qrels,
    rankings: Mapping[str, Mapping[str, Ranking]],
    scores: Mapping[str, PerQuery],
    baseline: str,
    metrics: Sequence[str],
    permutations: int,
    seed: int,
) -> list[Comparison]:
    """Every system but the baseline against it, on every metric, with both tests and
    their Holm-corrected p values."""
    _ranx()
    from ranx.statistical_tests import paired_student_t_test

    qids = list(qrels)
    rows: list[Comparison] = []
    for name in (name for name in rankings if name != baseline):
        for metric in metrics:
            base = np.array([scores[baseline][metric][q] for q in qids])
            mine = np.array([scores[name][metric][q] for q in qids])
            with _quiet():
                p_t = float(paired_student_t_test(base, mine)[0])
            rows.append(
                Comparison(
                    system=name,
                    metric=metric,
                    baseline=float(base.mean()),
                    value=float(mine.mean()),
                    difference=float(mine.mean() - base.mean()),
                    p_t=None if np.isnan(p_t) else p_t,
                    p_random=randomisation_p(base, mine, permutations, seed),
                    wins=int(np.sum(mine > base)),
                    ties=int(np.sum(mine == base)),
                    losses=int(np.sum(mine < base)),
                )
            )
    for metric in metrics:
        of_metric = [row for row in rows if row.metric == metric]
        _holm(of_metric, "p_t", "p_t_holm")
        _holm(of_metric, "p_random", "p_random_holm")
    return rows


def randomisation_p(
    control: np.ndarray, treatment: np.ndarray, permutations: int, seed: int
) -> float:
    """Two-sided p of the paired randomisation test on the mean difference; exact when
    ``permutations`` covers every sign pattern."""
    permutation_test = _need("scipy.stats").permutation_test
    if len(control) == 0 or np.array_equal(control, treatment):
        return 1.0
    result = permutation_test(
        (treatment, control),
        _mean_difference,
        permutation_type="samples",
        vectorized=True,
        n_resamples=permutations,
        alternative="two-sided",
        rng=np.random.default_rng(seed),
    )
    return float(min(1.0, result.pvalue))


def _mean_difference(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x - y, axis=axis)


def _holm(rows: list[Comparison], field: str, corrected: str) -> None:
    multipletests = _need("statsmodels.stats.multitest").multipletests
    tested = [row for row in rows if getattr(row, field) is not None]
    if not tested:
        return
    adjusted = multipletests([getattr(row, field) for row in tested], method="holm")[1]
    for row, value in zip(tested, adjusted, strict=True):
        setattr(row, corrected, float(value))


def latency(timings: Sequence[Mapping[str, float]]) -> dict[str, Percentiles]:
    """p50 and p95 of each stage's seconds over the queries that ran it."""
    stages = dict.fromkeys(stage for row in timings for stage in row)
    found = {}
    for stage in stages:
        values = np.array([row[stage] for row in timings if stage in row])
        p50, p95 = np.percentile(values, [50, 95])
        found[stage] = Percentiles(p50=float(p50), p95=float(p95))
    return found


def _ranx() -> Any:
    return _need("ranx")


def _need(module: str) -> Any:
    """An optional library of the ``eval`` extra, or an error saying how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise EvalError(
            f"vlsearch eval needs {module.split('.')[0]} (with ranx, scipy, statsmodels and "
            "matplotlib): pip install -e '.[eval]'"
        ) from None


@contextmanager
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="unsafe cast from uint64")  # ranx's numba
        # scipy's t-test of two identical per-query lists (p is then undefined: None)
        warnings.filterwarnings("ignore", message="Precision loss occurred in moment")
        warnings.filterwarnings("ignore", category=RuntimeWarning)
        yield
