"""``Index.search`` end to end with the tiny random-weight CLIP: queries are embedded by the
index's own embedder. Random weights rank meaninglessly, so the checks use exact
duplicates (a query identical to an indexed item is its own best match)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from indexers.embedders import embed_query
from indexers.index import EmbeddedVector, Index
from pipeline.config import MediaConfig
from pipeline.schema import Asset, Query

EXAMPLE_CLIP = Path(__file__).resolve().parents[1] / "examples" / "media" / "launch_clip.mp4"
CAPTIONS = ["a red bicycle", "two dogs on a beach", "a bowl of soup", "city lights at night"]


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_config, tiny_embedder) -> Path:
    directory = tmp_path_factory.mktemp("search") / "index"
    images = []
    for i, colour in enumerate(("red", "green", "blue")):
        path = directory.parent / f"img{i}.png"
        Image.new("RGB", (48, 48), colour).save(path)
        images.append(path)
    text_vectors = tiny_embedder.embed_texts(CAPTIONS)
    image_vectors = tiny_embedder.embed_images([Image.open(p).convert("RGB") for p in images])
    items = [
        (Asset(id=f"t{i}", text=c), [EmbeddedVector(modality="text", vector=v)])
        for i, (c, v) in enumerate(zip(CAPTIONS, text_vectors, strict=True))
    ] + [
        (Asset(id=f"i{i}", image=p), [EmbeddedVector(modality="image", vector=v)])
        for i, (p, v) in enumerate(zip(images, image_vectors, strict=True))
    ]
    index = Index.create(directory, tiny_config, tiny_embedder.model_id, tiny_embedder.dim)
    with index:
        index.upsert_many(items)
    return directory


def test_text_and_image_queries_find_their_duplicates(built, tiny_embedder):
    with Index.open(built, embedder=tiny_embedder) as index:
        for i, caption in enumerate(CAPTIONS):
            top = index.search(caption, k=3)[0]
            assert (top.id, top.modality) == (f"t{i}", "text")
            assert top.score == pytest.approx(1.0, abs=1e-4)
        top = index.search(built.parent / "img1.png", k=3)[0]
        assert (top.id, top.modality) == ("i1", "image")
        assert top.score == pytest.approx(1.0, abs=1e-4)


def test_search_without_an_embedder_uses_the_one_in_the_manifest(built, tiny_embedder):
    with Index.open(built) as index:
        assert [h.id for h in index.search(Query(text=CAPTIONS[2]), k=7)][:1] == ["t2"]
        assert len(index.search("anything", k=7)) == 7


def test_a_video_path_is_searched_as_a_video(built, tiny_embedder):
    with Index.open(built, embedder=tiny_embedder) as index:
        by_path = index.search(EXAMPLE_CLIP, k=7)
        expected_vector = embed_query(tiny_embedder, Query(video=EXAMPLE_CLIP), MediaConfig())
        (expected,) = index.search_vectors(expected_vector, k=7)
    assert [h.id for h in by_path] == [h.id for h in expected]
    np.testing.assert_allclose([h.score for h in by_path], [h.score for h in expected], atol=1e-5)
