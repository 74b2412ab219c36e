"""The `vlsearch` command as a user runs it, on the tiny offline profile."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli import app

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


@pytest.fixture()
def runner(monkeypatch) -> CliRunner:
    monkeypatch.setenv("VLSEARCH_MODELS", "tiny")
    return CliRunner()


@pytest.fixture(scope="module")
def built(tiny_examples_index) -> Path:
    return tiny_examples_index


def test_build_writes_report_and_errors(built):
    report = json.loads((built / "build_report.json").read_text())
    assert report["indexed"] == 7 and report["failed"] == 0
    assert (built / "errors.jsonl").exists()


def test_text_search_as_json(runner, built):
    result = runner.invoke(
        app, ["search", "--index", str(built), "--text", "a cat", "-k", "3", "--json"]
    )
    assert result.exit_code == 0, result.output
    hits = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert len(hits) == 3
    assert set(hits[0]) >= {"id", "score", "modality", "best_timestamp", "metadata"}


def test_image_and_video_search(runner, built):
    for flag, path in (("--image", "media/cat.jpg"), ("--video", "media/launch_clip.mp4")):
        result = runner.invoke(app, ["search", "--index", str(built), flag, str(EXAMPLES / path)])
        assert result.exit_code == 0, result.output
        assert "sku-" in result.stdout


def test_search_with_a_metadata_filter(runner, built):
    args = ["search", "--index", str(built), "--text", "print", "--json"]
    result = runner.invoke(app, [*args, "--filter", 'category == "posters" and price < 30'])
    assert result.exit_code == 0, result.output
    ids = {json.loads(line)["id"] for line in result.stdout.splitlines() if line.strip()}
    assert ids == {"sku-cat-poster", "sku-camera-print"}
    bad = runner.invoke(app, [*args, "--filter", "price << 5"])
    assert bad.exit_code == 2 and "column" in bad.output


def test_a_filter_field_no_asset_has_is_warned_of_on_stderr(built):
    """In a process of its own, as a user runs it: the logging the command sets up is what
    carries the warning (under pytest the root logger already has handlers)."""
    env = {
        **os.environ,
        "VLSEARCH_MODELS": "tiny",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    args = ["search", "--index", str(built), "--text", "x", "--no-rerank", "--json"]
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", *args, "--filter", 'colour == "red"'],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""  # no asset has colour, so nothing matches
    stderr = " ".join(result.stderr.split())  # rich wraps long lines
    warning = "filter field 'colour': no asset in the index has it; fields in the index: "
    assert stderr.count(warning) == 1  # once per search, not once per recall channel
    assert warning + "category, price" in stderr


def test_one_query_kind_at_a_time(runner, built):
    result = runner.invoke(
        app, ["search", "--index", str(built), "--text", "a", "--image", "b.jpg"]
    )
    assert result.exit_code == 2
    assert "exactly one" in result.output


def test_missing_index_is_a_clear_error(runner, tmp_path):
    result = runner.invoke(app, ["search", "--index", str(tmp_path / "nope"), "--text", "x"])
    assert result.exit_code == 2
    assert "nope" in result.output and "Traceback" not in result.output


def test_missing_or_wrong_input_is_a_clear_error(runner, tmp_path):
    for source, reason in ((tmp_path / "absent", "input not found"), (Path(__file__), "folder or")):
        result = runner.invoke(
            app, ["index", "build", "--input", str(source), "--out", str(tmp_path / "o")]
        )
        assert result.exit_code == 2
        assert reason in result.output and "Traceback" not in result.output


def test_unreadable_query_image_is_a_clear_error(runner, built, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff" + b"\x00" * 20)
    result = runner.invoke(app, ["search", "--index", str(built), "--image", str(broken)])
    assert result.exit_code == 2
    assert "broken.jpg" in result.output


def test_failed_items_set_the_exit_code(runner, tmp_path):
    source = tmp_path / "in"
    source.mkdir()
    (source / "note.txt").write_text("a short note about shoes")
    (source / "empty.jpg").write_bytes(b"")
    result = runner.invoke(
        app, ["index", "build", "--input", str(source), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 1
    assert "errors.jsonl" in result.output


def test_info_and_delete(runner, built, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(built, copy)
    info = runner.invoke(app, ["index", "info", "--index", str(copy)])
    assert info.exit_code == 0, info.output
    assert json.loads(info.stdout)["assets"] == 7
    deleted = runner.invoke(app, ["index", "delete", "--index", str(copy), "faq-returns"])
    assert deleted.exit_code == 0, deleted.output
    info = runner.invoke(app, ["index", "info", "--index", str(copy)])
    assert json.loads(info.stdout)["assets"] == 6


def test_config_show_resolves_overrides(runner):
    result = runner.invoke(app, ["config", "show", "--set", "index.kind=hnsw"])
    assert result.exit_code == 0, result.output
    assert "kind: hnsw" in result.stdout


def test_models_tiny_writes_both_models(runner, tmp_path):
    result = runner.invoke(app, ["models", "tiny", "--out", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "m" / "clip" / "open_clip_config.json").is_file()
    assert (tmp_path / "m" / "qwen3-vl-reranker" / "config.json").is_file()
    assert (tmp_path / "m" / "cross-encoder" / "config.json").is_file()
    assert "meaningless" in result.output
