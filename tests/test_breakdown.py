"""One candidate's score taken apart: every number in it must be what the reranker gives
when asked about that part, that frame, alone.

Random weights: scores mean nothing. Each test scores the pieces separately, one call
each, and compares with the breakdown (scored in one batched, prefix-sharing call).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from pipeline.config import MediaConfig, validate_config
from pipeline.media import sample_video
from pipeline.pipeline import Pipeline
from pipeline.schema import Content, Frame
from rerankers.breakdown import explain
from rerankers.clip import ClipReranker
from rerankers.config import ClipRerankerConfig
from rerankers.preprocessing import ImagePreprocessing
from rerankers.qwen3_vl.config import Qwen3VLRerankerConfig
from rerankers.qwen3_vl.reranker import Qwen3VLRerankerBackend
from tests.media_factory import frame_index, make_bad_files, make_image, make_video
from tests.rerankers_support import SMALL_VISUALS, tiny_qwen_path
from tests.test_qwen3_vl import noise_image

VIDEO_FPS = 10
QUERY = Content(text="the moment the light turns on")


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Qwen3VLRerankerConfig:
    model = tiny_qwen_path(tmp_path_factory)
    return Qwen3VLRerankerConfig(model=f"local-dir:{model}", device="cpu", **SMALL_VISUALS)


@pytest.fixture(scope="module")
def reranker(config: Qwen3VLRerankerConfig) -> Qwen3VLRerankerBackend:
    return Qwen3VLRerankerBackend(config)


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("breakdown-media")
    make_image(folder / "photo.png", size=(96, 64))
    make_video(folder / "clip.mp4", seconds=4.0, fps=VIDEO_FPS)
    make_bad_files(folder / "bad")
    return folder


def score_alone(reranker, document: Content, **settings) -> float:
    (score,) = reranker.score(QUERY, [document], **settings)
    return score


def test_whole_and_each_part_score_as_they_do_alone(reranker, media_dir: Path) -> None:
    document = Content(
        text="a lamp in a dark room", image=media_dir / "photo.png", video=media_dir / "clip.mp4"
    )
    breakdown = explain(reranker, QUERY, document)
    assert breakdown.whole == pytest.approx(score_alone(reranker, document), abs=1e-4)
    assert breakdown.whole_error is None
    assert [p.part for p in breakdown.parts] == ["text", "image", "video"]
    alone = [
        score_alone(reranker, Content(text=document.text)),
        score_alone(reranker, Content(image=document.image)),
        score_alone(reranker, Content(video=document.video)),
    ]
    assert [p.score for p in breakdown.parts] == pytest.approx(alone, abs=1e-4)
    assert all(p.error is None for p in breakdown.parts)
    assert breakdown.frames == [] and breakdown.best_moment is None  # frames not asked for


def test_request_settings_reach_every_pair(reranker, media_dir: Path) -> None:
    settings = {
        "instruction": "Find the photo.",
        "image": ImagePreprocessing(target_size=(48, 48), resize_mode="crop"),
    }
    document = Content(text="a photo", image=media_dir / "photo.png")
    breakdown = explain(reranker, QUERY, document, **settings)
    assert breakdown.whole == pytest.approx(score_alone(reranker, document, **settings), abs=1e-4)
    image_part = score_alone(reranker, Content(image=document.image), **settings)
    assert breakdown.parts[1].score == pytest.approx(image_part, abs=1e-4)
    assert breakdown.parts[1].score != pytest.approx(
        score_alone(reranker, Content(image=document.image)), abs=1e-5
    )


@pytest.mark.parametrize("fps", [1.0, 2.0])
def test_frames_are_the_reranker_s_own_each_scored_as_an_image(
    reranker, config: Qwen3VLRerankerConfig, media_dir: Path, fps: float
) -> None:
    video = media_dir / "clip.mp4"
    breakdown = explain(reranker, QUERY, Content(video=video), fps=fps, frames=True)
    model_sees = reranker.visual_preprocessor.video(video, fps, config.max_frames)
    assert [f.timestamp for f in breakdown.frames] == pytest.approx(list(model_sees.timestamps))
    assert [f.index for f in breakdown.frames] == list(range(len(breakdown.frames)))

    sampled = reranker.sampled_frames(video, fps, None)
    # Each image is the frame its time names (the factory draws the index in it).
    assert [frame_index(f.image) for f in sampled] == [
        round(f.timestamp * VIDEO_FPS) for f in breakdown.frames
    ]
    alone = [score_alone(reranker, Content(image=f.image)) for f in sampled]
    assert [f.score for f in breakdown.frames] == pytest.approx(alone, abs=1e-4)
    best = max(range(len(alone)), key=alone.__getitem__)
    assert breakdown.best_moment == breakdown.frames[best]
    assert breakdown.parts == []  # a video alone is one part


def test_a_frame_list_s_padding_frame_is_no_moment(reranker) -> None:
    given = [
        Frame(timestamp=t, image=noise_image(64, 64, seed)) for seed, t in enumerate((0, 3, 7))
    ]
    breakdown = explain(reranker, QUERY, Content(video=given), frames=True)
    # The model sees four frames (the last one twice); the user sees the three given.
    assert [f.timestamp for f in breakdown.frames] == [0.0, 3.0, 7.0]


def test_a_one_part_document_has_no_parts(reranker) -> None:
    document = Content(text="just words")
    breakdown = explain(reranker, QUERY, document, frames=True)
    assert breakdown.whole == pytest.approx(score_alone(reranker, document), abs=1e-4)
    assert breakdown.parts == [] and breakdown.frames == [] and breakdown.best_moment is None


def test_an_unreadable_video_is_reported_not_raised(reranker, media_dir: Path) -> None:
    broken = media_dir / "bad" / "fake_header.mp4"
    alone = explain(reranker, QUERY, Content(video=broken), frames=True)
    assert alone.whole is None and alone.whole_error and "fake_header.mp4" in alone.whole_error
    assert alone.frames == [] and alone.best_moment is None

    mixed = explain(reranker, QUERY, Content(text="a clip", video=broken), frames=True)
    assert mixed.whole is None and mixed.whole_error
    text, video = mixed.parts
    assert text.score == pytest.approx(score_alone(reranker, Content(text="a clip")), abs=1e-4)
    assert text.error is None
    assert video.score is None and video.error == alone.whole_error


def test_a_query_that_cannot_be_used_raises(reranker, media_dir: Path) -> None:
    query = Content(image=media_dir / "bad" / "random.jpg")
    with pytest.raises(ValueError, match="query cannot be used"):
        explain(reranker, query, Content(text="a", image=media_dir / "photo.png"))


def test_progress_counts_every_pair(reranker, media_dir: Path) -> None:
    seen: list[tuple[int, int]] = []
    document = Content(text="a lamp", video=media_dir / "clip.mp4")
    breakdown = explain(
        reranker, QUERY, document, fps=1.0, frames=True, progress=lambda *p: seen.append(p)
    )
    total = 1 + len(breakdown.parts) + len(breakdown.frames)
    assert total == 1 + 2 + 4
    assert seen[-1] == (total, total) and all(t == total for _, t in seen)


# --- another backend: frames from the pipeline's sampler ---------------------------------


def test_clip_backend_frames_come_from_the_pipeline_sampler(
    tiny_config, tiny_embedder, media_dir: Path
) -> None:
    clip = ClipReranker(ClipRerankerConfig(embedder=tiny_config.embedder), embedder=tiny_embedder)
    video = media_dir / "clip.mp4"
    document = Content(text="a lamp", video=video)
    breakdown = explain(clip, QUERY, document, fps=2.0, frames=True, media=MediaConfig())
    sampled = sample_video(video, fps=2.0, max_frames=MediaConfig().max_frames)
    assert [f.timestamp for f in breakdown.frames] == pytest.approx([f.timestamp for f in sampled])
    alone = [score_alone(clip, Content(image=f.image)) for f in sampled]
    assert [f.score for f in breakdown.frames] == pytest.approx(alone, abs=1e-5)
    # CLIP scores a document by its best modality, a video by its best frame.
    assert breakdown.whole == pytest.approx(max(p.score for p in breakdown.parts), abs=1e-5)
    assert breakdown.parts[1].score == pytest.approx(breakdown.best_moment.score, abs=1e-5)


# --- through the pipeline ----------------------------------------------------------------


@pytest.fixture(scope="module")
def pipeline(config: Qwen3VLRerankerConfig, tiny_config) -> Pipeline:
    reranker = config.model_dump(include={"backend", "model", "device", *SMALL_VISUALS})
    embedder = tiny_config.embedder.model_dump()
    return Pipeline(validate_config({"reranker": reranker, "embedder": embedder}))


def test_pipeline_explains_and_scores_uploaded_documents(
    pipeline: Pipeline, reranker, media_dir: Path
) -> None:
    document = Content(text="a lamp", image=media_dir / "photo.png")
    crop = ImagePreprocessing(target_size=(48, 48), resize_mode="crop")
    ours = pipeline.explain(QUERY, document, image=crop, instruction="Find it.")
    direct = explain(reranker, QUERY, document, image=crop, instruction="Find it.")
    assert ours.whole == pytest.approx(direct.whole, abs=1e-4)
    assert [p.part for p in ours.parts] == [p.part for p in direct.parts] == ["text", "image"]
    assert [p.score for p in ours.parts] == pytest.approx([p.score for p in direct.parts], abs=1e-4)

    documents = [document, Content(image=media_dir / "bad" / "empty.jpg")]
    report = pipeline.score(QUERY, documents, image=crop, instruction="Find it.")
    assert report.scores[0] == pytest.approx(ours.whole, abs=1e-4)
    assert math.isnan(report.scores[1]) and [f.index for f in report.failures] == [1]


def test_pipeline_refuses_an_unreadable_query_file_before_scoring(
    pipeline: Pipeline, media_dir: Path
) -> None:
    from pipeline.media import MediaError

    query = Content(image=media_dir / "no-such-file.png")
    with pytest.raises(MediaError):
        pipeline.explain(query, Content(text="a"))
    with pytest.raises(MediaError):
        pipeline.score(query, [Content(text="a")])
