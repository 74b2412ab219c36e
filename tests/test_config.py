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


def test_unknown_key_is_named_with_its_file_and_the_nearest_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("index:\n  knd: flat\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == (f"{path}: unknown key 'index.knd'; did you mean 'index.kind'?")


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            ["rerank.topn=4"],
            "--set rerank.topn=4: unknown key 'rerank.topn'; did you mean 'rerank.top_n'?",
        ),
        # The default reranker's keys, without naming its backend.
        (
            ["reranker.max_frame=3"],
            "--set reranker.max_frame=3: unknown key "
            "'reranker.max_frame'; did you mean 'reranker.max_frames'?",
        ),
        # Within the backend the config names, not the others'.
        (
            ["reranker.backend=clip", "reranker.modle=x"],
            "--set reranker.modle=x: unknown key "
            "'reranker.modle'; known keys there: backend, embedder, media",
        ),
        (
            ["index.hnsw.m=abc"],
            "--set index.hnsw.m=abc: index.hnsw.m: Input should be a "
            "valid integer, unable to parse string as an integer",
        ),
        (
            ['text_channels=[{"backend": "bm25", "k11": 1}]'],
            '--set text_channels=[{"backend": '
            '"bm25", "k11": 1}]: unknown key \'text_channels[0].k11\'; did you mean '
            "'text_channels[0].k1'?",
        ),
    ],
)
def test_override_errors_name_the_override_and_suggest(overrides, expected):
    with pytest.raises(ConfigError) as caught:
        load_config(None, overrides)
    assert str(caught.value) == expected


def test_a_file_key_is_not_blamed_on_an_unrelated_override(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("rerank:\n  top_m: 3\n")
    with pytest.raises(ConfigError, match=rf"^{path}: unknown key 'rerank.top_m'"):
        load_config(path, ["index.kind=hnsw"])


def test_default_yaml_is_generated_from_the_models():
    from pipeline.config_reference import render_defaults

    assert (REPO / "configs" / "default.yaml").read_text() == render_defaults(), (
        "configs/default.yaml is stale: vlsearch config defaults > configs/default.yaml"
    )


def test_default_yaml_names_every_setting_and_loads_as_the_defaults():
    from pydantic import BaseModel

    from pipeline.config import Config
    from pipeline.config_errors import union_members

    text = (REPO / "configs" / "default.yaml").read_text()
    keys = {line.lstrip("# -").split(":")[0] for line in text.splitlines() if ":" in line}

    def names(model: type[BaseModel]) -> set[str]:
        found = set()
        for name, field in model.model_fields.items():
            found.add(name)
            annotation = field.annotation
            if getattr(annotation, "__origin__", None) is list:
                annotation = annotation.__args__[0]
            for member in union_members(annotation):
                if isinstance(member, type) and issubclass(member, BaseModel):
                    found |= names(member)
        return found

    assert names(Config) - keys == set()
    assert load_config(REPO / "configs" / "default.yaml") == Config()


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
