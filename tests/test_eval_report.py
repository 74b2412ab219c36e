"""What ``vlsearch eval`` writes in --out, as a user opens it: TREC runs, metrics as JSON
and CSV, plots, report.md and a self-contained report.html, each saying when the tiny
models made it."""

from __future__ import annotations

import base64
import csv
import itertools
import json
import math
import re

import pytest

from tests.eval_support import write_suite

pytest.importorskip("ranx")
pytest.importorskip("matplotlib")

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, eval_collection):
    from pipeline.evaluation import run_eval

    folder = tmp_path_factory.mktemp("eval-report")
    (folder / "ext.trec").write_text(
        "q-cat Q0 cat-1 1 2.0 theirs\nq-cat Q0 cat-0 2 2.0 theirs\nq-cat Q0 dog-0 3 1.0 theirs\n"
    )
    suite = write_suite(
        folder / "suite.yaml",
        {
            "bm25": {"recall.channels": ["bm25"], "rerank.enabled": False},
            "fused+clip": {},
            "fused+clip@3": {"rerank.top_n": 3},
            "ext": {"run": "ext.trec"},
        },
        eval_collection["config"],
        permutations=500,
    )
    seen: list[tuple[str, int, int]] = []
    report = run_eval(
        eval_collection["index"],
        eval_collection["queries"],
        eval_collection["qrels"],
        suite,
        folder / "out",
        cache=folder / "cache.sqlite",
        progress=lambda *args: seen.append(args),
    )
    return report, folder / "out", seen


def test_runs_are_trec_files_tagged_with_the_system(evaluated):
    report, out, _ = evaluated
    for summary in report.systems:
        lines = (out / "runs" / f"{summary.name}.trec").read_text().splitlines()
        by_query: dict[str, list[list[str]]] = {}
        for line in lines:
            fields = line.split(" ")
            assert len(fields) == 6 and fields[1] == "Q0" and fields[5] == summary.name
            by_query.setdefault(fields[0], []).append(fields)
        for rows in by_query.values():
            assert [int(row[3]) for row in rows] == list(range(1, len(rows) + 1))
            scores = [float(row[4]) for row in rows]
            assert all(a > b for a, b in itertools.pairwise(scores))  # no ties
    # The external run's tie (cat-1, cat-0 at 2.0) keeps its rank order, one float step apart.
    ext = (out / "runs" / "ext.trec").read_text().splitlines()
    assert [line.split()[2] for line in ext] == ["cat-1", "cat-0", "dog-0"]
    assert float(ext[1].split()[4]) == math.nextafter(2.0, -math.inf)


def test_trec_scores_never_tie_or_hide_a_failure():
    from pipeline.evaluation.outputs import trec_lines

    lines = list(trec_lines("q", [("a", 1.0), ("b", 1.0), ("c", math.nan), ("d", 0.5)], "t"))
    scores = [float(line.split()[4]) for line in lines]
    assert scores[0] == 1.0 and scores[3] == 0.5
    assert 0.5 < scores[2] < scores[1] < 1.0
    assert [float(x.split()[4]) for x in trec_lines("q", [("a", math.nan)], "t")] == [0.0]


def test_metrics_files_agree_with_the_report(evaluated):
    report, out, _ = evaluated
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["per_query"] == report.per_query
    assert metrics["means"] == {s.name: s.means for s in report.systems}
    assert metrics["warning"] == report.warning  # tiny models

    def rows(name: str) -> list[dict[str, str]]:
        with (out / name).open() as handle:
            first = handle.readline()
            assert first.startswith("# Made with the tiny random-weight models")
            return list(csv.DictReader(handle))

    per_query = rows("metrics_per_query.csv")
    assert len(per_query) == len(report.systems) * report.judged
    for row in per_query:
        assert float(row["ndcg@10"]) == report.per_query[row["system"]]["ndcg@10"][row["qid"]]
    means = {row["system"]: row for row in rows("metrics_mean.csv")}
    assert float(means["ext"]["map@100"]) == report.system("ext").means["map@100"]
    comparisons = rows("comparisons.csv")
    assert len(comparisons) == 3 * len(report.metrics)  # three systems against bm25
    assert {row["system"] for row in comparisons} == {"fused+clip", "fused+clip@3", "ext"}


def test_the_reports_say_what_was_found(evaluated):
    report, out, _ = evaluated
    markdown = (out / "report.md").read_text()
    assert markdown.startswith("# Evaluation: suite.yaml\n\n> **Warning:** Made with the tiny")
    for metric in ("nDCG@10", "Recall@100", "MRR@10", "MAP@100", "P@10"):
        assert f"### {metric} against bm25" in markdown
    row = next(r for r in report.comparisons if r.system == "ext" and r.metric == "ndcg@10")
    assert f"| ext | {row.value:.4f} | {row.difference:+.4f} | " in markdown
    assert f"| {row.wins}/{row.ties}/{row.losses} |" in markdown
    assert "## Latency per query" in markdown and "| fused+clip | " in markdown
    assert "9 judged, 1 without judgements" in markdown
    assert "(plots/difference-fused+clip.png)" in markdown
    assert "## Metrics against rerank.top_n" in markdown  # fused+clip@3 and fused+clip
    assert [s.systems for s in report.sweeps] == [["fused+clip@3", "fused+clip"]]
    for sweep in report.sweeps:
        assert sweep.plot and (out / sweep.plot).read_bytes().startswith(PNG)
    assert set(report.difference_plots) == {"fused+clip", "fused+clip@3", "ext"}
    assert json.loads((out / "report.json").read_text())["systems"][0]["name"] == "bm25"


def test_the_html_report_stands_alone(evaluated):
    report, out, _ = evaluated
    page = (out / "report.html").read_text()
    assert "Made with the tiny random-weight models" in page
    sources = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert sources and all(source.startswith("data:image/png;base64,") for source in sources)
    assert "http://" not in page and "https://" not in page and "<link" not in page
    images = [base64.b64decode(source.split(",", 1)[1]) for source in sources]
    assert all(image.startswith(PNG) for image in images)
    assert len(images) == len(report.difference_plots) + len(report.sweeps)
    assert "<th>W/T/L</th>" in page and "<strong>bm25</strong>" in page


def test_progress_counts_every_system_to_its_end(evaluated):
    report, _, seen = evaluated
    for summary in report.systems:
        calls = [(done, total) for name, done, total in seen if name == summary.name]
        assert calls[0] == (0, 9) and calls[-1] == (9, 9)
        assert [done for done, _ in calls] == list(range(10))
