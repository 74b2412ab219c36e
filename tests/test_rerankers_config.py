"""Reranker configs (one per backend, picked by ``backend:``) and the registry."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pipeline.config import ConfigError
from rerankers.config import (
    ClipRerankerConfig,
    CrossEncoderRerankerConfig,
    Qwen3VLRerankerConfig,
    VllmRerankerConfig,
    parse_reranker_config,
)
from rerankers.registry import RERANKERS, create_reranker
from tests.conftest import REPO


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        ({"backend": "qwen3_vl"}, Qwen3VLRerankerConfig),
        ({"backend": "clip", "embedder": {"model": "ViT-B-16"}}, ClipRerankerConfig),
        ({"backend": "cross_encoder", "batch_size": 8}, CrossEncoderRerankerConfig),
        ({"backend": "vllm", "url": "http://gpu-box:8000"}, VllmRerankerConfig),
    ],
)
def test_backend_key_picks_the_config(raw, kind):
    assert isinstance(parse_reranker_config(raw), kind)


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        ({"backend": "clip", "embeder": {}}, "clip.embeder"),
        ({"backend": "vllm", "timeout_s": 0}, "vllm.timeout_s"),
        ({"backend": "cross_encoder", "batch_size": "many"}, "cross_encoder.batch_size"),
        ({"backend": "qwen3_vl", "preprocess_workers": 0}, "preprocess_workers"),
        ({"backend": "colbert"}, "colbert"),
        ({}, "backend"),
    ],
)
def test_bad_config_names_the_key(raw, named):
    with pytest.raises(ConfigError, match="reranker") as info:
        parse_reranker_config(raw)
    assert named in str(info.value)


def test_api_key_never_shows_in_dumps():
    config = VllmRerankerConfig(api_key="s3cret")
    assert "s3cret" not in repr(config)
    assert "s3cret" not in config.model_dump_json()
    assert config.api_key is not None and config.api_key.get_secret_value() == "s3cret"


def test_every_config_backend_is_registered():
    assert set(RERANKERS) == {"qwen3_vl", "clip", "cross_encoder", "vllm"}


@pytest.mark.parametrize(
    "config",
    [
        Qwen3VLRerankerConfig(model="/nowhere/qwen"),
        ClipRerankerConfig(),
        CrossEncoderRerankerConfig(model="/nowhere/cross-encoder"),
        VllmRerankerConfig(url="http://127.0.0.1:9"),
    ],
    ids=lambda c: c.backend,
)
def test_create_builds_the_backend_without_loading_anything(config):
    reranker = create_reranker(config)
    assert reranker.loaded is False  # models load (and servers are called) on first score


def test_clip_reranker_reuses_a_shared_embedder(tiny_embedder):
    reranker = create_reranker(ClipRerankerConfig(), embedder=tiny_embedder)
    assert reranker.loaded
    reranker.unload()  # the pipeline's embedder is not ours to drop
    assert reranker.loaded


def test_importing_configs_loads_no_heavy_library():
    code = (
        "import sys, rerankers.config, rerankers.registry, rerankers.request;"
        "heavy = {'torch', 'transformers', 'sentence_transformers', 'httpx', 'open_clip'};"
        "print(sorted(heavy & set(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
