"""Session-wide tiny models and configs. Random weights: rankings in tests are meaningless,
so tests check behaviour (shapes, ids, consistency), never which result is 'right'."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keeps the tiny model set and other caches out of the user's home."""
    os.environ["VLSEARCH_CACHE"] = str(tmp_path_factory.mktemp("vlsearch-cache"))
    os.environ.pop("VLSEARCH_MODELS", None)


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from indexers.embedders.tiny import build_tiny_clip

    return build_tiny_clip(tmp_path_factory.mktemp("models") / "clip")


@pytest.fixture(scope="session")
def tiny_config(tiny_clip_dir: Path):
    from pipeline.config import validate_config

    return validate_config(
        {
            "embedder": {
                "model": f"local-dir:{tiny_clip_dir}",
                "pretrained": None,
                "batch_size": 8,
            },
            "build": {"workers": 1, "checkpoint_every": 4},
        }
    )


@pytest.fixture(scope="session")
def tiny_embedder(tiny_config):
    from indexers.embedders import create_embedder

    return create_embedder(tiny_config.embedder)


@pytest.fixture(scope="session")
def tiny_examples_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/products.jsonl built by ``vlsearch index build`` on the tiny profile."""
    from typer.testing import CliRunner

    from pipeline.cli import app

    out = tmp_path_factory.mktemp("examples-index") / "index"
    os.environ["VLSEARCH_MODELS"] = "tiny"
    try:
        argv = ["index", "build", "--input", str(EXAMPLES / "products.jsonl"), "--out", str(out)]
        result = CliRunner().invoke(app, argv)
    finally:
        os.environ.pop("VLSEARCH_MODELS")
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="session")
def eval_collection(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The judged collection of tests/eval_support.py and its tiny index."""
    from tests.eval_support import build_index

    return build_index(tmp_path_factory.mktemp("eval-collection"))
