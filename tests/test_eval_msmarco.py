"""``vlsearch eval`` on real judgements: MS MARCO passages (TREC DL 2019, graded 0-3),
read where they lie (research-only licence: nothing is copied into the repository).
The per-query metrics must equal ranx's own evaluation of the TREC run written and the
judgements; the judged passages of a few queries plus some others make a BM25 index."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from tests.conftest import SHARED_DATA

pytest.importorskip("ranx")
pytest.importorskip("bm25s")
MSMARCO = SHARED_DATA / "msmarco-dl19-5k"
pytestmark = pytest.mark.skipif(
    not (MSMARCO / "qrels.tsv").is_file(), reason=f"{MSMARCO} is not present"
)
QUERIES = 5  # the judged queries with the fewest judgements: a small index
OTHERS = 40  # unjudged passages beside them
CONFIG = {
    "profile": "tiny",
    "build": {"workers": 1, "checkpoint_every": 64},
    "text_channels": [{"backend": "bm25"}],
    "recall": {"channels": ["bm25"]},
    "rerank": {"enabled": False},
}


def _slice(folder: Path) -> dict[str, Path]:
    """A manifest (id, text: how ``vlsearch index build`` reads rows) of the judged
    passages of QUERIES queries and OTHERS more, and BEIR-style judgements of those
    queries with the header line; the queries file is the real one (50 queries)."""
    rows = [line.split("\t") for line in (MSMARCO / "qrels.tsv").read_text().splitlines()]
    by_query: dict[str, list[list[str]]] = {}
    for row in rows:
        by_query.setdefault(row[0], []).append(row)
    chosen = sorted(by_query, key=lambda q: (len(by_query[q]), q))[:QUERIES]
    judged = [row for qid in chosen for row in by_query[qid]]
    wanted = {row[1] for row in judged}
    corpus = [json.loads(line) for line in (MSMARCO / "corpus.jsonl").open()]
    others = random.Random(0).sample([p for p in corpus if p["_id"] not in wanted], OTHERS)
    passages = [p for p in corpus if p["_id"] in wanted] + others
    manifest = folder / "passages.jsonl"
    lines = [
        json.dumps({"id": p["_id"], "text": f"{p['title']}. {p['text']}".lstrip(". ")})
        for p in passages
    ]
    manifest.write_text("\n".join(lines) + "\n")
    qrels = folder / "qrels.tsv"
    qrels.write_text("query-id\tcorpus-id\tscore\n" + "".join("\t".join(r) + "\n" for r in judged))
    config = folder / "config.yaml"
    config.write_text(json.dumps(CONFIG))
    return {"manifest": manifest, "qrels": qrels, "config": config}


def test_per_query_metrics_equal_ranx_on_the_written_run(tmp_path):
    import ranx
    from typer.testing import CliRunner

    from pipeline.cli import app
    from tests.eval_support import write_suite

    files = _slice(tmp_path)
    index = tmp_path / "index"
    build = ["index", "build", "--input", str(files["manifest"]), "--out", str(index)]
    result = CliRunner().invoke(app, [*build, "--config", str(files["config"])])
    assert result.exit_code == 0, result.output
    suite = write_suite(
        tmp_path / "suite.yaml",
        {"bm25": {}, "bm25-shallow": {"recall.top_k": {"bm25": 5}}},
        files["config"],
        metrics=["ndcg@10", "recall@100", "recall@100-l2", "mrr@10", "map@100", "precision@10"],
        permutations=500,
    )
    out = tmp_path / "out"
    argv = ["eval", "--index", str(index), "--queries", str(MSMARCO / "queries.jsonl")]
    argv += ["--qrels", str(files["qrels"]), "--suite", str(suite), "--out", str(out)]
    result = CliRunner().invoke(app, [*argv, "--no-cache"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["judged"] == QUERIES and report["unjudged"] == 50 - QUERIES
    assert report["problem_counts"] == {"unjudged_query": 50 - QUERIES}

    judgements: dict[str, dict[str, int]] = {}
    for line in files["qrels"].read_text().splitlines()[1:]:
        qid, docid, grade = line.split("\t")
        judgements.setdefault(qid, {})[docid] = int(grade)
    qrels = ranx.Qrels.from_dict(judgements)
    for name in ("bm25", "bm25-shallow"):
        run = ranx.Run.from_file(str(out / "runs" / f"{name}.trec"), kind="trec")
        metrics = report["metrics"]
        ranx.evaluate(qrels, run, metrics)
        for metric in metrics:
            assert report["per_query"][name][metric] == pytest.approx(
                dict(run.scores[metric]), abs=1e-12
            ), (name, metric)
    means = json.loads((out / "metrics.json").read_text())["means"]
    assert means["bm25"]["ndcg@10"] > 0  # BM25 finds judged passages among 100 others
    assert report["warning"]  # built with the tiny profile (BM25 itself is real)


@pytest.mark.slow
def test_the_shipped_kb_qa_suite_runs_on_the_slice(tmp_path):
    """configs/eval/kb-qa.yaml as shipped, on an index built with configs/kb-qa.yaml from
    a manifest of MS MARCO passages (the tiny models stand in for CLIP and Qwen3-VL; BM25
    and MiniLM are the real ones)."""
    pytest.importorskip("sentence_transformers")
    from typer.testing import CliRunner

    from pipeline.cli import app

    repo = Path(__file__).resolve().parents[1]
    files = _slice(tmp_path)
    index = tmp_path / "index"
    runner = CliRunner()
    kb_qa = str(repo / "configs" / "kb-qa.yaml")
    build = ["index", "build", "--input", str(files["manifest"]), "--out", str(index)]
    result = runner.invoke(app, [*build, "--config", kb_qa, "--set", "profile=tiny"])
    assert result.exit_code == 0, result.output
    argv = ["eval", "--index", str(index), "--queries", str(MSMARCO / "queries.jsonl")]
    argv += ["--qrels", str(files["qrels"]), "--suite", str(repo / "configs/eval/kb-qa.yaml")]
    argv += ["--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache.sqlite")]
    result = runner.invoke(app, [*argv, "--set", "profile=tiny"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [s["name"] for s in report["systems"]][:3] == ["bm25", "text_dense", "fused"]
    assert report["sweeps"][0]["top_n"] == [20, 50, 100]
    assert (tmp_path / "out" / "report.html").stat().st_size > 10_000
