"""Work a request's pairs share is done once: the prompt start (system prompt, instruction,
query and its images) and the vision tower's output for each distinct image or video.

Random weights: scores mean nothing; what is checked is that sharing changes no score
(against full prompts, one pair per forward, as the reference runs them) and that the
shared work really runs once.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.schema import Content
from rerankers.qwen3_vl.config import Qwen3VLRerankerConfig
from rerankers.qwen3_vl.encoding import EncodedPair, PairEncoder
from rerankers.qwen3_vl.prefix import find_shared_prefix
from rerankers.qwen3_vl.prompt import build_messages
from rerankers.qwen3_vl.reranker import Qwen3VLRerankerBackend
from tests.rerankers_support import tiny_qwen_path
from tests.test_qwen3_vl import noise_frames, noise_image


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Qwen3VLRerankerConfig:
    model = tiny_qwen_path(tmp_path_factory)
    return Qwen3VLRerankerConfig(model=f"local-dir:{model}", device="cpu")


@pytest.fixture(scope="module")
def reference(config: Qwen3VLRerankerConfig) -> Qwen3VLRerankerBackend:
    """The reference's way: every pair's whole prompt in its own forward pass."""
    update = {
        "max_batch_size": 1,
        "share_prefix": False,
        "vision_cache_bytes": 0,
        "dedupe": False,
    }
    return Qwen3VLRerankerBackend(config.model_copy(update=update))


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sharing-media")
    for name, (width, height, seed) in {
        "query.png": (96, 64, 1),
        "shirt.png": (64, 64, 2),
        "dress.png": (64, 64, 3),  # same size as shirt.png: same placeholder tokens
        "shoe.jpg": (160, 96, 4),
    }.items():
        noise_image(width, height, seed).save(folder / name)
    return folder


def documents_of(media_dir: Path) -> list[Content]:
    return [
        Content(image=media_dir / "shirt.png", text="a shirt"),
        Content(image=media_dir / "dress.png", text="a dress"),
        Content(image=media_dir / "shirt.png"),
        Content(text="a long description of a summer dress " * 30),
        Content(video=noise_frames(4, 0.5, seed=7), text="a clip"),
        Content(image=media_dir / "shoe.jpg", video=noise_frames(3, 1.0, seed=8)),
        Content(text="red"),
        Content(),
    ]


QUERIES = {
    "text": lambda media_dir: Content(text="a red summer dress"),
    "image": lambda media_dir: Content(text="this, in red", image=media_dir / "query.png"),
    "video": lambda media_dir: Content(video=noise_frames(5, 0.5, seed=9)),
}


@pytest.mark.parametrize("query_kind", sorted(QUERIES))
@pytest.mark.parametrize("batch_size", [1, 32])
def test_shared_start_gives_the_full_prompt_scores(
    config, reference, media_dir: Path, query_kind: str, batch_size: int
) -> None:
    query = QUERIES[query_kind](media_dir)
    documents = documents_of(media_dir)
    shared = Qwen3VLRerankerBackend(
        config.model_copy(update={"max_batch_size": batch_size, "max_batch_tokens": 4096})
    )
    ours = shared.score_report(query, documents)
    full = reference.score_report(query, documents)
    assert ours.failures == [] and full.failures == []
    assert np.max(np.abs(np.array(ours.scores) - np.array(full.scores))) <= 1e-4


def count_tower_inputs(backend: Qwen3VLRerankerBackend, monkeypatch) -> list[int]:
    """Images and videos the vision tower reads, appended per call (videos reach the
    tower through ``get_image_features`` too)."""
    model = backend.model
    real = model.get_image_features
    seen: list[int] = []

    def counting(pixels, grids, *args, **kwargs):
        seen.append(len(grids))
        return real(pixels, grids, *args, **kwargs)

    monkeypatch.setattr(model, "get_image_features", counting)
    return seen


def test_each_distinct_image_or_video_goes_through_the_tower_once(
    config, reference, media_dir: Path, monkeypatch
) -> None:
    query = QUERIES["image"](media_dir)
    documents = documents_of(media_dir)
    # query.png, shirt.png, dress.png, shoe.jpg and two videos: 6 distinct; 6 uses in
    # the documents, and the query image in every prompt.
    backend = Qwen3VLRerankerBackend(config)
    seen = count_tower_inputs(backend, monkeypatch)
    first = backend.score(query, documents)
    assert sum(seen) == 6
    seen.clear()
    again = backend.score(query, documents)
    assert sum(seen) == 0  # every output is still cached
    assert again == pytest.approx(first, abs=1e-6)

    uncached = Qwen3VLRerankerBackend(config.model_copy(update={"vision_cache_bytes": 0}))
    seen = count_tower_inputs(uncached, monkeypatch)
    uncached.score(query, documents)
    uncached.score(query, documents)
    assert sum(seen) == 12  # still once per request

    seen = count_tower_inputs(reference, monkeypatch)
    reference.visual_preprocessor.cache.clear()
    reference.score(query, documents)
    assert sum(seen) == len(documents) + 6  # the query per pair, and every document use


def encoded_pairs(
    backend: Qwen3VLRerankerBackend, query: Content, documents: list[Content]
) -> tuple[list[EncodedPair], PairEncoder]:
    from transformers import AutoProcessor

    encoder = PairEncoder(AutoProcessor.from_pretrained(backend.config.model_path), 10240)
    visuals = backend.visual_preprocessor

    def side(content: Content) -> list:
        found = [visuals.video(content.video, 1.0, 64)] if content.video is not None else []
        return found + ([visuals.image(content.image)] if content.image is not None else [])

    pairs = [
        encoder.encode(build_messages(None, query, document), side(query) + side(document))
        for document in documents
    ]
    return pairs, encoder


def shared_prefix_of(backend, pairs: list[EncodedPair], encoder: PairEncoder):
    model_config = backend.model.config
    return find_shared_prefix(
        pairs, model_config.image_token_id, model_config.video_token_id, encoder.merge_length
    )


def test_the_shared_start_holds_the_query_and_stops_before_the_documents(
    reference, media_dir: Path
) -> None:
    query = QUERIES["image"](media_dir)
    # Both documents open with a 64x64 image: equal placeholder tokens, other pixels.
    documents = [
        Content(image=media_dir / "shirt.png", text="x"),
        Content(image=media_dir / "dress.png", text="x"),
    ]
    pairs, encoder = encoded_pairs(reference, query, documents)
    shared = shared_prefix_of(reference, pairs, encoder)
    assert shared is not None and shared.visual_count == 1  # the query image only
    image_token = reference.model.config.image_token_id
    ids = pairs[0].input_ids
    run_starts = [
        i for i, token in enumerate(ids) if token == image_token and ids[i - 1] != image_token
    ]
    assert len(run_starts) == 2  # the query's image, then the document's
    assert shared.length <= run_starts[1]
    tokens = encoder.tokenizer.decode(pairs[0].input_ids[: shared.length])
    assert tokens.endswith("<Document>:<|vision_start|>")


def test_identical_pairs_keep_a_token_of_their_own(reference, media_dir: Path) -> None:
    query = QUERIES["text"](media_dir)
    pairs, encoder = encoded_pairs(reference, query, [Content(text="same")] * 3)
    shared = shared_prefix_of(reference, pairs, encoder)
    assert shared is not None and shared.length == len(pairs[0]) - 1
    assert shared_prefix_of(reference, pairs[:1], encoder) is None


def count_model_rows(backend: Qwen3VLRerankerBackend, monkeypatch) -> list[int]:
    """Prompts per forward pass of the decoder."""
    model = backend.model
    real = model.forward
    rows: list[int] = []

    def counting(*args, **kwargs):
        rows.append(len(kwargs["input_ids"]))
        return real(*args, **kwargs)

    monkeypatch.setattr(model, "forward", counting)
    return rows


def test_identical_pairs_are_scored_once(
    config, reference, media_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    copy = tmp_path / "same-shirt-other-name.png"
    shutil.copy(media_dir / "shirt.png", copy)
    documents = [
        Content(image=media_dir / "shirt.png"),
        Content(text="red"),
        Content(image=copy),  # same content: the same input
        Content(text="red"),
        Content(image=media_dir / "dress.png"),  # same size as the shirt, other pixels
        Content(text="red", image=media_dir / "shirt.png"),
    ]
    query = QUERIES["image"](media_dir)
    update = {"share_prefix": False}
    deduped = Qwen3VLRerankerBackend(config.model_copy(update=update))
    rows = count_model_rows(deduped, monkeypatch)
    scores = deduped.score(query, documents)
    assert sum(rows) == 4
    assert scores[2] == scores[0] and scores[3] == scores[1]
    assert scores == pytest.approx(reference.score(query, documents), abs=1e-4)

    every = Qwen3VLRerankerBackend(config.model_copy(update=update | {"dedupe": False}))
    rows = count_model_rows(every, monkeypatch)
    every.score(query, documents)
    assert sum(rows) == len(documents)


def test_a_repeat_of_a_pair_that_cannot_fit_fails_alike(
    config, media_dir: Path, monkeypatch
) -> None:
    long_text = "a long description of a summer dress " * 30
    documents = [Content(text=long_text), Content(text="red"), Content(text=long_text)]
    backend = Qwen3VLRerankerBackend(config.model_copy(update={"share_prefix": False}))
    model_class = type(backend.model)
    real_forward = model_class.forward

    def forward_that_fits_short_prompts(self, *args, **kwargs):
        if kwargs["input_ids"].shape[1] > 100:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_forward(self, *args, **kwargs)

    monkeypatch.setattr(model_class, "forward", forward_that_fits_short_prompts)
    report = backend.score_report(QUERIES["text"](media_dir), documents)
    assert [failure.index for failure in report.failures] == [0, 2]
    assert all("out of memory" in failure.reason for failure in report.failures)
    assert np.isnan(report.scores[0]) and np.isnan(report.scores[2])
    assert not np.isnan(report.scores[1])


def test_bfloat16_sharing_agrees_with_full_prompts(config, reference, media_dir: Path) -> None:
    """bf16 is the GPU default; CPU runs it too, so the dtype plumbing of the shared start
    (cached keys and values, vision outputs, masks) is checked here. Tolerances are
    bf16's: about three significant digits."""
    query = QUERIES["image"](media_dir)
    documents = documents_of(media_dir)
    bf16 = config.model_copy(update={"dtype": "bfloat16"})
    shared = Qwen3VLRerankerBackend(bf16)
    full = Qwen3VLRerankerBackend(
        bf16.model_copy(
            update=reference.config.model_dump(
                include={"max_batch_size", "share_prefix", "vision_cache_bytes", "dedupe"}
            )
        )
    )
    assert shared.model.dtype == torch.bfloat16
    ours = shared.score_report(query, documents)
    theirs = full.score_report(query, documents)
    assert ours.failures == [] and theirs.failures == []
    assert np.max(np.abs(np.array(ours.scores) - np.array(theirs.scores))) <= 1e-3
    float32 = reference.score(query, documents)
    assert np.max(np.abs(np.array(ours.scores) - np.array(float32))) <= 5e-3
