"""Image preprocessing chosen per request: the same scores as a reranker configured with
it, on one loaded model, without requests poisoning each other's caches.

Random weights: scores mean nothing; what is checked is agreement with a second backend
whose config holds the settings (the only way to get them before), and that changing
the settings changes what the model sees.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from pipeline.schema import Content
from rerankers.preprocessing import ImagePreprocessing, apply_user_preprocessing
from rerankers.qwen3_vl.config import Qwen3VLRerankerConfig
from rerankers.qwen3_vl.reranker import Qwen3VLRerankerBackend
from tests.rerankers_support import SMALL_VISUALS, tiny_qwen_path
from tests.test_qwen3_vl import noise_frames, noise_image

CROP = ImagePreprocessing(target_size=(64, 48), resize_mode="crop")
LETTERBOX = ImagePreprocessing(target_size=(48, 64), resize_mode="fit", blur_sigma=1.5)


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Qwen3VLRerankerConfig:
    model = tiny_qwen_path(tmp_path_factory)
    return Qwen3VLRerankerConfig(model=f"local-dir:{model}", device="cpu", **SMALL_VISUALS)


@pytest.fixture(scope="module")
def backend(config: Qwen3VLRerankerConfig) -> Qwen3VLRerankerBackend:
    return Qwen3VLRerankerBackend(config)


@pytest.fixture(scope="module")
def cropping(config: Qwen3VLRerankerConfig) -> Qwen3VLRerankerBackend:
    """A second copy of the model whose config crops, as the settings were set before."""
    return Qwen3VLRerankerBackend(config.model_copy(update=CROP.model_dump()))


@pytest.fixture(scope="module")
def uncached(config: Qwen3VLRerankerConfig) -> Qwen3VLRerankerBackend:
    """Keeps nothing between requests: what a poisoned cache would disagree with."""
    return Qwen3VLRerankerBackend(
        config.model_copy(update={"cache_bytes": 0, "vision_cache_bytes": 0, "dedupe": False})
    )


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("preprocessing") / "photo.png"
    noise_image(120, 60, 5).save(path)
    return path


QUERY = Content(text="a wide striped scarf", image=noise_image(80, 40, 1))


def documents_of(photo: Path) -> list[Content]:
    return [
        Content(image=photo),
        Content(text="a scarf", image=noise_image(50, 90, 2)),
        Content(text="no picture here"),
        Content(image=photo, text="the same photo, described"),
    ]


# --- the settings ----------------------------------------------------------------------


def test_settings_are_checked_as_the_config_checks_them() -> None:
    with pytest.raises(ValidationError, match="needs target_size"):
        ImagePreprocessing(resize_mode="crop")
    with pytest.raises(ValidationError, match="positive"):
        ImagePreprocessing(target_size=(0, 10), resize_mode="fit")
    with pytest.raises(ValidationError, match="greater than 0"):
        ImagePreprocessing(blur_sigma=0.0)
    with pytest.raises(ValidationError, match="Extra inputs"):
        ImagePreprocessing(target_size=(4, 4), mode="crop")
    with pytest.raises(ValidationError, match="needs target_size"):
        Qwen3VLRerankerConfig(resize_mode="fit")
    with pytest.raises(ValidationError, match="positive"):
        Qwen3VLRerankerConfig(target_size=[5, 0])


def test_the_config_s_flat_fields_are_its_default_preprocessing() -> None:
    # As a YAML file gives them: a list for the size.
    config = Qwen3VLRerankerConfig.model_validate(
        {"target_size": [64, 48], "resize_mode": "crop", "resample": "nearest", "blur_sigma": 2}
    )
    assert config.image_preprocessing == ImagePreprocessing(
        target_size=(64, 48), resize_mode="crop", resample="nearest", blur_sigma=2.0
    )
    assert Qwen3VLRerankerConfig().image_preprocessing == ImagePreprocessing()
    assert hash(CROP) == hash(ImagePreprocessing(target_size=(64, 48), resize_mode="crop"))


def test_letterbox_and_crop_against_numpy() -> None:
    source = noise_image(64, 32, 3)
    pixels = np.asarray(source)

    boxed = np.asarray(apply_user_preprocessing(source, ImagePreprocessing(
        target_size=(64, 64), resize_mode="fit", resample="nearest")))  # fmt: skip
    assert boxed.shape == (64, 64, 3)
    assert not boxed[:16].any() and not boxed[48:].any()  # black bars above and below
    assert np.array_equal(boxed[16:48], pixels)  # the picture itself, untouched

    cropped = apply_user_preprocessing(
        source, ImagePreprocessing(target_size=(32, 32), resize_mode="crop", resample="nearest")
    )
    assert np.array_equal(np.asarray(cropped), pixels[:, 16:48])  # the centre square

    unchanged = apply_user_preprocessing(source, ImagePreprocessing(target_size=(8, 8)))
    assert unchanged is source  # resize_mode none: the size alone does nothing


# --- per request -----------------------------------------------------------------------


def test_a_request_s_preprocessing_scores_as_a_config_holding_it(
    backend: Qwen3VLRerankerBackend, cropping: Qwen3VLRerankerBackend, photo: Path
) -> None:
    documents = documents_of(photo)
    per_request = backend.score(QUERY, documents, image=CROP)
    configured = cropping.score(QUERY, documents)
    assert per_request == pytest.approx(configured, abs=1e-5)
    assert per_request != pytest.approx(backend.score(QUERY, documents), abs=1e-5)


def test_no_preprocessing_in_the_request_is_the_config_s(
    backend: Qwen3VLRerankerBackend, cropping: Qwen3VLRerankerBackend, photo: Path
) -> None:
    documents = documents_of(photo)
    assert cropping.score(QUERY, documents, image=None) == pytest.approx(
        backend.score(QUERY, documents, image=CROP), abs=1e-5
    )
    # A request's own settings win over the config's, the plain ones included.
    assert cropping.score(QUERY, documents, image=ImagePreprocessing()) == pytest.approx(
        backend.score(QUERY, documents), abs=1e-5
    )


def test_requests_with_other_preprocessing_do_not_share_cached_images(
    backend: Qwen3VLRerankerBackend, uncached: Qwen3VLRerankerBackend, photo: Path
) -> None:
    documents = documents_of(photo)
    first = backend.score(QUERY, documents, image=CROP)
    other = backend.score(QUERY, documents, image=LETTERBOX)
    again = backend.score(QUERY, documents, image=CROP)
    assert again == pytest.approx(first, abs=1e-6)
    assert other != pytest.approx(first, abs=1e-5)
    assert first == pytest.approx(uncached.score(QUERY, documents, image=CROP), abs=1e-5)
    assert other == pytest.approx(uncached.score(QUERY, documents, image=LETTERBOX), abs=1e-5)


def test_video_frames_are_not_preprocessed(backend: Qwen3VLRerankerBackend) -> None:
    query = Content(text="a short clip")
    documents = [Content(video=noise_frames(4, 0.5, seed=40))]
    plain = backend.score(query, documents)
    assert backend.score(query, documents, image=LETTERBOX) == pytest.approx(plain, abs=1e-6)


def test_prompt_lengths_follow_the_request_s_preprocessing(
    backend: Qwen3VLRerankerBackend,
) -> None:
    documents = [Content(image=Image.new("RGB", (300, 100), (9, 9, 9)))]
    query = Content(text="grey")
    wide = backend.prompt_lengths(query, documents)
    square = backend.prompt_lengths(
        query, documents, image=ImagePreprocessing(target_size=(100, 100), resize_mode="crop")
    )
    assert wide[0] is not None and square[0] is not None and square[0] != wide[0]
