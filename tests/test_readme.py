"""Every command and Python snippet in the README runs as written, on the tiny profile.

They run in a scratch folder holding copies of ``configs/`` and ``examples/``, in README
order. The one edit: the seed-API snippet's hub model id becomes the tiny reranker's
folder, since no hub can be reached here (its code is otherwise run untouched).
"""

from __future__ import annotations

import re
import shlex
import shutil
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
    assert len(blocks("python")) == 2


def test_the_tour_runs_in_order(in_scratch) -> None:
    runner = CliRunner()
    for argv in tour_commands():
        result = runner.invoke(app, argv)
        assert result.exit_code == 0, f"vlsearch {shlex.join(argv)}\n{result.output}"
    assert (in_scratch / "runs" / "kb" / "manifest.json").is_file()
    assert (in_scratch / "models" / "tiny" / "qwen3-vl-reranker").is_dir()


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
