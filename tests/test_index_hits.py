"""Hits keep each asset's id and metadata in memory between searches: against a plain dict
reference, every write, reopen and resumed build must show in the very next search, both
as SearchHits and as a SearchBatch's arrays."""

from __future__ import annotations

import numpy as np
import pytest

from indexers.batch import SearchBatch
from indexers.index import EmbeddedVector, Index
from pipeline.schema import Asset, SearchHit
from tests.index_support import MODEL, new_index, text_item, unit_vectors, video_item

# Awkward but legal metadata: JSON escapes, non-ASCII, big and exact numbers, nesting.
ODD_METADATA = {
    "quote": 'say "hi"\\ \n\t',
    "snow": "\u2603 é 日本",
    "third": 1 / 3,
    "big": 2**70,
    "tiny": 5e-324,
    "flags": [True, False, None],
    "nested": {"tags": ["a", "b"], "depth": {"more": []}},
}


class Reference:
    """What the index should hold: per asset id, its vector and metadata."""

    def __init__(self) -> None:
        self.assets: dict[str, tuple[np.ndarray, dict]] = {}

    def upsert(self, index: Index, asset_id: str, vector: np.ndarray, **metadata: object) -> None:
        index.upsert_many([text_item(asset_id, vector, **metadata)])
        self.assets[asset_id] = (vector, metadata)

    def delete(self, index: Index, ids: list[str]) -> None:
        index.delete(ids)
        for asset_id in ids:
            self.assets.pop(asset_id, None)

    def check(self, index: Index, queries: np.ndarray) -> None:
        """Exact (flat) search agrees with brute force on ids, scores and metadata."""
        k = len(self.assets)
        ids = list(self.assets)
        vectors = np.stack([self.assets[i][0] for i in ids])
        for query, hits in zip(queries, index.search_vectors(queries, k=k), strict=True):
            scores = vectors @ query
            order = np.argsort(-scores)
            assert [h.id for h in hits] == [ids[i] for i in order]
            assert [h.metadata for h in hits] == [self.assets[ids[i]][1] for i in order]
            np.testing.assert_allclose([h.score for h in hits], scores[order], atol=1e-5)
            assert all(isinstance(h, SearchHit) for h in hits)
        self.check_batch(index, queries, k=k + 2)  # two columns of padding

    def check_batch(self, index: Index, queries: np.ndarray, k: int) -> None:
        """The batch's arrays agree with brute force, and with its own hits."""
        ids = list(self.assets)
        vectors = np.stack([self.assets[i][0] for i in ids])
        batch = index.search_batch(queries, k=k)
        assert len(batch) == len(queries) and batch.ids.shape == (len(queries), k)
        assert batch.found.tolist() == [len(ids)] * len(queries)
        for i, query in enumerate(queries):
            scores = vectors @ query
            order = np.argsort(-scores)
            assert batch.ids[i].tolist() == [ids[j] for j in order] + [None] * (k - len(ids))
            np.testing.assert_allclose(batch.scores[i, : len(ids)], scores[order], atol=1e-5)
            assert np.isnan(batch.scores[i, len(ids) :]).all()
            assert [batch.metadata(i, j) for j in range(len(ids))] == [
                self.assets[ids[j]][1] for j in order
            ]
        assert batch.to_hits() == index.search_vectors(queries, k=k)
        assert batch.hits(1) == batch.to_hits()[1]


def test_hits_follow_upserts_replacements_and_deletes_after_the_first_search(tmp_path):
    rng = np.random.default_rng(21)
    queries = unit_vectors(rng, 4)
    reference = Reference()
    directory = tmp_path / "flat"
    index = new_index(directory, "flat")
    for i, vector in enumerate(unit_vectors(rng, 30)):
        reference.upsert(index, f"a{i}", vector, n=i)
    reference.check(index, queries)  # the first search loads ids and metadata

    reference.upsert(index, 'odd "id" \\ é', unit_vectors(rng, 1)[0], **ODD_METADATA)
    reference.check(index, queries)
    reference.upsert(index, "a3", unit_vectors(rng, 1)[0], n=-3, renamed=True)  # replaced
    reference.upsert(index, "a4", reference.assets["a4"][0])  # metadata emptied
    reference.check(index, queries)
    reference.delete(index, ["a5", "a6", "never-existed"])
    reference.check(index, queries)
    reference.upsert(index, "a5", unit_vectors(rng, 1)[0], back=True)  # a deleted id returns
    reference.check(index, queries)
    index.commit()
    index.close()

    with Index.open(directory, model_id=MODEL) as index:
        reference.check(index, queries)
        reference.delete(index, ["a0"])
        reference.check(index, queries)

    # A resumed build: writes before the first search after opening.
    with Index.open(directory, model_id=MODEL) as index:
        reference.upsert(index, "late", unit_vectors(rng, 1)[0], late=1)
        reference.delete(index, ["a1"])
        reference.check(index, queries)


def test_a_caller_changing_a_hit_changes_nothing_else(tmp_path):
    rng = np.random.default_rng(22)
    vector = unit_vectors(rng, 1)[0]
    with new_index(tmp_path / "flat", "flat") as index:
        index.upsert_many([text_item("a", vector, **ODD_METADATA)])
        first, second = index.search_vectors(np.stack([vector, vector]), k=1)
        first[0].metadata["nested"]["tags"].append("mine")
        first[0].metadata["added"] = 1
        first[0].id = "changed"
        assert second[0].metadata == ODD_METADATA and second[0].id == "a"
        (again,) = index.search_vectors(vector, k=1)[0]
        assert (again.id, again.metadata) == ("a", ODD_METADATA)
        assert index.get("a").metadata == ODD_METADATA


def test_video_frames_and_modalities_survive_a_replacement_after_searching(tmp_path):
    rng = np.random.default_rng(23)
    frames = unit_vectors(rng, 5)
    with new_index(tmp_path / "flat", "flat") as index:
        index.upsert_many([video_item("clip", frames)])
        (hit,) = index.search_vectors(frames[3], k=1)[0]
        assert (hit.id, hit.modality, hit.best_timestamp) == ("clip", "video", 1.5)
        assert hit.model_dump() == {
            "id": "clip",
            "score": pytest.approx(1.0, abs=1e-5),
            "modality": "video",
            "best_timestamp": 1.5,
            "metadata": {},
        }

        image = unit_vectors(rng, 1)[0]
        asset = Asset(id="clip", text="now a caption", image=tmp_path / "x.jpg", metadata={"v": 2})
        vectors = [
            EmbeddedVector(modality="text", vector=frames[3]),
            EmbeddedVector(modality="image", vector=image),
        ]
        index.upsert_many([(asset, vectors)])
        (hit,) = index.search_vectors(frames[3], k=1)[0]
        assert (hit.modality, hit.best_timestamp, hit.metadata) == ("text", None, {"v": 2})
        (hit,) = index.search_vectors(frames[3], k=1, modalities={"image"})[0]
        assert (hit.id, hit.modality, hit.metadata) == ("clip", "image", {"v": 2})
        assert hit.score == pytest.approx(float(frames[3] @ image), abs=1e-5)


def test_hits_follow_writes_through_filters_and_hnsw(tmp_path):
    rng = np.random.default_rng(24)
    vectors = unit_vectors(rng, 200)
    with new_index(tmp_path / "hnsw", "hnsw") as index:
        index.upsert_many([text_item(f"a{i}", v, n=i) for i, v in enumerate(vectors)])
        assert {h.id for h in index.search_vectors(vectors[0], k=5, filter="n < 5")[0]} == {
            f"a{i}" for i in range(5)
        }
        index.upsert_many([text_item("a2", vectors[2], n=500)])
        (hits,) = index.search_vectors(vectors[2], k=5, filter="n >= 500")
        assert [(h.id, h.metadata) for h in hits] == [("a2", {"n": 500})]
        index.delete(["a3"])
        (hits,) = index.search_vectors(vectors[3], k=10, filter="n < 5")
        assert sorted(h.id for h in hits) == ["a0", "a1", "a4"]
        assert [h.metadata for h in hits] == [{"n": int(h.id[1:])} for h in hits]


def test_an_empty_index_and_an_emptied_one_find_nothing(tmp_path):
    rng = np.random.default_rng(25)
    queries = unit_vectors(rng, 2)
    with new_index(tmp_path / "flat", "flat") as index:
        assert index.search_vectors(queries, k=3) == [[], []]
        index.upsert_many([text_item("a", queries[0])])
        assert [h.id for h in index.search_vectors(queries[0], k=3)[0]] == ["a"]
        index.delete(["a"])
        assert index.search_vectors(queries, k=3) == [[], []]


def test_a_batch_is_arrays_padded_past_what_was_found(tmp_path):
    rng = np.random.default_rng(26)
    frames = unit_vectors(rng, 4)
    photo = unit_vectors(rng, 1)[0]
    with new_index(tmp_path / "flat", "flat") as index:
        empty = index.search_batch(frames[:2], k=3)
        assert empty.found.tolist() == [0, 0] and empty.ids.tolist() == [[None] * 3] * 2
        assert np.isnan(empty.scores).all() and empty.to_hits() == [[], []]
        assert index.search_batch(np.zeros((0, frames.shape[1])), k=3).to_hits() == []

        index.upsert_many([video_item("clip", frames)])
        index.upsert_many([text_item("photo", photo, place="Oslo")])
        batch = index.search_batch(np.stack([frames[2], photo]), k=3)
        assert batch.found.tolist() == [2, 2]
        assert batch.ids.tolist() == [["clip", "photo", None], ["photo", "clip", None]]
        names = [[SearchBatch.MODALITY_NAMES[c] for c in row[:2]] for row in batch.modalities]
        assert names == [["video", "text"], ["text", "video"]]
        assert batch.modalities[:, 2].tolist() == [-1, -1]
        assert batch.timestamps[0, 0] == 1.0 and np.isnan(batch.timestamps[0, 1:]).all()
        assert batch.scores.dtype == np.float32 and np.isnan(batch.scores[:, 2]).all()
        run = batch.to_run(["q-frame", "q-photo"])
        assert list(run) == ["q-frame", "q-photo"]
        assert run["q-photo"] == {
            "photo": float(batch.scores[1, 0]),
            "clip": float(batch.scores[1, 1]),
        }
        assert run["q-photo"]["photo"] == pytest.approx(1.0, abs=1e-5)
        with pytest.raises(ValueError, match="2 queries"):
            batch.to_run(["only-one"])

        mine = batch.metadata(1, 0)
        mine["place"] = "changed"
        assert batch.metadata(1, 0) == {"place": "Oslo"}
        assert batch.to_hits()[1][0].metadata == {"place": "Oslo"}
        with pytest.raises(IndexError, match="no hit 2"):
            batch.metadata(0, 2)
        with pytest.raises(IndexError, match="out of range"):
            batch.hits(2)
