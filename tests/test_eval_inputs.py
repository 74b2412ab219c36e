"""Bad input to ``vlsearch eval``: every broken line, unknown id and missing document is
reported with its file and line (a warning, the report's "Input problems"), and the
evaluation runs on what is valid."""

from __future__ import annotations

import json
import logging
import math

import pytest

from tests.eval_support import write_suite

pytest.importorskip("ranx")


def test_readers_report_each_bad_line(tmp_path):
    from pipeline.evaluation.inputs import Problems, read_qrels, read_queries, read_run

    queries = tmp_path / "queries.jsonl"
    queries.write_bytes(
        b'\xef\xbb\xbf{"_id": "a", "text": "first"}\r\n'  # a BOM and CRLF: still fine
        b'{"id": "b", "text": "second", "metadata": {}}\n'
        b"\n"
        b'{"id": "c", "text": "cut off\n'  # torn
        b'{"text": "no id"}\n'
        b'{"id": "d"}\n'  # nothing to search with
        b'{"id": "e", "image": "missing.jpg"}\n'
        b'{"id": "a", "text": "again"}\n'
        b"\xff\xfe binary junk\n"
        b"[1, 2]\n"
    )
    problems = Problems()
    read = read_queries(queries, problems)
    assert list(read) == ["a", "b"]
    assert read["a"].query.text == "first" and read["b"].line == 2
    found = [(p.kind, p.line) for p in problems.items]
    assert found == [
        ("unparsable_line", 4),
        ("unparsable_line", 5),
        ("unparsable_line", 6),
        ("missing_media", 7),
        ("duplicate", 8),
        ("unparsable_line", 9),
        ("unparsable_line", 10),
    ]
    assert all(p.file == str(queries) for p in problems.items)

    tsv = tmp_path / "queries.tsv"
    tsv.write_text("1\tfirst question\nno tab here\n2\t  \n3\tthird\n")
    problems = Problems()
    assert list(read_queries(tsv, problems)) == ["1", "3"]
    assert [(p.kind, p.line) for p in problems.items] == [
        ("unparsable_line", 2),
        ("unparsable_line", 3),
    ]

    qrels = tmp_path / "qrels.tsv"
    qrels.write_text(
        "query-id\tcorpus-id\tscore\n"  # BEIR's header
        "a\td1\t2\n"
        "a 0 d2 1\n"  # TREC's four columns, in the same file
        "a\td3\thigh\n"
        "a\td1\t3\n"  # judged again
        "b d4\n"
        "b\td5\t1.0\n"
        "b\td6\t1.5\n"
    )
    problems = Problems()
    judgements = read_qrels(qrels, problems)
    assert judgements.qrels == {"a": {"d1": 2, "d2": 1}, "b": {"d5": 1}}
    assert [(p.kind, p.line) for p in problems.items] == [
        ("unparsable_line", 4),
        ("duplicate", 5),
        ("unparsable_line", 6),
        ("unparsable_line", 8),
    ]

    run = tmp_path / "run.trec"
    run.write_text(
        "a Q0 d1 1 1.5 x\n"
        "a Q0 d2 2 nan x\n"
        "a Q0 d3 two 0.5 x\n"
        "a Q0 d4 3 0.25\n"
        "a Q0 d1 4 0.1 x\n"
        "b Q0 d9 1 3 x\n"
    )
    problems = Problems()
    read_back = read_run(run, problems)
    assert read_back.rankings == {"a": [("d1", 1.5)], "b": [("d9", 3.0)]}
    assert [(p.kind, p.line) for p in problems.items] == [
        ("unparsable_line", 2),
        ("unparsable_line", 3),
        ("unparsable_line", 4),
        ("duplicate", 5),
    ]


def test_the_evaluation_runs_on_what_is_valid(tmp_path, eval_collection, caplog):
    from pipeline.evaluation import run_eval

    queries = tmp_path / "queries.jsonl"
    good = eval_collection["queries"].read_text().splitlines()
    queries.write_text("\n".join([good[0], "{broken", good[1], good[9]]) + "\n")
    qrels = tmp_path / "qrels.txt"
    qrels.write_text(
        "q-cat 0 cat-0 3\n"
        "q-cat 0 no-such-doc 2\n"  # judged, missing from the index
        "q-cat 0\n"  # does not parse
        "q-coffee 0 coffee-0 0\n"  # judged, none relevant
        "q-ghost 0 cat-1 1\n"  # a query the queries file lacks
    )
    run = tmp_path / "other.trec"
    run.write_text(
        "q-cat Q0 cat-0 1 2.0 other\n"
        "q-cat Q0 phantom 2 1.0 other\n"  # unknown document
        "q-nobody Q0 cat-0 1 1.0 other\n"  # unknown query
        "q-cat Q0 cat-1 3\n"  # does not parse
    )
    suite = write_suite(
        tmp_path / "suite.yaml",
        {
            "bm25": {"recall.channels": ["bm25"], "rerank.enabled": False},
            "other": {"run": "other.trec"},
            "clip-of-other": {"rerank_run": "other.trec", "top_n": 10},
        },
        eval_collection["config"],
        permutations=200,
    )
    with caplog.at_level(logging.WARNING, logger="pipeline.evaluation"):
        report = run_eval(
            eval_collection["index"], queries, qrels, suite, tmp_path / "out", cache=None
        )
    where = {(p.kind, p.file.rsplit("/", 1)[-1], p.line) for p in report.problems}
    assert where == {
        ("unparsable_line", "queries.jsonl", 2),
        ("unjudged_query", "queries.jsonl", 4),
        ("judged_document_not_in_index", "qrels.txt", 2),
        ("unparsable_line", "qrels.txt", 3),
        ("no_relevant_judgement", "qrels.txt", 4),
        ("unknown_query", "qrels.txt", 5),
        ("run_document_not_in_index", "other.trec", 2),
        ("unknown_query", "other.trec", 3),
        ("unparsable_line", "other.trec", 4),
    }
    assert report.problem_counts["unparsable_line"] == 3
    for problem in report.problems:  # each one warned of, with its file and line
        assert f"{problem.file}:{problem.line}: " in caplog.text
    assert report.queries == 3 and report.judged == 2 and report.unjudged == 1
    assert set(report.per_query["bm25"]["ndcg@10"]) == {"q-cat", "q-coffee"}
    # The unknown document stays in the external run (not relevant, as trec_eval counts
    # it) but cannot be reranked: stage two ranks cat-0 alone. The judged document the
    # index lacks still counts in the ideal ranking.
    assert report.system("other").mean_results == 1.0  # q-cat: 2 entries, q-coffee: none
    assert report.system("clip-of-other").mean_results == 0.5
    ideal = 3 + 2 / math.log2(3)
    assert report.per_query["clip-of-other"]["ndcg@10"]["q-cat"] == pytest.approx(3 / ideal)
    markdown = (tmp_path / "out" / "report.md").read_text()
    section = markdown[markdown.index("## Input problems") :]
    assert "| lines that do not parse (skipped) | 3 |" in section
    assert f"{qrels}:2: q-cat no-such-doc: judged document not in the index" in section
    assert "queries without judgements (not run, excluded from metrics) | 1 |" in section
    lines = [json.loads(line) for line in (tmp_path / "out" / "problems.jsonl").open()]
    assert len(lines) == len(report.problems)


def test_no_judged_query_is_an_error(tmp_path, eval_collection):
    from pipeline.evaluation import EvalError, run_eval

    qrels = tmp_path / "qrels.txt"
    qrels.write_text("somebody 0 cat-0 1\n")
    suite = write_suite(tmp_path / "s.yaml", {"run": {}}, eval_collection["config"])
    with pytest.raises(EvalError, match="nothing to measure"):
        run_eval(eval_collection["index"], eval_collection["queries"], qrels, suite, tmp_path / "o")
