"""The Qwen3-VL reranker backend on a tiny random Qwen3-VL built offline.

Random weights: the scores mean nothing, so the tests check the recipe (prompt, tokens,
truncation, frames), agreement with an independent computation and between batched and
one-pair forwards, and what happens to bad input.
"""

from __future__ import annotations

import hashlib
import math
import subprocess
import sys
import threading
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from pipeline import media
from pipeline.schema import Content, Frame
from rerankers.qwen3_vl.batching import pack_by_token_budget, score_in_batches
from rerankers.qwen3_vl.config import Qwen3VLRerankerConfig
from rerankers.qwen3_vl.encoding import PairEncoder
from rerankers.qwen3_vl.prompt import DEFAULT_INSTRUCTION, SYSTEM_PROMPT, build_messages
from rerankers.qwen3_vl.reranker import Qwen3VLRerankerBackend
from rerankers.qwen3_vl.seed import Qwen3VLReranker
from rerankers.qwen3_vl.tiny import build_tiny_qwen3_vl_reranker
from rerankers.qwen3_vl.visual import BoundedCache, VisualInput, smart_resize
from tests.rerankers_support import tiny_qwen_path

IMAGE = "<|vision_start|><|image_pad|><|vision_end|>"
VIDEO = "<|vision_start|><|video_pad|><|vision_end|>"
# transformers 4.57, which the reference pins, expands the whole VIDEO placeholder into
# timestamped <|vision_start|>...<|vision_end|> blocks; transformers 5 keeps the outer
# start and end around them. Both expand a bare pad the same way, as 4.57 does VIDEO.
BARE_VIDEO = "<|video_pad|>"


def noise_image(width: int, height: int, seed: int) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def noise_frames(count: int, step: float, seed: int, size: int = 64) -> list[Frame]:
    return [
        Frame(timestamp=i * step, image=noise_image(size, size, seed + i)) for i in range(count)
    ]


def write_video(path: Path, seconds: float, fps: int = 8, size: tuple[int, int] = (64, 48)) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(int(seconds * fps)):
            pixels = np.full((size[1], size[0], 3), (i * 37) % 256, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_qwen_path(tmp_path_factory)


@pytest.fixture(scope="module")
def config(model_dir: Path) -> Qwen3VLRerankerConfig:
    return Qwen3VLRerankerConfig(model=f"local-dir:{model_dir}", device="cpu")


@pytest.fixture(scope="module")
def backend(config: Qwen3VLRerankerConfig) -> Qwen3VLRerankerBackend:
    return Qwen3VLRerankerBackend(config)


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("qwen-media")
    noise_image(96, 64, 1).save(folder / "photo.png")
    noise_image(200, 120, 2).save(folder / "wide.jpg")
    write_video(folder / "clip.mp4", seconds=4.0)
    (folder / "random.jpg").write_bytes(np.random.default_rng(3).bytes(2048))
    jpeg = (folder / "wide.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 3])
    (folder / "empty.png").write_bytes(b"")
    return folder


@pytest.fixture(scope="module")
def mixed_documents(media_dir: Path) -> list[Content]:
    return [
        Content(text="a cat"),
        Content(image=media_dir / "photo.png"),
        Content(text="a long passage about the history of the city " * 40),
        Content(video=noise_frames(5, 0.5, seed=10)),
        Content(text="mixed", image=media_dir / "wide.jpg", video=noise_frames(3, 1.0, seed=20)),
        Content(),
        Content(video=media_dir / "clip.mp4"),
        Content(text="yes"),
        Content(image=noise_image(40, 300, seed=30), text="tall"),
    ]


# --- the prompt --------------------------------------------------------------------------


def test_prompt_renders_the_reference_layout(model_dir: Path) -> None:
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(model_dir)
    query = Content(text="a dog", image=noise_image(32, 32, 0))
    document = Content(text="a clip", video=noise_frames(2, 1.0, seed=0))
    rendered = processor.apply_chat_template(
        build_messages("Find the clip.", query, document),
        tokenize=False,
        add_generation_prompt=True,
    )
    assert rendered == (
        "<|im_start|>system\n"
        "Judge whether the Document meets the requirements based on the Query and the "
        'Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n'
        "<|im_start|>user\n"
        "<Instruct>: Find the clip.<Query>:<|vision_start|><|image_pad|><|vision_end|>a dog\n"
        "<Document>:<|vision_start|><|video_pad|><|vision_end|>a clip<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_empty_side_is_null_and_instruction_defaults(model_dir: Path) -> None:
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(model_dir)
    rendered = processor.apply_chat_template(
        build_messages(None, Content(text="q"), Content()),
        tokenize=False,
        add_generation_prompt=True,
    )
    assert (
        "<|im_start|>user\n<Instruct>: Given a search query, retrieve relevant candidates "
        "that answer the query.<Query>:q\n<Document>:NULL<|im_end|>\n"
    ) in rendered


def test_yes_and_no_are_single_tokens(model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    for word in ("yes", "no"):
        assert len(tokenizer.encode(word, add_special_tokens=False)) == 1
    for token in ("<|im_start|>", "<|im_end|>", "<|image_pad|>", "<|video_pad|>"):
        assert len(tokenizer.encode(token, add_special_tokens=False)) == 1


def test_tiny_builder_is_deterministic(tmp_path: Path, model_dir: Path) -> None:
    again = build_tiny_qwen3_vl_reranker(tmp_path / "again", seed=0)
    other = build_tiny_qwen3_vl_reranker(tmp_path / "other", seed=1)

    def digests(folder: Path) -> dict[str, str]:
        return {
            p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.iterdir())
            if not p.name.startswith(".")
        }

    assert digests(again) == digests(model_dir)
    assert digests(other)["model.safetensors"] != digests(again)["model.safetensors"]


def test_checkpoint_is_written_in_the_published_layout(model_dir: Path) -> None:
    import json

    from transformers import Qwen3VLForConditionalGeneration

    assert {
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "video_preprocessor_config.json",
        "chat_template.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.json",
        "merges.txt",
    } <= {p.name for p in model_dir.iterdir()}
    config = json.loads((model_dir / "config.json").read_text())
    text = config["text_config"]
    # transformers 4.57 reads these names and places; 5 reads them too.
    assert text["rope_scaling"]["mrope_section"] and "rope_parameters" not in text
    assert text["tie_word_embeddings"] and config["tie_word_embeddings"]
    tokenizer = json.loads((model_dir / "tokenizer_config.json").read_text())
    assert "<|im_start|>" in tokenizer["additional_special_tokens"]
    assert "extra_special_tokens" not in tokenizer
    model = Qwen3VLForConditionalGeneration.from_pretrained(model_dir)
    assert torch.equal(model.lm_head.weight, model.model.language_model.embed_tokens.weight)


# --- scores ------------------------------------------------------------------------------


def reference_score(model_dir: Path, prompt: str, images=None, videos=None) -> float:
    """One pair through the plain transformers path: full logits at the last position."""
    from transformers import AutoProcessor, Qwen3VLForConditionalGeneration
    from transformers.video_utils import VideoMetadata

    processor = AutoProcessor.from_pretrained(model_dir)
    model = Qwen3VLForConditionalGeneration.from_pretrained(model_dir).eval()
    kwargs = {}
    if videos:
        frame_lists = [[frame.image for frame in frames] for frames in videos]
        step = videos[0][1].timestamp - videos[0][0].timestamp
        kwargs = {
            "videos": frame_lists,
            "video_metadata": [
                VideoMetadata(
                    total_num_frames=len(f), fps=1 / step, frames_indices=list(range(len(f)))
                )
                for f in frame_lists
            ],
            "do_sample_frames": False,
        }
    inputs = processor(text=[prompt], images=images, do_resize=False, return_tensors="pt", **kwargs)
    with torch.no_grad():
        logits = model(**inputs).logits[0, -1]
    vocab = processor.tokenizer.get_vocab()
    return torch.sigmoid(logits[vocab["yes"]] - logits[vocab["no"]]).item()


def test_backend_matches_an_independent_reference(
    backend: Qwen3VLRerankerBackend, model_dir: Path
) -> None:
    # Sizes on the 32-pixel grid within the pixel budgets (a frame's floor is 128 grid
    # units): no resizing on either path.
    photo = noise_image(96, 64, 5)
    frames = noise_frames(3, 0.5, seed=40, size=384)
    query = Content(text="a red car", image=photo)
    documents = [Content(text="a parking lot"), Content(video=frames, text="traffic")]
    system = f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n"
    user = (
        f"<|im_start|>user\n<Instruct>: {DEFAULT_INSTRUCTION}<Query>:{IMAGE}a red car\n<Document>:"
    )
    end = "<|im_end|>\n<|im_start|>assistant\n"
    expected = [
        reference_score(model_dir, system + user + "a parking lot" + end, images=[photo]),
        reference_score(
            model_dir, system + user + BARE_VIDEO + "traffic" + end, images=[photo], videos=[frames]
        ),
    ]
    scores = backend.score(query, documents)
    assert scores == pytest.approx(expected, abs=1e-5)


def test_batched_scores_equal_per_pair_scores(
    config: Qwen3VLRerankerConfig, mixed_documents: list[Content], media_dir: Path
) -> None:
    query = Content(text="a person walking a dog", image=media_dir / "photo.png")
    batched = Qwen3VLRerankerBackend(config.model_copy(update={"max_batch_tokens": 4096}))
    single = Qwen3VLRerankerBackend(config.model_copy(update={"max_batch_size": 1}))
    report = batched.score_report(query, mixed_documents)
    alone = single.score_report(query, mixed_documents)
    lengths = batched.prompt_lengths(query, mixed_documents)
    assert max(lengths) > 3 * min(lengths)
    assert max(map(len, pack_by_token_budget(lengths, 4096, 32))) > 1  # real multi-row batches
    assert report.failures == [] and alone.failures == []
    assert np.max(np.abs(np.array(report.scores) - np.array(alone.scores))) <= 1e-4
    assert all(0.0 <= s <= 1.0 for s in report.scores)
    # Same scores whatever the document order: results come back in input order.
    reversed_scores = batched.score(query, mixed_documents[::-1])
    assert reversed_scores[::-1] == pytest.approx(report.scores, abs=1e-4)


def test_packing_sorts_by_length_within_the_token_budget() -> None:
    lengths = [10, 300, 40, 40, 5000, 90]
    batches = pack_by_token_budget(lengths, max_batch_tokens=400, max_batch_size=3)
    assert batches == [[4], [1], [5, 2, 3], [0]]
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))


def test_out_of_memory_splits_the_batch_and_reports_what_cannot_fit() -> None:
    calls: list[list[int]] = []

    def forward(batch: list[int]) -> list[float]:
        calls.append(batch)
        if len(batch) > 2 or 3 in batch:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return [i / 10 for i in batch]

    outcome = score_in_batches([50] * 7, forward, max_batch_tokens=10_000, max_batch_size=8)
    assert outcome.scores == {i: i / 10 for i in range(7) if i != 3}
    assert list(outcome.failures) == [3]
    assert "out of memory" in outcome.failures[3]
    assert max(len(batch) for batch in calls) == 7


def test_backend_survives_out_of_memory(
    backend: Qwen3VLRerankerBackend, mixed_documents: list[Content], monkeypatch
) -> None:
    query = Content(text="a dog")
    expected = backend.score(query, mixed_documents)
    model_class = type(backend.model)
    real_forward = model_class.forward

    refused: list[int] = []

    def forward_that_fits_two(self, *args, **kwargs):
        if kwargs["input_ids"].shape[0] > 2:
            refused.append(kwargs["input_ids"].shape[0])
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_forward(self, *args, **kwargs)

    monkeypatch.setattr(model_class, "forward", forward_that_fits_two)
    report = backend.score_report(query, mixed_documents)
    assert refused  # batches of more than two pairs were tried, and split
    assert report.failures == []
    assert report.scores == pytest.approx(expected, abs=1e-4)


# --- tokens ------------------------------------------------------------------------------


def test_truncation_cuts_only_text_and_keeps_the_assistant_prompt(
    backend: Qwen3VLRerankerBackend,
) -> None:
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(backend.config.model_path)
    encoder = PairEncoder(processor, max_length=400)
    preprocessor = backend.visual_preprocessor
    image = preprocessor.image(noise_image(64, 64, 7))  # 4 image tokens
    video = preprocessor.video(noise_frames(4, 1.0, seed=8), fps=1.0, max_frames=64)
    query = Content(text="needle " * 5, image=noise_image(64, 64, 7))
    document = Content(text="hay " * 500, video=noise_frames(4, 1.0, seed=8))
    pair = encoder.encode(build_messages(None, query, document), [image, video])
    expanded, _ = encoder.expand(
        encoder.render(build_messages(None, query, document)), [image, video]
    )
    full = processor.tokenizer(expanded)["input_ids"]

    suffix = processor.tokenizer("<|im_end|>\n<|im_start|>assistant\n")["input_ids"]
    assert len(full) > 400 + len(suffix)
    assert len(pair) == 400 + len(suffix)
    assert pair.input_ids[-len(suffix) :] == suffix
    specials = set(processor.tokenizer.all_special_ids)
    assert [t for t in pair.input_ids if t in specials] == [t for t in full if t in specials]
    decoded = processor.tokenizer.decode(pair.input_ids)
    assert "<0.5 seconds>" in decoded and "<2.5 seconds>" in decoded  # timestamps kept
    assert "needle needle needle needle needle" in decoded  # the query text comes first
    assert decoded.count("hay") < 500


def test_encoding_matches_the_processor_token_for_token(backend: Qwen3VLRerankerBackend) -> None:
    from transformers import AutoProcessor
    from transformers.video_utils import VideoMetadata

    processor = AutoProcessor.from_pretrained(backend.config.model_path)
    frames = noise_frames(5, 0.5, seed=50, size=384)  # no resizing on either path
    query = Content(text="q", image=noise_image(96, 64, 9))
    document = Content(video=frames, text="d")
    visuals = [
        backend.visual_preprocessor.image(query.image),
        backend.visual_preprocessor.video(frames, fps=2.0, max_frames=64),
    ]
    messages = build_messages(None, query, document)
    ours = PairEncoder(processor, max_length=10240).encode(messages, visuals).input_ids
    rendered = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    theirs = processor(
        text=[rendered.replace(VIDEO, BARE_VIDEO)],
        images=[query.image],
        videos=[[f.image for f in frames]],
        video_metadata=[VideoMetadata(total_num_frames=5, fps=2.0, frames_indices=list(range(5)))],
        do_resize=False,
        do_sample_frames=False,
    )["input_ids"][0]
    assert ours == list(theirs)


# --- visual inputs -----------------------------------------------------------------------


def test_smart_resize_follows_the_reference_rule() -> None:
    assert smart_resize(64, 96, 4 * 1024, 1800 * 1024) == (64, 96)
    assert smart_resize(100, 100, 4 * 1024, 1800 * 1024) == (96, 96)
    assert smart_resize(10, 10, 4 * 1024, 1800 * 1024) == (64, 64)  # up to min_pixels
    assert smart_resize(4000, 3000, 4 * 1024, 1800 * 1024) == (1536, 1152)  # down to the cap
    with pytest.raises(ValueError, match="aspect ratio"):
        smart_resize(10, 3000, 4 * 1024, 1800 * 1024)


def test_document_fps_wins_over_the_request_fps(
    backend: Qwen3VLRerankerBackend, media_dir: Path, monkeypatch
) -> None:
    calls: list[int] = []
    real_frames_at = media.frames_at

    def counting_frames_at(path, times_of, **kwargs):
        frames = real_frames_at(path, times_of, **kwargs)
        calls.append(len(frames))
        return frames

    monkeypatch.setattr(media, "frames_at", counting_frames_at)
    backend.visual_preprocessor.cache.clear()
    clip = media_dir / "clip.mp4"
    report = backend.score_report(
        Content(text="q"), [Content(video=clip), Content(video=clip, fps=2.0)], fps=0.5
    )
    assert report.failures == []
    # 32 frames at 8 fps: 0.5 fps asks for 2, raised to the reference's floor of 4; 2 fps
    # gives 8. (The two videos are prepared on a thread pool, in either order.)
    assert sorted(calls) == [4, 8]


def test_a_reused_image_or_video_is_decoded_once(
    config: Qwen3VLRerankerConfig, media_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    decodes: list[str] = []
    real_decode, real_frames_at = media.decode_image, media.frames_at
    monkeypatch.setattr(
        media, "decode_image", lambda p, **k: decodes.append(p.name) or real_decode(p, **k)
    )
    monkeypatch.setattr(
        media,
        "frames_at",
        lambda p, t, **k: decodes.append(p.name) or real_frames_at(p, t, **k),
    )
    copy = tmp_path / "same-bytes.png"
    copy.write_bytes((media_dir / "photo.png").read_bytes())
    backend = Qwen3VLRerankerBackend(config)
    query = Content(image=media_dir / "photo.png")
    documents = [
        Content(image=media_dir / "photo.png"),
        Content(image=copy, text="same content, other name"),
        Content(video=media_dir / "clip.mp4"),
        Content(video=media_dir / "clip.mp4", text="again"),
    ]
    backend.score(query, documents)
    backend.score(query, documents[:1])
    assert sorted(decodes) == ["clip.mp4", "photo.png"]
    assert backend.visual_preprocessor.cache.hits >= 4


def test_documents_are_prepared_in_parallel_each_content_once(
    config: Qwen3VLRerankerConfig, tmp_path: Path, monkeypatch
) -> None:
    names = []
    for seed in range(4):
        noise_image(64 + 32 * seed, 64, seed).save(tmp_path / f"photo{seed}.png")
        names.append(f"photo{seed}.png")
    (tmp_path / "copy-of-photo0.png").write_bytes((tmp_path / "photo0.png").read_bytes())
    (tmp_path / "broken.png").write_bytes(b"not a png")
    # The copy right after its original: both are read at once, and whichever comes
    # second must wait for the other's decode rather than decode the same content again.
    order = ["photo0.png", "copy-of-photo0.png", *names[1:], "broken.png"]
    documents = [Content(image=tmp_path / name) for name in order] + [Content(text="text")]
    query = Content(text="a photo")
    sequential = Qwen3VLRerankerBackend(config.model_copy(update={"preprocess_workers": 1}))
    expected = sequential.score_report(query, documents)

    # The first two decodes wait for each other: they must run at the same time.
    both_started = threading.Barrier(2, timeout=60)  # generous: CI machines are shared
    decodes: list[tuple[str, str]] = []
    real_decode = media.decode_image

    def decode_in_step(path, **kwargs):
        decodes.append((path.name, threading.current_thread().name))
        if len(decodes) <= 2:
            both_started.wait()
        return real_decode(path, **kwargs)

    monkeypatch.setattr(media, "decode_image", decode_in_step)
    parallel = Qwen3VLRerankerBackend(config.model_copy(update={"preprocess_workers": 4}))
    report = parallel.score_report(query, documents)
    assert report.failures == expected.failures and [f.index for f in report.failures] == [5]
    assert report.scores == pytest.approx(expected.scores, abs=1e-6, nan_ok=True)
    # Each distinct content decoded once: the photo or its copy, whichever thread got
    # there first, and every other file.
    decoded = sorted(name for name, _ in decodes)
    twins = {"photo0.png", "copy-of-photo0.png"}
    assert len(decoded) == len(names) + 1 and len(twins & set(decoded)) == 1
    assert set(decoded) - twins == {*names[1:], "broken.png"}
    assert len({thread for _, thread in decodes}) > 1


def test_cache_is_bounded_by_bytes() -> None:
    def item(n: int) -> VisualInput:
        return VisualInput("image", torch.zeros(n, dtype=torch.uint8), (1, 2, 2))

    cache: BoundedCache[VisualInput] = BoundedCache(max_bytes=100)
    cache.put("a", item(40))
    cache.put("b", item(40))
    assert cache.get("a") is not None  # a is now the most recently used
    cache.put("c", item(40))
    assert cache.get("b") is None and cache.get("a") is not None and cache.get("c") is not None
    assert cache.nbytes == 80
    cache.put("huge", item(500))
    assert cache.get("huge") is None and len(cache) == 2


def test_image_preprocessing_options(config: Qwen3VLRerankerConfig) -> None:
    square = noise_image(100, 100, 11)

    def grid(**settings) -> tuple[int, int, int]:
        backend = Qwen3VLRerankerBackend(config.model_copy(update=settings))
        return backend.visual_preprocessor.image(square).grid_thw

    assert grid() == (1, 6, 6)
    assert grid(target_size=(256, 128), resize_mode="fit") == (1, 8, 16)
    assert grid(target_size=(64, 192), resize_mode="crop", resample="nearest") == (1, 12, 4)
    blurred = Qwen3VLRerankerBackend(config.model_copy(update={"blur_sigma": 2.0}))
    plain = Qwen3VLRerankerBackend(config)
    a = blurred.visual_preprocessor.image(square).pixel_values
    b = plain.visual_preprocessor.image(square).pixel_values
    assert a.shape == b.shape and a.std() < b.std()
    with pytest.raises(ValueError, match="target_size"):
        Qwen3VLRerankerConfig(resize_mode="fit")


# --- bad input, loading ------------------------------------------------------------------


def test_unreadable_documents_are_reported_and_the_rest_scored(
    backend: Qwen3VLRerankerBackend, media_dir: Path
) -> None:
    documents = [
        Content(text="fine"),
        Content(image=media_dir / "random.jpg"),
        Content(image=media_dir / "photo.png"),
        Content(image=media_dir / "missing.jpg"),
        Content(video=media_dir / "truncated.jpg"),
        Content(image=media_dir / "empty.png", text="text does not save it"),
    ]
    report = backend.score_report(Content(text="q"), documents)
    failed = {f.index: f.reason for f in report.failures}
    assert sorted(failed) == [1, 3, 4, 5]
    assert "random.jpg" in failed[1] and "missing.jpg" in failed[3] and "empty.png" in failed[5]
    assert all(math.isnan(report.scores[i]) for i in failed)
    assert all(0.0 <= report.scores[i] <= 1.0 for i in (0, 2))
    ranked = backend.rank(Content(text="q"), documents)
    assert [r.index for r in ranked[-4:]] == [1, 3, 4, 5]
    assert ranked[-1].error == failed[5]


def test_an_unreadable_query_is_a_clear_error(backend, media_dir: Path) -> None:
    with pytest.raises(ValueError, match=r"query .*truncated\.jpg"):
        backend.score(Content(image=media_dir / "truncated.jpg"), [Content(text="d")])


def test_lazy_load_and_unload(config: Qwen3VLRerankerConfig) -> None:
    backend = Qwen3VLRerankerBackend(config)
    assert not backend.loaded
    assert backend.score(Content(text="q"), []) == []
    assert not backend.loaded
    first = backend.score(Content(text="q"), [Content(text="d")])
    assert backend.loaded
    backend.unload()
    assert not backend.loaded
    assert backend.score(Content(text="q"), [Content(text="d")]) == pytest.approx(first)


def test_four_bit_without_bitsandbytes_names_the_extra(config) -> None:
    if _importable("bitsandbytes"):
        pytest.skip("bitsandbytes is installed")
    backend = Qwen3VLRerankerBackend(config.model_copy(update={"load_in_4bit": True}))
    with pytest.raises(ImportError, match=r"pip install 'vlsearch\[quant\]'"):
        backend.load()


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def test_config_module_is_import_light() -> None:
    code = (
        "import sys, rerankers.qwen3_vl, rerankers.qwen3_vl.config;"
        "sys.exit(any(m in sys.modules for m in ('torch', 'transformers')))"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# --- the seed-compatible API ---------------------------------------------------------------


def test_seed_api_process_and_rank(model_dir: Path, media_dir: Path) -> None:
    reranker = Qwen3VLReranker(
        model_name_or_path=str(model_dir), torch_dtype=torch.float32, max_length=4096, device="cpu"
    )
    documents = [
        {"text": "a cat"},
        {"image": str(media_dir / "photo.png")},
        {"video": [noise_image(64, 64, i) for i in range(4)], "fps": 2.0},
        {"video": str(media_dir / "clip.mp4")},
        {"image": str(media_dir / "missing.jpg")},
    ]
    request = {
        "instruction": "Find pets.",
        "query": {"text": "a pet"},
        "documents": documents,
        "fps": 1.0,
    }
    scores = reranker.process(request)
    assert len(scores) == 5 and math.isnan(scores[4])
    assert all(0.0 <= s <= 1.0 for s in scores[:4])

    ranked = reranker.rank(request)
    assert [r["index"] for r in ranked][-1] == 4 and "error" in ranked[-1]
    assert [r["score"] for r in ranked[:4]] == sorted(scores[:4], reverse=True)
    assert all(r["document"] is documents[r["index"]] for r in ranked)

    backend_scores = reranker.backend.score(
        Content(text="a pet"), [Content(text="a cat")], instruction="Find pets."
    )
    assert backend_scores[0] == pytest.approx(scores[0], abs=1e-6)

    assert reranker.process({"query": {}, "documents": documents}) == []
    assert reranker.process({"query": {"text": "x"}, "documents": []}) == []
    assert reranker.rank({"query": {"text": "x"}}) == []
    with pytest.raises(ValueError, match="unknown request keys"):
        reranker.process({"query": {"text": "x"}, "docs": []})
    with pytest.raises(ValueError, match=r"documents\[0\]: unknown keys"):
        reranker.process({"query": {"text": "x"}, "documents": [{"txt": "y"}]})
    with pytest.raises(TypeError, match="unknown Qwen3VLReranker settings"):
        Qwen3VLReranker(str(model_dir), max_lenght=10)
