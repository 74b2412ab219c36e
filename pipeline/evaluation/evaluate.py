"""``run_eval``: a suite's systems over judged queries, measured against a baseline.

The order of work: validate the suite and every system's config (before any model
loads), read and cross-check the inputs (every bad line reported, the rest used), then
run the systems one after another, query by query, storing each query's result as it
is done (:mod:`pipeline.evaluation.store`); only then compute the metrics, tests and
plots from the stored results and write the outputs. So an evaluation killed anywhere
and resumed computes its outputs from exactly the results an uninterrupted one would
have stored.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

from indexers.backends import open_index
from pipeline.config import Config
from pipeline.evaluation import metrics as measure
from pipeline.evaluation import outputs, plots
from pipeline.evaluation.cache import ScoreCache, default_cache_path
from pipeline.evaluation.errors import EvalError
from pipeline.evaluation.inputs import (
    EvalQuery,
    Problems,
    Qrels,
    Ranking,
    check_judgements,
    check_run,
    read_qrels,
    read_queries,
    read_run,
)
from pipeline.evaluation.report import write_reports
from pipeline.evaluation.results import TINY_NOTICE, EvalReport, Sweep, SystemSummary
from pipeline.evaluation.store import (
    RESULTS_DIR,
    QueryResult,
    ResultStore,
    State,
    check_state,
    fingerprint,
    prepare_out,
)
from pipeline.evaluation.suite import (
    ConfigSystem,
    RerankRunSystem,
    RunSystem,
    Suite,
    load_suite,
    system_configs,
)
from pipeline.evaluation.systems import PipelineSystem, System
from pipeline.evaluation.systems import RerankRunSystem as RerankRunner
from pipeline.evaluation.systems import RunSystem as RunRunner
from pipeline.model_pool import ModelPool

logger = logging.getLogger(__name__)

EvalProgress = Callable[[str, int, int], None]
"""Called as queries are done: ``(system, done, total)``; the first call of a system
gives the queries already stored (resume)."""


def run_eval(
    index: Path,
    queries: Path,
    qrels: Path,
    suite: Path,
    out: Path,
    *,
    resume: bool = False,
    cache: Path | Literal["default"] | None = "default",
    config: Path | None = None,
    overrides: Sequence[str] = (),
    progress: EvalProgress | None = None,
    models: ModelPool | None = None,
) -> EvalReport:
    """Run every system of ``suite`` on the judged queries and write the outputs to
    ``out``. ``cache``: the reranker score cache file (``"default"``: the user cache's
    ``rerank-scores.sqlite``; None: no cache). ``config`` replaces the suite's base
    config; ``overrides`` (``key=value``) apply to every pipeline system before its own
    keys. ``models`` shares models already in memory."""
    started = time.perf_counter()
    index, queries, qrels, suite, out = (Path(p) for p in (index, queries, qrels, suite, out))
    spec = load_suite(suite)
    configs = system_configs(spec, suite, config, list(overrides))
    if not index.is_dir():
        raise EvalError(f"--index {index}: no such index folder")
    prepare_out(out, resume)

    problems = Problems()
    with open_index(index) as opened:
        in_index = opened.ids()
        manifest = opened.manifest
    read = read_queries(queries, problems)
    judgements = read_qrels(qrels, problems)
    judged = check_judgements(judgements, read, in_index, qrels, queries, problems)
    runs = _read_runs(spec, read, judged, in_index, problems)
    problems.log_unlogged()
    if not judged:
        raise EvalError(f"no query of {queries} has judgements in {qrels}: nothing to measure")

    state = State(
        inputs={
            "queries": _digest(queries),
            "qrels": _digest(qrels),
            "index": _digest(index / "manifest.json") + f":{len(in_index)}",
        },
        systems={
            name: _system_fingerprint(spec, name, configs.get(name), runs) for name in spec.systems
        },
    )
    check_state(out, state)

    cache_path = default_cache_path() if cache == "default" else cache
    score_cache = ScoreCache(cache_path) if cache_path is not None else None
    pool = models or ModelPool()
    results: dict[str, dict[str, QueryResult]] = {}
    try:
        for name in spec.systems:
            system = _open_system(spec, name, configs.get(name), runs, index, pool, score_cache)
            try:
                results[name] = _run_system(system, out, judged, read, progress)
            finally:
                system.close()
    finally:
        if score_cache is not None:
            score_cache.close()

    tiny = manifest.profile == "tiny" or any(c.profile == "tiny" for c in configs.values())
    for name, by_query in results.items():
        for qid, result in by_query.items():
            if result.error is not None:
                problems.add("query_failed", queries, read[qid].line, f"{name}: {result.error}")
    report = _measure(
        spec,
        configs,
        {q: judgements.qrels[q] for q in judged},
        results,
        tiny=tiny,
        paths=(suite, index, queries, qrels, out),
        cache=cache_path,
        queries=len(read),
    )
    report.problems = problems.items
    report.problem_counts = problems.counts()
    report.seconds = time.perf_counter() - started
    _write_outputs(out, report, results)
    return report


def _read_runs(
    spec: Suite,
    queries: dict[str, EvalQuery],
    judged: list[str],
    in_index: set[str],
    problems: Problems,
) -> dict[Path, dict[str, Ranking]]:
    """Each run file the suite names, read and checked once however many systems use it."""
    runs: dict[Path, dict[str, Ranking]] = {}
    for system in spec.systems.values():
        path = getattr(system, "run", None) or getattr(system, "rerank_run", None)
        if path is not None and path not in runs:
            runs[path] = check_run(read_run(path, problems), queries, judged, in_index, problems)
    return runs


def _open_system(
    spec: Suite,
    name: str,
    config: Config | None,
    runs: dict[Path, dict[str, Ranking]],
    index: Path,
    models: ModelPool,
    cache: ScoreCache | None,
) -> System:
    system = spec.systems[name]
    if isinstance(system, RunSystem):
        return RunRunner(name, runs[system.run], spec.depth)
    assert config is not None
    if isinstance(system, RerankRunSystem):
        rankings = runs[system.rerank_run]
        return RerankRunner(name, config, index, rankings, system.top_n, spec.depth, models, cache)
    return PipelineSystem(name, config, index, spec.depth, models, cache)


def _run_system(
    system: System,
    out: Path,
    judged: list[str],
    queries: dict[str, EvalQuery],
    progress: EvalProgress | None,
) -> dict[str, QueryResult]:
    store = ResultStore(out / RESULTS_DIR / f"{system.name}.jsonl")
    done = store.load()
    todo = [qid for qid in judged if qid not in done]
    if progress is not None:
        progress(system.name, len(judged) - len(todo), len(judged))
    try:
        for number, qid in enumerate(todo, 1):
            result = system.run(queries[qid])
            store.append(result)
            done[qid] = result
            if progress is not None:
                progress(system.name, len(judged) - len(todo) + number, len(judged))
    finally:
        store.close()
    return {qid: done[qid] for qid in judged}


def _measure(
    spec: Suite,
    configs: dict[str, Config],
    qrels: Qrels,
    results: dict[str, dict[str, QueryResult]],
    *,
    tiny: bool,
    paths: tuple[Path, Path, Path, Path, Path],
    cache: Path | None,
    queries: int,
) -> EvalReport:
    suite, index, queries_path, qrels_path, out = paths
    rankings = {
        name: {qid: list(result.results) for qid, result in by_query.items()}
        for name, by_query in results.items()
    }
    scores = {name: measure.per_query(qrels, run, spec.metrics) for name, run in rankings.items()}
    comparisons = measure.compare(
        qrels, rankings, scores, spec.baseline, spec.metrics, spec.permutations, spec.seed
    )
    systems = [
        _summary(spec, name, configs.get(name), results[name], measure.means(scores[name]))
        for name in spec.systems
    ]
    return EvalReport(
        suite=str(suite),
        index=str(index),
        queries_file=str(queries_path),
        qrels_file=str(qrels_path),
        out=str(out),
        baseline=spec.baseline,
        metrics=spec.metrics,
        primary_metric=spec.primary_metric,
        depth=spec.depth,
        queries=queries,
        judged=len(qrels),
        unjudged=queries - len(qrels),
        tiny=tiny,
        warning=TINY_NOTICE if tiny else None,
        permutations=spec.permutations,
        seed=spec.seed,
        cache=str(cache) if cache is not None else None,
        systems=systems,
        comparisons=comparisons,
        per_query=scores,
        sweeps=_sweeps(spec, configs),
    )


def _summary(
    spec: Suite,
    name: str,
    config: Config | None,
    results: dict[str, QueryResult],
    means: dict[str, float],
) -> SystemSummary:
    system = spec.systems[name]
    rows = list(results.values())
    timings = [row.timings for row in rows if row.timings is not None and row.error is None]
    return SystemSummary(
        name=name,
        kind=system.kind,
        description=_describe(system, config),
        queries=len(rows),
        failed_queries=sum(row.error is not None for row in rows),
        mean_results=sum(len(row.results) for row in rows) / max(len(rows), 1),
        means=means,
        latency=measure.latency(timings) if timings else {},
        rerank_pairs=sum(row.rerank_pairs for row in rows),
        cached_pairs=sum(row.cached_pairs for row in rows),
        top_n=_top_n(system, config),
        run_file=f"{outputs.RUNS_DIR}/{name}.trec",
    )


def _describe(system: ConfigSystem | RunSystem | RerankRunSystem, config: Config | None) -> str:
    if isinstance(system, RunSystem):
        return f"the run `{system.run}`"
    own = ", ".join(f"`{key}={json.dumps(value)}`" for key, value in system.overrides.items())
    if isinstance(system, RerankRunSystem):
        assert config is not None
        top_n = system.top_n or config.rerank.top_n
        backend = config.reranker.backend
        found = f"reranker `{backend}` over the top {top_n} of `{system.rerank_run}`"
        return f"{found}, with {own}" if own else found
    return own or "the base config as it is"


def _top_n(system: ConfigSystem | RunSystem | RerankRunSystem, config: Config | None) -> int | None:
    if isinstance(system, RunSystem) or config is None:
        return None
    if isinstance(system, RerankRunSystem):
        return system.top_n or config.rerank.top_n
    return config.rerank.top_n if config.rerank.enabled else None


def _sweeps(spec: Suite, configs: dict[str, Config]) -> list[Sweep]:
    """Systems alike in everything but rerank.top_n (and reranking), grouped."""
    families: dict[str, dict[int, str]] = {}
    for name, system in spec.systems.items():
        config = configs.get(name)
        top_n = _top_n(system, config)
        if config is None or top_n is None:
            continue
        rest = config.model_dump(mode="json")
        rest["rerank"].pop("top_n")
        source = str(system.rerank_run) if isinstance(system, RerankRunSystem) else None
        family = json.dumps({"config": rest, "candidates": source}, sort_keys=True)
        families.setdefault(family, {}).setdefault(top_n, name)
    return [
        Sweep(systems=[members[n] for n in sorted(members)], top_n=sorted(members))
        for members in families.values()
        if len(members) >= 2
    ]


def _write_outputs(
    out: Path, report: EvalReport, results: dict[str, dict[str, QueryResult]]
) -> None:
    files: dict[str, str] = {}
    for name, by_query in results.items():
        path = out / outputs.RUNS_DIR / f"{name}.trec"
        outputs.write_run(path, {q: list(r.results) for q, r in by_query.items()}, name)
        files[f"run:{name}"] = str(path.relative_to(out))
    metric = report.primary_metric
    base = report.per_query[report.baseline][metric]
    for summary in report.systems:
        if summary.name == report.baseline:
            continue
        mine = report.per_query[summary.name][metric]
        relative = f"plots/difference-{summary.name}.png"
        plots.difference_plot(
            out / relative,
            summary.name,
            report.baseline,
            metric,
            [mine[q] - base[q] for q in base],
            report.tiny,
        )
        report.difference_plots[summary.name] = relative
    for number, sweep in enumerate(report.sweeps, 1):
        sweep.plot = f"plots/top-n-sweep-{number}.png"
        means = {s.name: s.means for s in report.systems}
        plots.sweep_plot(
            out / sweep.plot, sweep.systems, sweep.top_n, means, report.metrics, report.tiny
        )
    outputs.write_problems(out / "problems.jsonl", report.problems)
    files["problems"] = "problems.jsonl"
    files.update(outputs.write_metrics(out, report))
    files.update(write_reports(out, report))
    files["report_json"] = "report.json"
    report.files = files
    from indexers.atomic import atomic_write_text

    atomic_write_text(out / "report.json", report.model_dump_json(indent=2) + "\n")


def _system_fingerprint(
    spec: Suite, name: str, config: Config | None, runs: dict[Path, dict[str, Ranking]]
) -> str:
    system = spec.systems[name]
    settings: dict[str, object] = {"kind": system.kind, "depth": spec.depth}
    if config is not None:
        settings["config"] = config.model_dump(mode="json")
    if isinstance(system, RunSystem):
        settings["run"] = runs[system.run]
    if isinstance(system, RerankRunSystem):
        settings["run"] = runs[system.rerank_run]
        settings["top_n"] = system.top_n
    return fingerprint(settings)


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()[:16]
