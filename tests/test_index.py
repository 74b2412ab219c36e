"""The Index against a NumPy brute-force reference, and one lifecycle battery per kind."""

from __future__ import annotations

import numpy as np
import pytest

from indexers.index import EmbeddedVector, Index
from pipeline.config import ConfigError
from pipeline.schema import Asset
from tests.index_support import (
    DIM,
    KINDS,
    MODEL,
    brute_force,
    low_rank_unit_vectors,
    new_index,
    random_basis,
    recall,
    text_item,
    unit_vectors,
    video_item,
)

# -- differential: search results against brute force -----------------------------------


@pytest.fixture(scope="module")
def corpus() -> dict[str, np.ndarray]:
    """3,000 single-row assets and 50 queries of intrinsic dimension 8."""
    rng = np.random.default_rng(7)
    basis = random_basis(rng, rank=8)
    return {
        "vectors": low_rank_unit_vectors(rng, 3000, basis),
        "queries": low_rank_unit_vectors(rng, 50, basis),
    }


@pytest.mark.parametrize("kind", KINDS)
def test_search_matches_brute_force(tmp_path, corpus, kind):
    vectors, queries = corpus["vectors"], corpus["queries"]
    owners = np.array([f"a{i}" for i in range(len(vectors))])
    with new_index(tmp_path / kind, kind) as index:
        index.upsert_many([text_item(o, v) for o, v in zip(owners, vectors, strict=True)])
        hits = index.search_vectors(queries, k=10)
    truth = brute_force(queries, vectors, owners, k=10)
    assert all(len(per_query) == 10 for per_query in hits)
    found_ids = [[h.id for h in per_query] for per_query in hits]
    truth_ids = [[owner for owner, _, _ in per_query] for per_query in truth]
    if kind == "flat":
        assert found_ids == truth_ids
        found_scores = [[h.score for h in per_query] for per_query in hits]
        truth_scores = [[score for _, score, _ in per_query] for per_query in truth]
        np.testing.assert_allclose(found_scores, truth_scores, rtol=1e-5, atol=1e-5)
    else:
        assert recall(found_ids, truth_ids) >= 0.9
    for per_query in hits:
        scores = [h.score for h in per_query]
        assert scores == sorted(scores, reverse=True)


@pytest.fixture(scope="module")
def mixed_corpus() -> dict:
    """Single-row text assets plus videos whose frames crowd the top of one query."""
    rng = np.random.default_rng(11)
    basis = random_basis(rng, rank=8)
    texts = low_rank_unit_vectors(rng, 400, basis)
    videos = low_rank_unit_vectors(rng, 40, basis)
    # Each video's frames are small perturbations of its own direction; videos 0-9 all
    # sit near the first query, so its top 100 rows belong to ten assets only.
    query = low_rank_unit_vectors(rng, 1, basis)[0]
    centers = np.where(np.arange(40)[:, None] < 10, query + 0.15 * videos, videos)
    frames = [low_rank_unit_vectors(rng, 20, basis) * 0.08 + centers[v] for v in range(40)]
    frames = [f / np.linalg.norm(f, axis=1, keepdims=True) for f in frames]
    items = [text_item(f"t{i}", v) for i, v in enumerate(texts)]
    items += [video_item(f"v{v}", frames[v]) for v in range(40)]
    rows = np.concatenate([texts, *frames])
    owners = np.array(
        [f"t{i}" for i in range(400)] + [f"v{v}" for v in range(40) for _ in range(20)]
    )
    row_times = np.concatenate([np.full(400, np.nan)] + [np.arange(20) / 2.0] * 40)
    queries = np.concatenate([query[None, :], low_rank_unit_vectors(rng, 9, basis)])
    return {"items": items, "rows": rows, "owners": owners, "times": row_times, "queries": queries}


def test_assets_score_as_their_best_row(tmp_path, mixed_corpus):
    with new_index(tmp_path / "mixed", "flat") as index:
        index.upsert_many(mixed_corpus["items"])
        assert index.vector_count() == 400 + 40 * 20
        hits = index.search_vectors(mixed_corpus["queries"], k=25)
    truth = brute_force(mixed_corpus["queries"], mixed_corpus["rows"], mixed_corpus["owners"], 25)
    for per_query, expected in zip(hits, truth, strict=True):
        # k distinct assets even where the top rows are all frames of a few videos.
        assert [h.id for h in per_query] == [owner for owner, _, _ in expected]
        for hit, (_, score, row) in zip(per_query, expected, strict=True):
            assert hit.score == pytest.approx(score, abs=1e-5)
            if hit.id.startswith("v"):
                assert hit.modality == "video"
                assert hit.best_timestamp == mixed_corpus["times"][row]
            else:
                assert (hit.modality, hit.best_timestamp) == ("text", None)
    assert all(h.id.startswith("v") for h in hits[0][:10])


@pytest.mark.parametrize("kind", ["hnsw", "ivf_flat"])
def test_over_fetch_finds_k_distinct_assets_in_approximate_kinds(tmp_path, mixed_corpus, kind):
    with new_index(tmp_path / kind, kind) as index:
        index.upsert_many(mixed_corpus["items"])
        hits = index.search_vectors(mixed_corpus["queries"], k=25)
    truth = brute_force(mixed_corpus["queries"], mixed_corpus["rows"], mixed_corpus["owners"], 25)
    assert all(len({h.id for h in per_query}) == 25 for per_query in hits)
    found = [[h.id for h in per_query] for per_query in hits]
    assert recall(found, [[owner for owner, _, _ in t] for t in truth]) >= 0.9


def test_k_larger_than_the_corpus_returns_every_asset(tmp_path):
    rng = np.random.default_rng(3)
    with new_index(tmp_path / "small", "hnsw") as index:
        index.upsert_many([text_item(f"a{i}", v) for i, v in enumerate(unit_vectors(rng, 5))])
        index.upsert_many([video_item("v", unit_vectors(rng, 4))])
        (hits,) = index.search_vectors(unit_vectors(rng, 1), k=50)
    assert sorted(h.id for h in hits) == ["a0", "a1", "a2", "a3", "a4", "v"]


def test_queries_the_index_cannot_fill_return_what_exists(tmp_path, corpus):
    # One probed list of ~100 vectors cannot give 500 results; nothing loops or repeats.
    with new_index(tmp_path / "ivf", "ivf_flat", ivf={"nlist": 30, "nprobe": 1}) as index:
        index.upsert_many([text_item(f"a{i}", v) for i, v in enumerate(corpus["vectors"])])
        hits = index.search_vectors(corpus["queries"][:5], k=500)
    for per_query in hits:
        assert 0 < len(per_query) < 500
        assert len({h.id for h in per_query}) == len(per_query)


def test_the_last_of_duplicate_ids_in_one_batch_wins(tmp_path):
    rng = np.random.default_rng(8)
    first, second = unit_vectors(rng, 2)
    with new_index(tmp_path / "dup", "flat") as index:
        index.upsert_many([text_item("a", first, v=1), text_item("a", second, v=2)])
        assert (len(index), index.vector_count()) == (1, 1)
        (hit,) = index.search_vectors(second, k=5)[0]
    assert (hit.id, hit.metadata, hit.score) == ("a", {"v": 2}, pytest.approx(1.0, abs=1e-5))


# -- one battery over every kind ---------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_lifecycle_battery(tmp_path, kind):
    rng = np.random.default_rng(5)
    directory = tmp_path / kind
    first = unit_vectors(rng, 300)
    index = new_index(directory, kind)
    index.upsert_many([text_item(f"a{i}", v, n=i) for i, v in enumerate(first)])
    index.upsert_many([video_item("clip", unit_vectors(rng, 6))])
    assert (len(index), index.vector_count()) == (301, 306)
    index.commit()
    index.close()

    # Reopen: everything is still there, metadata included.
    index = Index.open(directory, model_id=MODEL)
    assert (len(index), index.vector_count()) == (301, 306)
    assert "a7" in index and "nope" not in index
    assert index.get("a7") == Asset(id="a7", text="text of a7", metadata={"n": 7})
    top = index.search_vectors(first[7], k=1)[0][0]
    assert (top.id, top.metadata) == ("a7", {"n": 7})
    assert top.score == pytest.approx(1.0, abs=0.05)

    # Add more.
    more = unit_vectors(rng, 200)
    index.upsert_many([text_item(f"b{i}", v) for i, v in enumerate(more)])
    assert (len(index), index.vector_count()) == (501, 506)
    assert index.search_vectors(more[3], k=1)[0][0].id == "b3"

    # Upsert replaces every row of an asset: the clip becomes one text row.
    replacement = unit_vectors(rng, 1)[0]
    index.upsert_many(
        [(Asset(id="clip", text="now text"), [EmbeddedVector(modality="text", vector=replacement)])]
    )
    assert (len(index), index.vector_count()) == (501, 501)
    hit = index.search_vectors(replacement, k=1)[0][0]
    assert (hit.id, hit.modality, hit.best_timestamp) == ("clip", "text", None)
    assert index.get("clip").text == "now text"

    # Delete: gone from counts and from every search, even one aimed straight at them.
    deleted = [f"a{i}" for i in range(0, 300, 3)]
    assert index.delete([*deleted, "never-existed"]) == len(deleted)
    assert index.delete(deleted) == 0
    assert (len(index), index.vector_count()) == (401, 401)
    assert index.ids() == {f"a{i}" for i in range(300) if i % 3} | {f"b{i}" for i in range(200)} | {
        "clip"
    }
    _assert_never_returned(index, first[::3], set(deleted))
    index.commit()
    index.close()

    index = Index.open(directory)
    assert (len(index), index.vector_count()) == (401, 401)
    _assert_never_returned(index, first[::3], set(deleted))

    # Failures are idempotent per item and can be cleared.
    index.record_failures([("x.jpg", "decode", "truncated"), ("y.mp4", "read", "missing")])
    index.record_failures([("x.jpg", "decode", "truncated")])
    assert index.failures() == [
        {"item": "x.jpg", "stage": "decode", "reason": "truncated"},
        {"item": "y.mp4", "stage": "read", "reason": "missing"},
    ]
    index.clear_failure("x.jpg")
    assert [f["item"] for f in index.failures()] == ["y.mp4"]
    index.close()


def _assert_never_returned(index: Index, queries: np.ndarray, deleted: set[str]) -> None:
    for per_query in index.search_vectors(queries, k=50):
        assert len(per_query) == 50
        assert not deleted & {h.id for h in per_query}


# -- retraining and compaction -----------------------------------------------------------


def test_ivf_starts_exact_then_trains_and_retrains_as_the_corpus_grows(tmp_path):
    rng = np.random.default_rng(9)
    vectors = unit_vectors(rng, 4000)
    coarse_pq = {"nlist": 32, "nprobe": 8, "pq_m": 8, "pq_bits": 8, "train_size": 5000}
    with new_index(tmp_path / "pq", "ivf_pq", ivf=coarse_pq) as index:
        index.upsert_many([text_item(f"a{i}", v) for i, v in enumerate(vectors[:100])])
        # Too few vectors to train 256 PQ centroids: searched exactly meanwhile.
        assert index.faiss.kind == "flat"
        top = index.search_vectors(vectors[:100], k=1)
        assert [hits[0].id for hits in top] == [f"a{i}" for i in range(100)]
        index.upsert_many([text_item(f"a{i}", v) for i, v in enumerate(vectors[100:400], 100)])
        assert (index.faiss.kind, index.faiss.index.nlist) == ("ivf_pq", 400 // 39)
        index.upsert_many([text_item(f"a{i}", v) for i, v in enumerate(vectors[400:], 400)])
        assert index.faiss.index.nlist == 32  # the configured nlist, reached at 32*39 vectors
        assert index.faiss.index.ntotal == 4000


def test_hnsw_compacts_when_deletions_pile_up(tmp_path):
    rng = np.random.default_rng(4)
    vectors = unit_vectors(rng, 400)
    with new_index(tmp_path / "hnsw", "hnsw") as index:
        index.upsert_many([text_item(f"a{i}", v) for i, v in enumerate(vectors)])
        index.commit()
        index.delete([f"a{i}" for i in range(50)])
        assert index.faiss.index.ntotal == 400  # tombstoned, still in the graph
        index.delete([f"a{i}" for i in range(50, 150)])
        assert index.faiss.index.ntotal == 250  # past a quarter: rebuilt without them
        assert index.faiss.live_count == 250


# -- bad input -----------------------------------------------------------------------------


def test_bad_items_are_refused_whole_and_named(tmp_path):
    rng = np.random.default_rng(1)
    with new_index(tmp_path / "bad", "flat") as index:
        good = text_item("good", unit_vectors(rng, 1)[0])
        short = text_item("short", unit_vectors(rng, 1, dim=DIM - 1)[0])
        with pytest.raises(ValueError, match=r"'short'.*dim 31"):
            index.upsert_many([good, short])
        with pytest.raises(ValueError, match="'empty' has no vectors"):
            index.upsert_many([(Asset(id="empty", text="x"), [])])
        wrong = (
            Asset(id="wrong", text="x"),
            [EmbeddedVector(modality="image", vector=unit_vectors(rng, 1)[0])],
        )
        with pytest.raises(ValueError, match=r"'wrong'.*image vector but no image"):
            index.upsert_many([wrong])
        with pytest.raises(ValueError, match="NaN"):
            EmbeddedVector(modality="text", vector=np.full(DIM, np.nan))
        assert len(index) == 0  # nothing of a refused batch was stored
        with pytest.raises(ValueError, match="shape"):
            index.search_vectors(np.ones((2, DIM + 1), dtype=np.float32))


def test_ivf_pq_needs_sub_quantizers_that_divide_the_dim(tmp_path):
    with pytest.raises(ConfigError, match=r"index\.ivf\.pq_m"):
        new_index(tmp_path / "pq", "ivf_pq", ivf={"pq_m": 5})


def test_in_memory_media_is_refused_with_the_asset_named(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(2)
    asset = Asset(id="pic", image=Image.new("RGB", (8, 8)))
    with new_index(tmp_path / "mem", "flat") as index, pytest.raises(ValueError, match="'pic'"):
        index.upsert_many(
            [(asset, [EmbeddedVector(modality="image", vector=unit_vectors(rng, 1)[0])])]
        )
