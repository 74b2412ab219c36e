"""The clip baseline against cosines computed straight from the stage-one embedder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from indexers.embedders import embed_query
from pipeline.config import MediaConfig
from pipeline.media import load_image, sample_video
from pipeline.schema import Content
from rerankers.clip import ClipReranker
from rerankers.config import ClipRerankerConfig
from tests.rerankers_support import EXAMPLE_MEDIA

CAT = EXAMPLE_MEDIA / "cat.jpg"
COFFEE = EXAMPLE_MEDIA / "coffee.jpg"
CLIP = EXAMPLE_MEDIA / "launch_clip.mp4"
QUERY = Content(text="a rocket lifting off", image=EXAMPLE_MEDIA / "rocket.jpg")


@pytest.fixture(scope="module")
def reranker(tiny_config, tiny_embedder) -> ClipReranker:
    return ClipReranker(ClipRerankerConfig(embedder=tiny_config.embedder), embedder=tiny_embedder)


def cosines_to_query(embedder, vectors: np.ndarray, media: MediaConfig) -> np.ndarray:
    return vectors @ embed_query(embedder, QUERY, media)


def test_best_modality_cosine_per_document(reranker, tiny_embedder):
    documents = [
        Content(text="a cat poster"),
        Content(image=CAT),
        Content(text="an espresso cup", image=COFFEE),
    ]
    media = MediaConfig()
    text_cos = cosines_to_query(tiny_embedder, tiny_embedder.embed_texts(["a cat poster"]), media)
    cat_cos = cosines_to_query(tiny_embedder, tiny_embedder.embed_images([load_image(CAT)]), media)
    cup_text = cosines_to_query(
        tiny_embedder, tiny_embedder.embed_texts(["an espresso cup"]), media
    )
    cup_image = cosines_to_query(
        tiny_embedder, tiny_embedder.embed_images([load_image(COFFEE)]), media
    )
    expected = [text_cos[0], cat_cos[0], max(cup_text[0], cup_image[0])]
    assert reranker.score(QUERY, documents) == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize(
    ("document_fps", "request_fps", "sampled_at"),
    [
        (None, None, 1.0),  # the configured media.video_fps
        (None, 0.5, 0.5),  # the request's fps
        (2.0, 0.5, 2.0),  # the document's own fps wins
    ],
)
def test_a_video_scores_its_best_frame(
    reranker, tiny_embedder, document_fps, request_fps, sampled_at
):
    frames = sample_video(CLIP, fps=sampled_at, max_frames=64)
    media = MediaConfig(video_fps=request_fps or 1.0)
    frame_cos = cosines_to_query(
        tiny_embedder, tiny_embedder.embed_images([f.image for f in frames]), media
    )
    (score,) = reranker.score(QUERY, [Content(video=CLIP, fps=document_fps)], fps=request_fps)
    assert score == pytest.approx(float(frame_cos.max()), abs=1e-5)
    assert len(frames) > 1 and frame_cos.max() > frame_cos.mean()  # not the mean frame


def test_max_frames_caps_the_frames_compared(reranker, tiny_embedder):
    frames = sample_video(CLIP, fps=1.0, max_frames=2)
    frame_cos = cosines_to_query(
        tiny_embedder, tiny_embedder.embed_images([f.image for f in frames]), MediaConfig()
    )
    (score,) = reranker.score(QUERY, [Content(video=CLIP)], max_frames=2)
    assert score == pytest.approx(float(frame_cos.max()), abs=1e-5)


def test_instruction_changes_nothing(reranker):
    documents = [Content(text="a cat poster"), Content(image=CAT)]
    plain = reranker.score(QUERY, documents)
    assert reranker.score(QUERY, documents, instruction="Find rockets.") == plain


def test_unreadable_documents_fail_alone(reranker, tmp_path: Path):
    zero = tmp_path / "zero.jpg"
    zero.write_bytes(b"")
    documents = [Content(image=zero), Content(text="a cat"), Content(video=tmp_path / "gone.mp4")]
    report = reranker.score_report(QUERY, documents)
    assert [f.index for f in report.failures] == [0, 2]
    assert "zero.jpg" in report.failures[0].reason
    assert "gone.mp4" in report.failures[1].reason
    assert report.scores[1] == reranker.score(QUERY, [documents[1]])[0]


def test_an_unusable_query_is_refused(reranker):
    with pytest.raises(ValueError, match="no text, image or video"):
        reranker.score(Content(), [Content(text="a cat")])
    with pytest.raises(ValueError, match=r"query cannot be used.*nowhere\.jpg"):
        reranker.score(Content(image=EXAMPLE_MEDIA / "nowhere.jpg"), [Content(text="a cat")])


def test_loads_its_own_embedder_lazily_and_unloads_it(tiny_config):
    reranker = ClipReranker(ClipRerankerConfig(embedder=tiny_config.embedder))
    assert not reranker.loaded
    first = reranker.score(Content(text="a cat"), [Content(text="a dog")])
    assert reranker.loaded
    reranker.unload()
    assert not reranker.loaded
    assert reranker.score(Content(text="a cat"), [Content(text="a dog")]) == first


def test_images_embedded_in_small_batches_score_the_same(reranker, tiny_config, tiny_embedder):
    documents = [
        Content(image=CAT),
        Content(video=CLIP),
        Content(text="an espresso cup", image=COFFEE),
        Content(image=EXAMPLE_MEDIA / "astronaut.jpg"),
    ]
    small = ClipRerankerConfig(embedder=tiny_config.embedder.model_copy(update={"batch_size": 1}))
    one_at_a_time = ClipReranker(small, embedder=tiny_embedder)
    assert one_at_a_time.score(QUERY, documents) == pytest.approx(
        reranker.score(QUERY, documents), abs=1e-5
    )
