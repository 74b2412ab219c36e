from pathlib import Path

import pytest

from pipeline.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[1]


def test_shipped_configs_validate():
    for path in sorted((REPO / "configs").glob("*.yaml")):
        load_config(path)


def test_defaults_match_the_documented_models():
    config = load_config()
    assert (config.embedder.model, config.embedder.pretrained) == ("ViT-B-32", "laion2b_s34b_b79k")
    assert (config.media.video_fps, config.media.max_frames) == (1.0, 64)


def test_overrides_are_typed_and_nested():
    config = load_config(None, ["index.kind=hnsw", "index.hnsw.m=16", "media.video_fps=0.5"])
    assert config.index.kind == "hnsw"
    assert config.index.hnsw.m == 16
    assert config.media.video_fps == 0.5


def test_unknown_key_is_named(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("index:\n  knd: flat\n")
    with pytest.raises(ConfigError, match=r"index\.knd"):
        load_config(path)


def test_bad_value_is_named():
    with pytest.raises(ConfigError, match=r"index\.kind"):
        load_config(None, ["index.kind=annoy"])


def test_malformed_override_is_explained():
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config(None, ["index.kind"])


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_profile_from_environment(monkeypatch):
    monkeypatch.setenv("VLSEARCH_MODELS", "tiny")
    assert load_config().profile == "tiny"


def test_fingerprint_tracks_settings():
    assert load_config().fingerprint() == load_config().fingerprint()
    assert load_config().fingerprint() != load_config(None, ["index.kind=hnsw"]).fingerprint()
