"""One battery every reranker backend passes: the contract the pipeline relies on."""

from __future__ import annotations

import inspect
import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.schema import Content
from rerankers.base import Reranker
from rerankers.config import (
    ClipRerankerConfig,
    CrossEncoderRerankerConfig,
    Qwen3VLRerankerConfig,
    VllmRerankerConfig,
)
from rerankers.preprocessing import ImagePreprocessing
from rerankers.registry import create_reranker
from tests.rerankers_support import (
    EXAMPLE_MEDIA,
    SMALL_VISUALS,
    FakeVllmServer,
    tiny_cross_encoder_path,
    tiny_qwen_path,
)

QUERY = Content(text="a cat sitting on a poster")


@dataclass
class Case:
    reranker: Reranker
    documents: list[Content]
    failing: set[int]  # documents that must fail, with a reason
    low: float  # the backend's score range
    high: float
    preprocesses_images: bool = False  # a request's image preprocessing changes its scores


@pytest.fixture(scope="module")
def bad_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bad") / "truncated.jpg"
    path.write_bytes((EXAMPLE_MEDIA / "cat.jpg").read_bytes()[:300])
    return path


@pytest.fixture(scope="module")
def multimodal_documents(bad_image: Path) -> list[Content]:
    return [
        Content(text="a tabby cat poster"),
        Content(image=EXAMPLE_MEDIA / "cat.jpg"),
        Content(video=EXAMPLE_MEDIA / "launch_clip.mp4", fps=0.5),
        Content(text="an espresso cup", image=EXAMPLE_MEDIA / "coffee.jpg"),
        Content(image=bad_image),
        Content(image=EXAMPLE_MEDIA / "no-such-file.jpg"),
        Content(text="returns policy: unworn items can be returned within 30 days " * 5),
        Content(image=EXAMPLE_MEDIA / "cat.jpg"),
    ]


MULTIMODAL_FAILING = {4, 5}

TEXT_DOCUMENTS = [
    Content(text="a tabby cat poster"),
    Content(image=EXAMPLE_MEDIA / "cat.jpg"),  # no text: fails
    Content(text="an espresso cup", image=EXAMPLE_MEDIA / "coffee.jpg"),
    Content(text="returns policy: unworn items can be returned within 30 days " * 5),
    Content(text="a tabby cat poster"),
]


@pytest.fixture(scope="module")
def qwen_config(tmp_path_factory: pytest.TempPathFactory) -> Qwen3VLRerankerConfig:
    folder = tiny_qwen_path(tmp_path_factory)
    return Qwen3VLRerankerConfig(model=f"local-dir:{folder}", device="cpu", **SMALL_VISUALS)


@pytest.fixture(scope="module", params=["qwen3_vl", "clip", "cross_encoder", "vllm"])
def case(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    multimodal_documents: list[Content],
) -> Iterator[Case]:
    backend = request.param
    if backend == "cross_encoder":
        folder = tiny_cross_encoder_path(tmp_path_factory)
        config = CrossEncoderRerankerConfig(model=f"local-dir:{folder}", device="cpu")
        yield Case(create_reranker(config), TEXT_DOCUMENTS, {1}, 0.0, 1.0)
    elif backend == "clip":
        tiny_config = request.getfixturevalue("tiny_config")
        config = ClipRerankerConfig(embedder=tiny_config.embedder)
        yield Case(create_reranker(config), multimodal_documents, MULTIMODAL_FAILING, -1.0, 1.0)
    else:
        qwen = create_reranker(request.getfixturevalue("qwen_config"))
        if backend == "qwen3_vl":
            yield Case(qwen, multimodal_documents, MULTIMODAL_FAILING, 0.0, 1.0, True)
            return
        media_dir = tmp_path_factory.mktemp("vllm-media")
        with FakeVllmServer(qwen, media_dir) as server:
            config = VllmRerankerConfig(url=server.url, model=server.model, batch_size=3)
            reranker = create_reranker(config)
            yield Case(reranker, multimodal_documents, MULTIMODAL_FAILING, 0.0, 1.0)
            reranker.unload()


def test_one_score_per_document_in_range_or_nan_for_failures(case: Case):
    report = case.reranker.score_report(QUERY, case.documents)
    assert len(report.scores) == len(case.documents)
    for index, score in enumerate(report.scores):
        if index in case.failing:
            assert math.isnan(score)
        else:
            assert math.isfinite(score) and case.low <= score <= case.high
    assert [f.index for f in report.failures] == sorted(case.failing)
    assert all(f.reason.strip() for f in report.failures)


def test_rank_is_best_first_failures_last_ties_in_document_order(case: Case):
    ranked = case.reranker.rank(QUERY, case.documents)
    assert sorted(r.index for r in ranked) == list(range(len(case.documents)))
    scored = [r for r in ranked if not math.isnan(r.score)]
    assert [r.index for r in ranked[len(scored) :]] == sorted(case.failing)
    for better, worse in itertools.pairwise(scored):
        assert better.score >= worse.score
        if better.score == worse.score:
            assert better.index < worse.index
    for r in ranked:
        assert (r.error is not None) == (r.index in case.failing)
        assert r.document is case.documents[r.index]


def test_rank_agrees_with_score_and_top_k_cuts_it(case: Case):
    scores = case.reranker.score(QUERY, case.documents)
    ranked = case.reranker.rank(QUERY, case.documents, top_k=3)
    assert len(ranked) == 3
    best = max((s, -i) for i, s in enumerate(scores) if not math.isnan(s))
    assert ranked[0].index == -best[1]
    for r in ranked:
        assert r.score == pytest.approx(scores[r.index], abs=1e-5)


def test_scores_are_reproducible(case: Case):
    first = case.reranker.score(QUERY, case.documents)
    second = case.reranker.score(QUERY, case.documents)
    assert first == pytest.approx(second, abs=1e-6, nan_ok=True)


def test_no_documents_gives_empty_results(case: Case):
    assert case.reranker.score_report(QUERY, []).scores == []
    assert case.reranker.score(QUERY, []) == []
    assert case.reranker.rank(QUERY, [], top_k=5) == []


def test_instruction_and_fps_are_accepted(case: Case):
    report = case.reranker.score_report(
        QUERY, case.documents[:2], instruction="Find posters of cats.", fps=2.0
    )
    assert len(report.scores) == 2


def test_the_protocol_s_signatures_and_a_request_s_image_preprocessing(case: Case):
    assert isinstance(case.reranker, Reranker)
    for method in ("score_report", "score", "rank"):
        ours = inspect.signature(getattr(type(case.reranker), method)).parameters
        assert list(ours) == list(inspect.signature(getattr(Reranker, method)).parameters)
        assert ours["image"].kind is inspect.Parameter.KEYWORD_ONLY
    documents = case.documents[:4]
    plain = case.reranker.score(QUERY, documents)
    crop = ImagePreprocessing(target_size=(32, 32), resize_mode="crop")
    cropped = case.reranker.score(QUERY, documents, image=crop)
    ranked = case.reranker.rank(QUERY, documents, image=crop)
    expected = [cropped[r.index] for r in ranked]
    assert [r.score for r in ranked] == pytest.approx(expected, abs=1e-6, nan_ok=True)
    if case.preprocesses_images:
        assert cropped != pytest.approx(plain, abs=1e-6, nan_ok=True)
    else:  # backends that do not preprocess images ignore it
        assert cropped == pytest.approx(plain, abs=1e-6, nan_ok=True)


def test_progress_counts_up_to_every_document(case: Case):
    seen: list[tuple[int, int]] = []
    case.reranker.score_report(QUERY, case.documents, progress=lambda *p: seen.append(p))
    total = len(case.documents)
    assert seen and seen[-1] == (total, total)
    assert all(t == total and 0 <= d <= total for d, t in seen)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_qwen_progress_advances_per_batch(qwen_config, multimodal_documents):
    reranker = create_reranker(qwen_config.model_copy(update={"max_batch_size": 1}))
    seen: list[int] = []
    reranker.score_report(QUERY, multimodal_documents, progress=lambda done, _: seen.append(done))
    # One report per forward pass: each readable, distinct pair is its own batch here.
    assert len(set(seen)) >= 4
