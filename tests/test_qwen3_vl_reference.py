"""vlsearch's Qwen3-VL scores against the published reference, run on its own libraries.

The reference reranker pins transformers 4.57 and qwen-vl-utils 0.0.14. ``make test``
installs those (and decord, which qwen-vl-utils reads video files with) into
``.venv/reference-4.57`` and names the folder in ``VLSEARCH_REFERENCE_SITE``; a
subprocess with that folder first on its path loads our tiny checkpoint, scores every
pair the reference's way (tests/reference_qwen3_vl.py) and with vlsearch itself. Here
vlsearch scores the same pairs under the current transformers. All three must agree:
that proves the checkpoint's published layout loads under 4.57 with its tied head, and
that our prompts, frames and pixels are the reference's, for images, frame lists and
video files alike. Random weights: the scores mean nothing, but they move with every
token and pixel.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from rerankers.qwen3_vl.seed import Qwen3VLReranker
from tests.rerankers_support import REPO, tiny_qwen_path

SITE_ENV = "VLSEARCH_REFERENCE_SITE"
TOLERANCE = 1e-6


def _site() -> Path:
    site = os.environ.get(SITE_ENV)
    if not site:
        if os.environ.get("CI"):
            pytest.fail(f"{SITE_ENV} is not set: CI must run the tests through `make test`")
        pytest.skip(f"{SITE_ENV} unset: `make test` installs the reference's libraries")
    return Path(site)


def _noise(path: Path, size: tuple[int, int], seed: int, mode: str = "RGB") -> str:
    channels = {"RGB": 3, "RGBA": 4, "LA": 2}[mode]
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    Image.fromarray(pixels, mode).save(path)
    return str(path)


def _video(path: Path, frames: int, rate: int, size: tuple[int, int]) -> str:
    rng = np.random.default_rng(7)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=rate)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        for _ in range(frames):
            pixels = np.clip(rng.normal(128, 60, (size[1], size[0], 3)), 0, 255)
            frame = av.VideoFrame.from_ndarray(pixels.astype(np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return str(path)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("reference-media")
    return {
        "photo": _noise(folder / "photo.jpg", (250, 300), 1),
        "grey_alpha": _noise(folder / "grey-alpha.png", (140, 100), 2, "LA"),
        "rgba": _noise(folder / "rgba.png", (140, 100), 3, "RGBA"),
        **{f"frame{i}": _noise(folder / f"frame{i}.png", (200, 120), 10 + i) for i in range(8)},
        "small0": _noise(folder / "small0.png", (130, 90), 20),
        "small1": _noise(folder / "small1.png", (130, 90), 21),
        # 5 s at 8 fps (40 frames: 4 kept), and 192 frames at 24 fps (8 kept, odd spacing).
        "clip": _video(folder / "clip.mp4", 40, 8, (96, 64)),
        "long": _video(folder / "long.mp4", 192, 24, (64, 48)),
    }


def _requests(media: dict[str, str]) -> list[dict]:
    # Eight frames: more than request 2's max_frames, which frame lists ignore there.
    frames = [media[f"frame{i}"] for i in range(8)]
    documents = [
        {"text": "a dog runs on the grass"},
        {"image": media["photo"]},
        {"text": "a photo", "image": media["photo"]},
        {"image": media["grey_alpha"]},
        {"image": media["rgba"]},
        {"video": frames[:3]},
        {"video": frames},
        {"video": [media["small0"], media["small1"]], "text": "two small frames"},
        {"video": media["clip"]},
        {"video": media["long"]},
        {},
    ]
    instruction = "Given a search query, retrieve relevant candidates that answer the query."
    return [
        {"instruction": instruction, "query": {"text": "a rocket"}, "documents": documents},
        {
            "instruction": instruction,
            "query": {"image": media["photo"], "video": frames[:3]},
            "documents": documents[5:10],
            "fps": 2.0,
            "max_frames": 6,
        },
    ]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_qwen_path(tmp_path_factory)


def _under_reference_libraries(model_dir: Path, request: dict) -> dict:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(_site()), str(REPO)]),
        "FORCE_QWENVL_VIDEO_READER": "decord",
        "HF_HUB_OFFLINE": "1",
    }
    done = subprocess.run(
        [sys.executable, str(REPO / "tests" / "reference_qwen3_vl.py")],
        input=json.dumps({"model": str(model_dir), **request}),
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("which", [0, 1], ids=["text-query", "image-and-frames-query"])
def test_scores_equal_the_reference_on_its_own_libraries(
    which: int, model_dir: Path, media: dict[str, str]
) -> None:
    request = _requests(media)[which]
    theirs = _under_reference_libraries(model_dir, request)
    assert theirs["transformers"].startswith("4.57.")
    assert theirs["tied"], "transformers 4.57 loaded the checkpoint with an untied lm_head"
    assert "config.json" in theirs["files"] and "video_preprocessor_config.json" in theirs["files"]

    ours = Qwen3VLReranker(str(model_dir), device="cpu").process(request)
    reference = np.array(theirs["reference"])
    assert np.all(np.isfinite(reference))
    assert np.abs(np.array(theirs["vlsearch"]) - reference).max() <= TOLERANCE
    assert np.abs(np.array(ours) - reference).max() <= TOLERANCE
