"""The reference's frame choices, pinned with values worked out by hand from its code
(qwen-vl-utils 0.0.14 as the reference reranker calls it). The end-to-end agreement with
the reference libraries themselves is tests/test_qwen3_vl_reference.py."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from pipeline.schema import Content, Frame
from rerankers.qwen3_vl.config import Qwen3VLRerankerConfig
from rerankers.qwen3_vl.encoding import PairEncoder
from rerankers.qwen3_vl.prompt import build_messages
from rerankers.qwen3_vl.reranker import Qwen3VLRerankerBackend
from rerankers.qwen3_vl.sizing import to_rgb
from rerankers.qwen3_vl.video_frames import (
    file_frame_count,
    file_frame_indices,
    frame_list_clip,
    thin_uniformly,
)
from rerankers.qwen3_vl.visual import VisualPreprocessor
from tests.rerankers_support import tiny_qwen_path

BIG = 89_478_485  # the default decompression-bomb limit


def noise(width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_qwen_path(tmp_path_factory)


@pytest.fixture(scope="module")
def processor(model_dir: Path):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(model_dir)


@pytest.fixture(scope="module")
def backend(model_dir: Path) -> Qwen3VLRerankerBackend:
    return Qwen3VLRerankerBackend(
        Qwen3VLRerankerConfig(model=f"local-dir:{model_dir}", device="cpu")
    )


# --- video files -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "rate", "fps", "max_frames", "expected"),
    [
        (192, 24.0, 1.0, 64, 8),  # 8 s at 1 fps
        (40, 8.0, 1.0, 64, 4),  # 5 s: 5 frames, made even downwards
        (16, 8.0, 1.0, 64, 4),  # 2 s: 2 frames, raised to the floor of 4
        (3, 8.0, 1.0, 64, 2),  # never more than the video has, then even
        (192, 24.0, 1.0, 5, 4),  # max_frames made even downwards
        (160, 4.0, 1.0, 64, 40),
        (9000, 30.0, 2.0, 64, 64),
    ],
)
def test_file_frame_count(total, rate, fps, max_frames, expected) -> None:
    assert file_frame_count(total, rate, fps, max_frames) == expected


def test_file_of_one_frame_is_refused_as_the_reference_refuses_it() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        file_frame_count(1, 8.0, 1.0, 64)


def test_file_frame_indices_spread_and_round_half_to_even() -> None:
    assert file_frame_indices(192, 8) == [0, 27, 55, 82, 109, 136, 164, 191]
    assert file_frame_indices(40, 4) == [0, 13, 26, 39]
    assert file_frame_indices(6, 3) == [0, 2, 5]  # 2.5 rounds to 2


def write_video(path: Path, frames: int, rate: int, size: tuple[int, int] = (64, 48)) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=rate)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            pixels = np.full((size[1], size[0], 3), (i * 9) % 256, dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode())
    return path


def test_a_video_file_is_timed_by_frame_index(backend, tmp_path: Path) -> None:
    clip = write_video(tmp_path / "clip.mp4", frames=192, rate=24)
    video = backend.visual_preprocessor.video(clip, fps=1.0, max_frames=64)
    assert video.timestamps == tuple(i / 24 for i in [0, 27, 55, 82, 109, 136, 164, 191])
    assert video.grid_thw[0] == 4  # 8 frames, in pairs


# --- lists of frames ---------------------------------------------------------------------


def test_a_frame_list_is_resized_per_frame_on_a_64_pixel_grid_and_timed_at_2_fps(
    tmp_path: Path,
) -> None:
    paths = []
    for i in range(3):
        noise(200, 120, i).save(tmp_path / f"f{i}.png")
        paths.append(tmp_path / f"f{i}.png")
    clip = frame_list_clip(paths, max_frames=64, max_image_pixels=BIG)
    # 200x120 snaps to 192x128 on the 64-pixel grid; three frames pad to four.
    assert [image.size for image in clip.images] == [(192, 128)] * 4
    assert clip.images[3].tobytes() == clip.images[2].tobytes()
    assert clip.timestamps == (0.0, 0.5, 1.0, 1.5)


def test_small_frames_grow_to_the_frame_floor_of_4_units_of_64_pixels() -> None:
    clip = frame_list_clip([noise(130, 90, 1), noise(130, 90, 2)], 64, BIG)
    assert [image.size for image in clip.images] == [(192, 128)] * 2


def test_frames_with_their_own_times_keep_them() -> None:
    frames = [Frame(timestamp=3.0 * i, image=noise(128, 128, i)) for i in range(5)]
    clip = frame_list_clip(frames, 64, BIG)
    assert clip.timestamps == (0.0, 3.0, 6.0, 9.0, 12.0, 12.0)


def test_frame_lists_are_thinned_by_truncation() -> None:
    assert thin_uniformly(10, 4) == [0, 3, 6, 9]
    assert thin_uniformly(8, 3) == [0, 3, 7]  # 3.5 truncates to 3
    assert thin_uniformly(3, 64) == [0, 1, 2]


def test_a_frame_list_ignores_the_request_fps_and_max_frames(backend, tmp_path: Path) -> None:
    frames = [noise(200, 120, i) for i in range(8)]
    slow = backend.visual_preprocessor.video(frames, fps=0.25, max_frames=2)
    fast = backend.visual_preprocessor.video(frames, fps=4.0, max_frames=64)
    assert slow.timestamps == fast.timestamps == tuple(i / 2 for i in range(8))
    # The clip's 192x128 frames grow to the video floor of 128 units: 320x448.
    assert slow.grid_thw == fast.grid_thw == (4, 20, 28)


def test_frame_lists_and_files_have_their_own_pixel_budgets(
    backend, processor, tmp_path: Path
) -> None:
    tight = backend.config.model_copy(update={"total_pixels": 4 * 128 * 1024})
    preprocessor = VisualPreprocessor(processor, tight)
    frames = [noise(640, 480, i) for i in range(4)]
    listed = preprocessor.video(frames, fps=1.0, max_frames=64)
    # 640x480 snaps to 640x512 (7.5 units of 64 round to 8), then shares 4 x 128 units
    # over 4 frames: 262,144 pixels each, 448x544.
    assert listed.grid_thw == (2, 28, 34)
    # A file of the same size keeps its own, far larger budget: 480x640 stays.
    clip = write_video(tmp_path / "vga.mp4", frames=16, rate=8, size=(640, 480))
    assert preprocessor.video(clip, fps=1.0, max_frames=64).grid_thw == (2, 30, 40)


# --- the prompt --------------------------------------------------------------------------


def test_a_video_expands_to_timed_blocks_without_an_outer_wrapper(backend, processor) -> None:
    frames = [noise(200, 120, i) for i in range(3)]
    video = backend.visual_preprocessor.video(frames, fps=1.0, max_frames=64)
    encoder = PairEncoder(processor, max_length=10240)
    text, _ = encoder.expand(
        encoder.render(build_messages(None, Content(text="q"), Content(video=frames))), [video]
    )
    block = "<|vision_start|>" + "<|video_pad|>" * (20 * 28 // 4) + "<|vision_end|>"
    assert f"<Document>:<0.2 seconds>{block}<1.2 seconds>{block}<|im_end|>" in text


def test_rgb_conversion_is_the_references() -> None:
    grey_alpha = Image.new("LA", (2, 1), (40, 0))  # fully transparent
    assert to_rgb(grey_alpha).getpixel((0, 0)) == (40, 40, 40)  # alpha dropped, not white
    rgba = Image.new("RGBA", (2, 1), (40, 40, 40, 0))
    assert to_rgb(rgba).getpixel((0, 0)) == (255, 255, 255)  # flattened onto white
