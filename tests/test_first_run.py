"""A newcomer's first runs: without hub access, with typos, with files that are not there.

The hub is made unreachable for real: ``HF_ENDPOINT`` points at a local port nothing
listens on, so the connection is refused at once, as it is for a machine offline.
"""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline import hub
from pipeline.cli import app
from pipeline.media import MediaError
from pipeline.schema import Query

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture()
def offline(monkeypatch, tmp_path):
    """No hub, an empty hub cache, and offline mode restored afterwards."""
    from huggingface_hub import constants

    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", *hub._PROXY_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", constants.HF_HUB_OFFLINE)
    hub.hub_unreachable.cache_clear()
    yield tmp_path / "hub-cache"
    hub.hub_unreachable.cache_clear()


def _cache_file(cache: Path, repo: str, filename: str) -> None:
    """A file as huggingface_hub's cache stores it (refs/main -> snapshots/REV/FILE)."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text("0" * 40)
    snapshot = folder / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True, exist_ok=True)
    (snapshot / filename).write_text("{}")


# --- the hub ---------------------------------------------------------------------------


def test_an_unreachable_hub_is_named(offline) -> None:
    reason = hub.hub_unreachable()
    assert reason is not None and reason.startswith("127.0.0.1:")


def test_offline_mode_and_proxies_are_respected(offline, monkeypatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    hub.hub_unreachable.cache_clear()
    assert hub.hub_unreachable() is None  # only the proxy knows
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub.hub_unreachable.cache_clear()
    assert hub.hub_unreachable() == "HF_HUB_OFFLINE is set"


def test_a_reachable_hub_is_left_alone(offline, monkeypatch) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
        hub.hub_unreachable.cache_clear()
        assert hub.hub_unreachable() is None
        hub.require_hub_model("reranker", "org/absent", "reranker.model", [("config.json",)])


def test_a_model_missing_offline_is_one_clear_error(offline) -> None:
    with pytest.raises(hub.ModelUnavailable) as caught:
        hub.require_hub_model("reranker", "org/absent", "reranker.model", [("config.json",)])
    message = str(caught.value)
    assert "\n" not in message
    for needed in ("'org/absent'", "unreachable", "VLSEARCH_MODELS=tiny", "reranker.model"):
        assert needed in message


def test_a_cached_model_loads_offline_without_retries(offline) -> None:
    from huggingface_hub import constants

    _cache_file(offline, "org/cached", "config.json")
    _cache_file(offline, "org/cached", "model.safetensors")
    hub.require_hub_model(
        "reranker", "org/cached", "reranker.model", [("config.json",), hub.WEIGHT_FILES]
    )
    assert constants.HF_HUB_OFFLINE is True  # the hub clients now read the cache only


def test_local_folders_are_not_hub_ids(offline, tmp_path) -> None:
    hub.require_hub_model("reranker", str(tmp_path), "reranker.model", [("config.json",)])
    assert hub.is_hub_id("Qwen/Qwen3-VL-Reranker-2B")
    assert not hub.is_hub_id(f"local-dir:{tmp_path}")
    assert not hub.is_hub_id(str(tmp_path))
    assert not hub.is_hub_id("./models/x")


def test_no_loading_bar_for_a_local_model(tmp_path_factory, capfd) -> None:
    from rerankers.qwen3_vl.config import Qwen3VLRerankerConfig
    from rerankers.qwen3_vl.reranker import Qwen3VLRerankerBackend
    from tests.rerankers_support import tiny_qwen_path

    folder = tiny_qwen_path(tmp_path_factory)
    Qwen3VLRerankerBackend(Qwen3VLRerankerConfig(model=str(folder), device="cpu")).load()
    assert "Loading weights" not in capfd.readouterr().err


# --- the command -----------------------------------------------------------------------


def test_build_without_the_hub_says_what_to_do(offline, tmp_path) -> None:
    result = CliRunner().invoke(
        app,
        ["index", "build", "--input", str(EXAMPLES / "products.jsonl"), "--out", str(tmp_path)],
    )
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert "CLIP model 'laion/CLIP-ViT-B-32-laion2B-s34B-b79K'" in lines[0]
    assert "VLSEARCH_MODELS=tiny" in lines[0]


def test_rerank_without_the_hub_says_what_to_do(offline, tmp_path) -> None:
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"query": {"text": "a cat"}, "documents": [{"text": "a"}]}))
    result = CliRunner().invoke(app, ["rerank", "--request", str(request)])
    assert result.exit_code == 2
    assert "reranker model 'Qwen/Qwen3-VL-Reranker-2B'" in result.output
    assert "Traceback" not in result.output


def test_version() -> None:
    from importlib.metadata import version

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"vlsearch {version('vlsearch')}"


@pytest.fixture()
def tiny_index(tiny_examples_index) -> Path:
    return tiny_examples_index


def test_building_into_an_existing_index_names_the_ways_on(tiny_index, monkeypatch) -> None:
    monkeypatch.setenv("VLSEARCH_MODELS", "tiny")
    argv = ["index", "build", "--input", str(EXAMPLES / "products.jsonl"), "--out"]
    result = CliRunner().invoke(app, [*argv, str(tiny_index)])
    assert result.exit_code == 2
    assert "already holds an index" in result.output
    assert f"vlsearch index add --index {tiny_index}" in result.output
    assert "--resume" in result.output


def test_deleting_unknown_ids_names_them(tiny_index, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("VLSEARCH_MODELS", "tiny")
    copy = tmp_path / "copy"
    shutil.copytree(tiny_index, copy)
    argv = ["index", "delete", "--index", str(copy), "faq-returns", "no-such-id", "gone"]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 0, result.output
    assert "deleted 1 of 3 id(s)" in result.output
    assert "not in the index: 'no-such-id', 'gone'" in result.output


def test_a_tiny_built_index_warns_when_searched_without_the_profile(
    tiny_index, caplog, monkeypatch
) -> None:
    from pipeline.pipeline import Pipeline

    monkeypatch.delenv("VLSEARCH_MODELS", raising=False)
    with caplog.at_level("WARNING", logger="pipeline.pipeline"):
        Pipeline.from_config().search(tiny_index, Query(text="a cat"), top_k=2, rerank=False)
    assert "tiny random-weight models" in caplog.text and "meaningless" in caplog.text


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [("absent.jpg", None, "file not found"), ("notes.jpg", b"plain text", "not a supported image")],
)
def test_a_bad_query_file_fails_before_any_model_loads(
    tiny_index, tmp_path, monkeypatch, name, content, reason
) -> None:
    import pipeline.model_pool as model_pool
    from pipeline.pipeline import Pipeline

    def no_models(*args, **kwargs):
        raise AssertionError("a model was loaded before the query file was checked")

    monkeypatch.setattr(model_pool, "create_embedder", no_models)
    monkeypatch.setattr(model_pool, "create_reranker", no_models)
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(MediaError, match=reason):
        Pipeline.from_config().search(tiny_index, Query(image=path))
