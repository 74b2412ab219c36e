"""What an evaluation found, as the Python API returns it and ``report.json`` holds it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from pipeline.evaluation.inputs import InputProblem
from pipeline.evaluation.metrics import Comparison, Percentiles

TINY_NOTICE = (
    "Made with the tiny random-weight models (profile 'tiny'): rankings and scores are "
    "meaningless; only the latency figures are real."
)


class SystemSummary(BaseModel):
    name: str
    kind: Literal["config", "run", "rerank_run"]
    description: str = Field(description="Its overrides, or the run file it reads.")
    queries: int = Field(description="Judged queries it answered (failed ones included).")
    failed_queries: int
    mean_results: float = Field(description="Results per query, on average.")
    means: dict[str, float] = Field(description="metric -> mean over the judged queries.")
    latency: dict[str, Percentiles] = Field(
        default_factory=dict, description="stage (embed_s, recall_s, ...) -> seconds."
    )
    rerank_pairs: int = 0
    cached_pairs: int = Field(default=0, description="Of rerank_pairs, served from the cache.")
    top_n: int | None = Field(default=None, description="Candidates reranked, where it reranks.")
    run_file: str


class Sweep(BaseModel):
    """Systems that differ only in rerank.top_n, in increasing top_n."""

    systems: list[str]
    top_n: list[int]
    plot: str | None = None


class EvalReport(BaseModel):
    suite: str
    index: str
    queries_file: str
    qrels_file: str
    out: str
    baseline: str
    metrics: list[str]
    primary_metric: str
    depth: int
    queries: int = Field(description="Queries read from the queries file.")
    judged: int = Field(description="Queries with judgements: those run and measured.")
    unjudged: int = Field(description="Queries without judgements: not run, not measured.")
    tiny: bool
    warning: str | None = None
    permutations: int
    seed: int
    cache: str | None = Field(description="The score cache file; None: --no-cache.")
    systems: list[SystemSummary]
    comparisons: list[Comparison]
    per_query: dict[str, dict[str, dict[str, float]]] = Field(
        description="system -> metric -> qid -> value."
    )
    sweeps: list[Sweep] = Field(default_factory=list)
    difference_plots: dict[str, str] = Field(
        default_factory=dict, description="system -> its per-query difference plot (PNG)."
    )
    problems: list[InputProblem] = Field(default_factory=list)
    problem_counts: dict[str, int] = Field(default_factory=dict)
    files: dict[str, str] = Field(default_factory=dict, description="What was written where.")
    seconds: float = 0.0

    def system(self, name: str) -> SystemSummary:
        return next(summary for summary in self.systems if summary.name == name)
