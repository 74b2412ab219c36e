"""The machine-readable outputs: TREC runs, metrics as JSON and CSV, the problems list.

Every file is replaced atomically, so a kill while writing them leaves the old file or
the new one; ``--resume`` then writes them all again from the stored results.

A run file's score column is the system's score, except that a score not below the one
ranked above it (a tie, or a document the reranker could not read) is written one float
step below that one: trec_eval and ranx order a run by score, and must see the order the
system gave. CSV files made with the tiny models start with a ``#`` line saying so (read
them with ``comment="#"``).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator, Sequence
from pathlib import Path

from indexers.atomic import atomic_write_text
from pipeline.evaluation.inputs import InputProblem
from pipeline.evaluation.results import EvalReport

RUNS_DIR = "runs"


def trec_lines(qid: str, results: Sequence[tuple[str, float]], tag: str) -> Iterator[str]:
    previous = math.inf
    for rank, (docid, score) in enumerate(results, 1):
        if math.isnan(score) or score >= previous:
            score = 0.0 if previous == math.inf else math.nextafter(previous, -math.inf)
        previous = score
        yield f"{qid} Q0 {docid} {rank} {score!r} {tag}"


def write_run(path: Path, rankings: dict[str, list[tuple[str, float]]], tag: str) -> None:
    lines = [line for qid, results in rankings.items() for line in trec_lines(qid, results, tag)]
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "".join(f"{line}\n" for line in lines))


def write_metrics(out: Path, report: EvalReport) -> dict[str, str]:
    """metrics.json (means, per query, comparisons) and three CSV files; returns what
    went where."""
    files = {
        "metrics_json": "metrics.json",
        "means_csv": "metrics_mean.csv",
        "per_query_csv": "metrics_per_query.csv",
        "comparisons_csv": "comparisons.csv",
    }
    document = {
        "warning": report.warning,
        "baseline": report.baseline,
        "metrics": report.metrics,
        "means": {system.name: system.means for system in report.systems},
        "per_query": report.per_query,
        "comparisons": [row.model_dump() for row in report.comparisons],
    }
    atomic_write_text(out / files["metrics_json"], json.dumps(document, indent=2) + "\n")
    means = [[s.name, s.kind, *(s.means[m] for m in report.metrics)] for s in report.systems]
    _write_csv(out / files["means_csv"], ["system", "kind", *report.metrics], means, report)
    per_query = [
        [name, qid, *(by_metric[m][qid] for m in report.metrics)]
        for name, by_metric in report.per_query.items()
        for qid in by_metric[report.metrics[0]]
    ]
    header = ["system", "qid", *report.metrics]
    _write_csv(out / files["per_query_csv"], header, per_query, report)
    fields = [
        "system",
        "metric",
        "baseline",
        "value",
        "difference",
        "p_t",
        "p_t_holm",
        "p_random",
        "p_random_holm",
        "wins",
        "ties",
        "losses",
    ]
    rows = [[getattr(row, field) for field in fields] for row in report.comparisons]
    _write_csv(out / files["comparisons_csv"], fields, rows, report)
    return files


def write_problems(path: Path, problems: Sequence[InputProblem]) -> None:
    atomic_write_text(path, "".join(problem.model_dump_json() + "\n" for problem in problems))


def _write_csv(path: Path, header: list[str], rows: list[list[object]], report: EvalReport) -> None:
    buffer = io.StringIO()
    if report.warning:
        buffer.write(f"# {report.warning}\n")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([[_cell(value) for value in row] for row in rows])
    atomic_write_text(path, buffer.getvalue())


def _cell(value: object) -> object:
    # repr keeps every digit: a CSV value reads back as the same float.
    if isinstance(value, float):
        return repr(value)
    return "" if value is None else value
