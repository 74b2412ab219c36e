"""The MS MARCO text benchmark's cross-validated fusion: a fold is never fused with a
setting chosen on its own judgements."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "text_kb.py"


@pytest.fixture(scope="module")
def text_kb():
    spec = importlib.util.spec_from_file_location("text_kb_benchmark", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def test_folds_split_every_query_once_and_repeat_per_seed(text_kb):
    qids = [f"q{i}" for i in range(23)]
    folds = text_kb.folds_of(qids, 5, seed=3)
    assert sorted(q for fold in folds for q in fold) == sorted(qids)
    assert sorted(len(fold) for fold in folds) == [4, 4, 5, 5, 5]
    assert folds == text_kb.folds_of(list(reversed(qids)), 5, seed=3)
    assert folds != text_kb.folds_of(qids, 5, seed=4)


def test_each_fold_takes_the_setting_best_on_the_other_folds(text_kb):
    # "a" is perfect on fold 1 and useless on fold 2, "b" the reverse: a fold that peeked
    # at its own judgements would score 1.0; honest cross-validation scores 0.
    ndcg = {
        "a": {"q1": 1.0, "q2": 1.0, "q3": 0.0, "q4": 0.0},
        "b": {"q1": 0.0, "q2": 0.0, "q3": 1.0, "q4": 1.0},
    }
    candidates = {name: {q: {f"{name}-{q}": 1.0} for q in ndcg[name]} for name in ndcg}
    configs = {"a": text_kb.convex("minmax", 0.2), "b": text_kb.convex("z", 0.7)}
    run, folds = text_kb.cross_validated(
        candidates, ndcg.__getitem__, configs, [["q1", "q2"], ["q3", "q4"]]
    )
    assert run == {"q1": {"b-q1": 1.0}, "q2": {"b-q2": 1.0}, "q3": {"a-q3": 1.0},
                   "q4": {"a-q4": 1.0}}  # fmt: skip
    assert [fold.chosen for fold in folds] == [configs["b"], configs["a"]]
    assert [fold.train_ndcg for fold in folds] == [1.0, 1.0]


def test_the_benchmark_prints_every_system_and_writes_the_fused_run(tmp_path):
    pytest.importorskip("ranx")
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    out.mkdir()
    docs = [f"d{i}" for i in range(12)]
    queries = [f"q{i}" for i in range(6)]
    rows = [json.dumps({"_id": d, "title": "", "text": f"passage {d}"}) for d in docs]
    (data / "corpus.jsonl").write_text("\n".join(rows) + "\n")
    (data / "queries.jsonl").write_text(
        "\n".join(json.dumps({"_id": q, "text": f"query {q}"}) for q in queries) + "\n"
    )
    (data / "qrels.tsv").write_text(
        "".join(
            f"{q}\t{docs[2 * i]}\t2\n{q}\t{docs[2 * i + 1]}\t1\n" for i, q in enumerate(queries)
        )
    )
    # bm25 ranks each query's two judged passages first; text_dense puts the grade-1 one
    # first and the grade-2 one last, below the fused depth.
    for name, first in (("bm25", 0), ("text_dense", 1)):
        lines = []
        for i, q in enumerate(queries):
            order = docs[2 * i + first :] + docs[: 2 * i + first]
            lines += [f"{q} Q0 {d} {r} {10 - r * 0.5} {name}" for r, d in enumerate(order, 1)]
        (out / f"{name}.trec").write_text("\n".join(lines) + "\n")

    printed = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--data",
            str(data),
            "--out",
            str(out),
            "--reuse-runs",
            "--folds",
            "3",
            "--depth",
            "10",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout

    table = {line.split()[0]: line.split() for line in printed.splitlines() if line}
    assert {"bm25", "text_dense", "rrf", "minmax", "z", "cv"} <= set(table)
    assert float(table["bm25"][1]) == pytest.approx(1.0)  # relevant passage first, grade 2
    assert "against the best single channel, bm25" in printed
    assert printed.count("  fold ") == 3
    fused = (out / "fused.trec").read_text().splitlines()
    assert len(fused) == 6 * 10
    assert {line.split()[5] for line in fused} == {"cv"}
