import numpy as np
import pytest
from PIL import Image

from indexers.embedders import create_embedder, embed_query
from indexers.embedders.open_clip import model_id_for
from indexers.embedders.tiny import build_tiny_clip
from pipeline.config import EmbedderConfig, MediaConfig
from pipeline.schema import Frame, Query


def test_vectors_are_normalised_float32(tiny_embedder):
    texts = tiny_embedder.embed_texts(["a red bicycle", "two dogs on a beach", "x" * 500])
    images = tiny_embedder.embed_images([Image.new("RGB", (320, 200), c) for c in ("red", "blue")])
    for vectors, rows in ((texts, 3), (images, 2)):
        assert vectors.shape == (rows, tiny_embedder.dim)
        assert vectors.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_empty_batches_keep_the_dimension(tiny_embedder):
    assert tiny_embedder.embed_texts([]).shape == (0, tiny_embedder.dim)
    assert tiny_embedder.embed_images([]).shape == (0, tiny_embedder.dim)


def test_batching_does_not_change_vectors(tiny_embedder):
    texts = [f"caption number {i}" for i in range(19)]  # batch_size 8: uneven tail
    together = tiny_embedder.embed_texts(texts)
    alone = np.concatenate([tiny_embedder.embed_texts([t]) for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_local_dir_model_id_follows_the_weights(tmp_path, tiny_clip_dir):
    same = build_tiny_clip(tmp_path / "same", seed=0)
    other = build_tiny_clip(tmp_path / "other", seed=1)
    ids = {
        name: model_id_for(EmbedderConfig(model=f"local-dir:{path}", pretrained=None))
        for name, path in {"ref": tiny_clip_dir, "same": same, "other": other}.items()
    }
    assert ids["ref"] == ids["same"]
    assert ids["ref"] != ids["other"]


def test_named_models_carry_their_pretrained_tag():
    assert model_id_for(EmbedderConfig()) == "open_clip:ViT-B-32@laion2b_s34b_b79k"
    assert model_id_for(EmbedderConfig(model="hf-hub:org/clip")) == "open_clip:hf-hub:org/clip"


def test_missing_local_dir_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        create_embedder(EmbedderConfig(model=f"local-dir:{tmp_path / 'absent'}", pretrained=None))


def test_video_query_is_the_mean_of_its_frames(tiny_embedder):
    frames = [
        Frame(timestamp=float(i), image=Image.new("RGB", (64, 64), c))
        for i, c in enumerate(("red", "green", "blue"))
    ]
    vector = embed_query(tiny_embedder, Query(video=frames), MediaConfig())
    expected = tiny_embedder.embed_images([f.image for f in frames]).mean(axis=0)
    np.testing.assert_allclose(vector, expected / np.linalg.norm(expected), atol=1e-5)


def test_mixed_query_blends_modalities(tiny_embedder):
    image = Image.new("RGB", (64, 64), "orange")
    mixed = embed_query(tiny_embedder, Query(text="an orange", image=image), MediaConfig())
    text = tiny_embedder.embed_texts(["an orange"])[0]
    pixels = tiny_embedder.embed_images([image])[0]
    blend = text + pixels
    np.testing.assert_allclose(mixed, blend / np.linalg.norm(blend), atol=1e-5)


def test_empty_query_is_refused(tiny_embedder):
    with pytest.raises(ValueError, match="no text, image or video"):
        embed_query(tiny_embedder, Query(text="   "), MediaConfig())
