"""A long evaluation survives ``kill -9``: every query's result is on disk as soon as it
is done, and ``--resume`` ends with exactly the outputs of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from tests.eval_support import subprocess_env, write_suite

pytest.importorskip("ranx")

SYSTEMS = {
    "bm25": {"recall.channels": ["bm25"], "rerank.enabled": False},
    "fused+clip": {},
    # The slow one, where the kill lands: the tiny Qwen3-VL over each query's top 3.
    "fused+qwen3": {"reranker": {"backend": "qwen3_vl"}, "rerank.top_n": 3},
}
# Measured in seconds, not numbers: they differ between any two runs.
VOLATILE = {"latency", "seconds", "cached_pairs", "out", "cache", "files"}


def _eval_args(files: dict[str, Path], suite: Path, out: Path, cache: Path) -> list[str]:
    return [
        "eval",
        "--index", str(files["index"]),
        "--queries", str(files["queries"]),
        "--qrels", str(files["qrels"]),
        "--suite", str(suite),
        "--out", str(out),
        "--cache", str(cache),
    ]  # fmt: skip


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.is_file() else 0


def _kill_mid_run(args: list[str], watched: Path, total: int, log: Path) -> int:
    """Start ``vlsearch eval`` and SIGKILL it once ``watched`` holds some but not all of
    its ``total`` query lines; the lines it held then."""
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "pipeline", *args],
            env=subprocess_env(),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        deadline = time.monotonic() + 300
        try:
            while _lines(watched) < 1:
                assert process.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, (
                    "the evaluation never reached the watched system"
                )
                time.sleep(0.005)
            os.kill(process.pid, signal.SIGKILL)
        finally:
            process.wait(30)
    assert process.returncode == -signal.SIGKILL
    done = _lines(watched)
    assert 1 <= done < total, f"the kill came too late ({done} of {total} lines)"
    return done


def _without(value: object) -> object:
    if isinstance(value, dict):
        return {k: _without(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_without(v) for v in value]
    return value


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, eval_collection) -> tuple[Path, Path]:
    """The suite, and the outputs of a run that nothing stopped."""
    folder = tmp_path_factory.mktemp("eval-resume")
    suite = write_suite(folder / "suite.yaml", SYSTEMS, eval_collection["config"], permutations=500)
    args = _eval_args(eval_collection, suite, folder / "whole", folder / "whole.sqlite")
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return suite, folder / "whole"


def _tear_last_line(path: Path) -> None:
    """As if a kill had come in the middle of a write: half a line at the end."""
    with path.open("ab") as handle:
        handle.write(b'{"qid": "q-garden", "results": [["garden-0", 0.5')


def _resume_and_compare(args: list[str], resumed: Path, whole: Path) -> None:
    runner = CliRunner()
    refused = runner.invoke(app, args)
    assert refused.exit_code == 2 and "--resume" in refused.output
    result = runner.invoke(app, [*args, "--resume"])
    assert result.exit_code == 0, result.output
    watched = resumed / "results" / "fused+qwen3.jsonl"
    assert _lines(watched) == 9 and watched.read_bytes().endswith(b"\n")
    for name in SYSTEMS:  # the runs, byte for byte
        run = f"runs/{name}.trec"
        assert (resumed / run).read_bytes() == (whole / run).read_bytes(), run
    for name in ("metrics.json", "metrics_mean.csv", "metrics_per_query.csv", "comparisons.csv"):
        assert (resumed / name).read_text() == (whole / name).read_text(), name
    assert (resumed / "problems.jsonl").read_text() == (whole / "problems.jsonl").read_text()
    report_a = json.loads((whole / "report.json").read_text())
    report_b = json.loads((resumed / "report.json").read_text())
    assert _without(report_b) == _without(report_a)
    for name in SYSTEMS:  # every query stored once
        stored = [
            json.loads(line)["qid"] for line in (resumed / "results" / f"{name}.jsonl").open()
        ]
        assert sorted(stored) == sorted(report_a["per_query"][name]["ndcg@10"])


def test_interrupted_then_resumed_equals_an_uninterrupted_run(
    tmp_path, eval_collection, uninterrupted
):
    """Stopped in-process (Ctrl-C in the middle of the slow system), then --resume."""
    from pipeline.evaluation import run_eval

    suite, whole = uninterrupted
    resumed = tmp_path / "resumed"

    def stop_midway(system: str, done: int, total: int) -> None:
        if system == "fused+qwen3" and done == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_eval(
            eval_collection["index"],
            eval_collection["queries"],
            eval_collection["qrels"],
            suite,
            resumed,
            cache=tmp_path / "b.sqlite",
            progress=stop_midway,
        )
    watched = resumed / "results" / "fused+qwen3.jsonl"
    assert _lines(watched) == 4 and not (resumed / "report.md").exists()
    _tear_last_line(watched)
    args = _eval_args(eval_collection, suite, resumed, tmp_path / "b.sqlite")
    _resume_and_compare(args, resumed, whole)


def test_kill_9_then_resume_equals_an_uninterrupted_run(tmp_path, eval_collection, uninterrupted):
    """A real ``kill -9`` of a ``vlsearch eval`` process, at whatever point it was."""
    suite, whole = uninterrupted
    resumed = tmp_path / "resumed"
    args = _eval_args(eval_collection, suite, resumed, tmp_path / "b.sqlite")
    watched = resumed / "results" / "fused+qwen3.jsonl"
    _kill_mid_run(args, watched, total=9, log=tmp_path / "killed.log")
    assert _lines(resumed / "results" / "fused+clip.jsonl") == 9  # the systems before: done
    assert not (resumed / "report.md").exists()
    _tear_last_line(watched)
    _resume_and_compare(args, resumed, whole)


def test_resume_refuses_what_was_made_otherwise(tmp_path, eval_collection):
    from pipeline.evaluation import EvalError, run_eval

    systems = {"bm25": SYSTEMS["bm25"], "ext": {"run": "ext.trec"}}
    (tmp_path / "ext.trec").write_text("q-cat Q0 cat-0 1 1.0 ext\n")
    suite = write_suite(
        tmp_path / "suite.yaml", systems, eval_collection["config"], permutations=200
    )
    args = (eval_collection["index"], eval_collection["queries"], eval_collection["qrels"])
    out = tmp_path / "out"
    run_eval(*args, suite, out, cache=None)
    with pytest.raises(EvalError, match="--resume"):
        run_eval(*args, suite, out, cache=None)
    (tmp_path / "ext.trec").write_text("q-cat Q0 cat-1 1 1.0 ext\n")
    with pytest.raises(EvalError, match="system 'ext' has other settings"):
        run_eval(*args, suite, out, cache=None, resume=True)
    other = tmp_path / "qrels.txt"
    other.write_text(eval_collection["qrels"].read_text() + "q-cat 0 cat-2 2\n")
    with pytest.raises(EvalError, match="qrels changed"):
        run_eval(args[0], args[1], other, suite, out, cache=None, resume=True)


def test_a_damaged_store_is_reported_not_guessed(tmp_path):
    from pipeline.evaluation import EvalError
    from pipeline.evaluation.store import QueryResult, ResultStore

    store = ResultStore(tmp_path / "s.jsonl")
    for qid in ("a", "b", "c"):
        store.append(QueryResult(qid=qid, results=[(f"{qid}-doc", float("nan"))]))
    store.close()
    loaded = ResultStore(tmp_path / "s.jsonl").load()
    assert list(loaded) == ["a", "b", "c"]
    assert loaded["a"].results[0][0] == "a-doc"  # NaN scores survive the round trip
    lines = (tmp_path / "s.jsonl").read_bytes().split(b"\n")
    (tmp_path / "s.jsonl").write_bytes(b"\n".join([lines[0], b"{garbage", *lines[2:]]))
    with pytest.raises(EvalError, match=r"s\.jsonl:2"):
        ResultStore(tmp_path / "s.jsonl").load()
