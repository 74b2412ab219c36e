"""Suite files: the shipped ones validate (every system's config too), and a bad one
is an error naming the file, the system and the key, on the command line as in Python."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config import ConfigError

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted((REPO / "configs" / "eval").glob("*.yaml"))


def test_a_suite_for_every_shipped_config():
    configs = {p.stem for p in (REPO / "configs").glob("*.yaml")} - {"tiny"}
    assert {p.stem for p in SHIPPED} == configs


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_suites_validate(path: Path):
    from pipeline.evaluation.evaluate import _sweeps
    from pipeline.evaluation.suite import load_suite, system_configs

    suite = load_suite(path)
    assert suite.config is not None
    assert suite.config.resolve() == REPO / "configs" / f"{path.stem}.yaml"
    configs = system_configs(suite, path)
    assert set(configs) == set(suite.systems) and suite.baseline in suite.systems
    rerankers = {c.reranker.backend for c in configs.values() if c.rerank.enabled}
    assert rerankers == {"clip", "qwen3_vl"}  # the CPU-friendly stage two, and the model
    assert len(_sweeps(suite, configs)) == 1  # each sweeps the Qwen3-VL top_n


def test_paths_resolve_against_the_suite_file(tmp_path):
    from pipeline.evaluation.suite import RerankRunSystem, RunSystem, load_suite

    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "suite.yaml").write_text(
        "config: ../base.yaml\nbaseline: ext\nmetrics: [nDCG@10, P@5, R@100-l2, MAP]\n"
        "systems:\n  ext: {run: runs/a.trec}\n  rr: {rerank_run: /abs/b.trec, top_n: 7}\n"
        "  plain:\n"
    )
    suite = load_suite(tmp_path / "sub" / "suite.yaml")
    assert suite.config == tmp_path / "sub" / ".." / "base.yaml"
    assert isinstance(suite.systems["ext"], RunSystem)
    assert suite.systems["ext"].run == tmp_path / "sub" / "runs" / "a.trec"
    rerank = suite.systems["rr"]
    assert isinstance(rerank, RerankRunSystem) and rerank.rerank_run == Path("/abs/b.trec")
    assert rerank.top_n == 7 and suite.systems["plain"].kind == "config"
    assert suite.metrics == ["ndcg@10", "precision@5", "recall@100-l2", "map"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("baseline: a\nsystem: {a: {}}\n", "unknown key 'system'; did you mean 'systems'?"),
        ("baseline: b\nsystems: {a: {}}\n", "baseline 'b' is not one of the systems"),
        ("baseline: a\nsystems: {a: {run: x, top_n: 3}}\n", "unknown key 'systems.a.top_n'"),
        ("baseline: a\nsystems: {a: 3}\n", "a system is a mapping"),
        ("baseline: a\nsystems: {a b: {}}\n", "system name 'a b'"),
        ("baseline: a\nmetrics: [ndgc@10]\nsystems: {a: {}}\n", "metric 'ndgc@10'"),
        ("baseline: a\ndepth: 0\nsystems: {a: {}}\n", "depth"),
        ("- a list\n", "the top level must be a mapping"),
    ],
)
def test_bad_suites_name_the_key(tmp_path, text, message):
    from pipeline.evaluation.suite import SuiteError, load_suite

    path = tmp_path / "suite.yaml"
    path.write_text(text)
    with pytest.raises(SuiteError, match=r"suite\.yaml: ") as caught:
        load_suite(path)
    assert message in str(caught.value)


def test_a_bad_config_key_names_the_system(tmp_path):
    from pipeline.evaluation.suite import load_suite, system_configs

    path = tmp_path / "suite.yaml"
    path.write_text("baseline: a\nsystems:\n  a: {}\n  b: {rerank.top_nn: 3}\n")
    with pytest.raises(ConfigError) as caught:
        system_configs(load_suite(path), path)
    assert str(caught.value) == (
        f"{path}: system 'b': rerank.top_nn=3 (system 'b'): unknown key 'rerank.top_nn'; "
        "did you mean 'rerank.top_n'?"
    )


def test_the_command_line_reports_errors_in_one_line(tmp_path, eval_collection):
    files = eval_collection
    base = ["eval", "--index", str(files["index"]), "--queries", str(files["queries"])]
    base += ["--qrels", str(files["qrels"]), "--out", str(tmp_path / "out")]
    suite = tmp_path / "suite.yaml"
    suite.write_text(json.dumps({"baseline": "a", "systems": {"a": {"recall.chanels": []}}}))
    runner = CliRunner()
    result = runner.invoke(app, [*base, "--suite", str(suite)])
    assert result.exit_code == 2 and "did you mean 'recall.channels'" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(app, [*base, "--suite", str(suite), "--cache", "x", "--no-cache"])
    assert result.exit_code == 2 and "not both" in result.output
    result = runner.invoke(app, [*base, "--suite", str(tmp_path / "none.yaml")])
    assert result.exit_code == 2 and "suite file not found" in result.output
    # A config that lacks the index's text channels is refused before any query runs.
    suite.write_text(json.dumps({"baseline": "a", "systems": {"a": {"recall.channels": ["bm25"]}}}))
    result = runner.invoke(app, [*base, "--suite", str(suite), "--no-cache"])
    assert result.exit_code == 2 and "recall channel(s) bm25 need text channels" in result.output
