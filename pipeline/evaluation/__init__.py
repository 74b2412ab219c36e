"""``vlsearch eval``: systems of a suite run over judged queries and compared with a
baseline (metrics, paired tests, latency, plots, reports), resumable query by query.

Modules, one idea each: ``inputs`` (queries, qrels, runs and their problems), ``suite``
(the suite file), ``systems`` (how each kind of system ranks), ``store`` (per-query
results on disk, resume), ``cache`` (reranker scores on disk), ``metrics`` (ranx, tests,
Holm), ``outputs`` (TREC runs, JSON, CSV), ``plots``, ``report`` (Markdown and HTML),
``evaluate`` (``run_eval``, which ties them together).
"""

from pipeline.evaluation.errors import EvalError
from pipeline.evaluation.evaluate import EvalProgress, run_eval
from pipeline.evaluation.results import EvalReport, SystemSummary
from pipeline.evaluation.suite import Suite, SuiteError, load_suite

__all__ = [
    "EvalError",
    "EvalProgress",
    "EvalReport",
    "Suite",
    "SuiteError",
    "SystemSummary",
    "load_suite",
    "run_eval",
]
