"""Every command and Python snippet in the README runs as written, on the tiny profile.

They run in a scratch folder holding copies of ``configs/`` and ``examples/``, in README
order. The one edit: the seed-API snippet's hub model id becomes the tiny reranker's
folder, since no hub can be reached here (its code is otherwise run untouched).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from tests.rerankers_support import tiny_qwen_path

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)
HUB_RERANKER = "Qwen/Qwen3-VL-Reranker-2B"


def blocks(language: str) -> list[tuple[int, str]]:
    return [
        (README.count("\n", 0, match.start()) + 1, match.group(2))
        for match in FENCE.finditer(README)
        if match.group(1) == language
    ]


def tour_commands() -> list[list[str]]:
    """The tour's ``vlsearch`` commands, continuation lines joined, comments dropped."""
    tour = next(text for _, text in blocks("bash") if "vlsearch index build" in text)
    commands = []
    for line in tour.replace("\\\n", " ").splitlines():
        argv = shlex.split(line, comments=True)
        if argv:
            assert argv[0] == "vlsearch", line
            commands.append(argv[1:])
    return commands


def serve_commands() -> list[str]:
    """The Serve section's curl commands, continuation lines joined, comments dropped."""
    block = next(text for _, text in blocks("bash") if "curl -s $API/healthz" in text)
    lines = [line.split("  # ")[0].strip() for line in block.replace("\\\n", " ").splitlines()]
    return [line for line in lines if line and not line.startswith(("#", "API="))]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("readme")
    for name in ("configs", "examples"):
        shutil.copytree(REPO / name, folder / name)
    return folder


@pytest.fixture()
def in_scratch(scratch, monkeypatch) -> Path:
    monkeypatch.chdir(scratch)
    monkeypatch.setenv("VLSEARCH_MODELS", "tiny")
    return scratch


def test_the_readme_has_the_snippets_these_tests_run() -> None:
    assert len(tour_commands()) >= 15
    assert len(blocks("python")) == 3
    assert len(serve_commands()) >= 15


def test_the_tour_runs_in_order(in_scratch) -> None:
    runner = CliRunner()
    for argv in tour_commands():
        result = runner.invoke(app, argv)
        assert result.exit_code == 0, f"vlsearch {shlex.join(argv)}\n{result.output}"
    assert (in_scratch / "runs" / "kb" / "manifest.json").is_file()
    assert (in_scratch / "models" / "tiny" / "qwen3-vl-reranker").is_dir()


def test_the_serve_command_starts_on_the_tour_indexes(in_scratch, monkeypatch) -> None:
    import uvicorn

    line = next(text for _, text in blocks("bash") if text.startswith("vlsearch serve"))
    monkeypatch.setattr(uvicorn.Server, "run", lambda self: None)  # parse, open, bind nothing
    result = CliRunner().invoke(app, shlex.split(line)[1:])
    assert result.exit_code == 0, result.output


def test_the_ui_commands_start(in_scratch, monkeypatch) -> None:
    import uvicorn

    pytest.importorskip("gradio")
    lines = [
        line.split("#")[0]
        for _, text in blocks("sh")
        for line in text.splitlines()
        if line.startswith("vlsearch ui")
    ]
    assert len(lines) == 2
    monkeypatch.setattr(uvicorn.Server, "run", lambda self: None)  # parse, build, bind nothing
    runner = CliRunner()
    if not (in_scratch / "runs" / "shop").is_dir():  # the tour's first build, if not run
        assert runner.invoke(app, tour_commands()[0]).exit_code == 0
    for line in lines:
        result = runner.invoke(app, shlex.split(line)[1:])
        assert result.exit_code == 0, f"{line}\n{result.output}"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_serve_curls_run_against_a_live_server(tiny_examples_index, tmp_path) -> None:
    from tests.api_support import copy_index, live_server

    (tmp_path / "examples").symlink_to(REPO / "examples")
    with live_server({"shop": copy_index(tiny_examples_index, tmp_path)}) as base:
        for command in serve_commands():
            checked = command.replace("curl ", "curl --fail-with-body --max-time 120 ", 1)
            done = subprocess.run(
                ["bash", "-c", checked],
                cwd=tmp_path,
                env={**os.environ, "API": base},
                capture_output=True,
                text=True,
            )
            assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    assert (tmp_path / "launch.jpg").read_bytes()[:2] == b"\xff\xd8"
    assert len((tmp_path / "launch-part.mp4").read_bytes()) == 1024


def test_the_cohere_snippet_runs_against_a_live_server(tiny_examples_index, tmp_path) -> None:
    from tests.api_support import live_server

    line, code = blocks("python")[2]
    (tmp_path / "token").write_text("my-token")
    with live_server(
        {"shop": tiny_examples_index}, {"token_file": str(tmp_path / "token")}
    ) as base:
        code = code.replace("http://127.0.0.1:8000", base)
        namespace: dict = {}
        exec(compile(code, f"README.md:{line}", "exec"), namespace)
    (result,) = namespace["response"].results
    assert result.index in (0, 1) and 0.0 <= result.relevance_score <= 1.0


@pytest.mark.parametrize("which", [0, 1], ids=["python-api", "seed-api"])
def test_python_snippet_runs(which, in_scratch, tmp_path_factory) -> None:
    line, code = blocks("python")[which]
    if HUB_RERANKER in code:
        code = code.replace(HUB_RERANKER, str(tiny_qwen_path(tmp_path_factory)))
    snippet = compile(code, f"README.md:{line}", "exec")
    namespace: dict = {}
    exec(snippet, namespace)
    if which == 0:
        assert set(namespace["run"]) == {"cat", "coffee"}
        exec(snippet, {})  # a second run, on the index the first one built, works too
    else:
        assert len(namespace["scores"]) == 3
