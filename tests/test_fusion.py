"""Fusion of recall channels and folding of children into parents."""

from __future__ import annotations

import math
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from pipeline.fusion import (
    ChannelHit,
    FusedHit,
    FusionConfig,
    create_fuser,
    fold,
    parent_by,
)


def hits(*pairs: tuple[str, float]) -> list[ChannelHit]:
    return [ChannelHit(id=hit_id, score=score) for hit_id, score in pairs]


# A: x, y, z (scores 0.9, 0.5, 0.1)   B: y, w (scores 10, 4)
RESULTS = {
    "A": hits(("x", 0.9), ("y", 0.5), ("z", 0.1)),
    "B": hits(("y", 10.0), ("w", 4.0)),
}


def fuse(results=RESULTS, top_n: int = 10, **config) -> list[FusedHit]:
    return create_fuser(FusionConfig(**config)).fuse(results, top_n)


def ranked(fused: list[FusedHit]) -> list[tuple[str, float]]:
    return [(hit.id, hit.score) for hit in fused]


# -- hand-computed examples -------------------------------------------------------------


def test_rrf_default_k():
    # x: 1/61; y: 1/62 + 1/61; w: 1/62; z: 1/63
    assert ranked(fuse()) == [
        ("y", pytest.approx(0.032522474881015336)),
        ("x", pytest.approx(0.016393442622950820)),
        ("w", pytest.approx(0.016129032258064516)),
        ("z", pytest.approx(0.015873015873015872)),
    ]


def test_rrf_with_k_and_weights():
    # k=1, A weighs 2: x = 2/2 = 1; y = 2/3 + 1/2 = 7/6; z = 2/4 = 0.5; w = 1/3
    assert ranked(fuse(k=1, weights={"A": 2.0})) == [
        ("y", pytest.approx(7 / 6)),
        ("x", pytest.approx(1.0)),
        ("z", pytest.approx(0.5)),
        ("w", pytest.approx(1 / 3)),
    ]


def test_fused_hit_reports_each_channel():
    y = fuse()[0]
    assert y.channel_scores == {"A": 0.5, "B": 10.0}
    assert y.channel_ranks == {"A": 2, "B": 1}


def test_weighted_minmax():
    # A -> x 1, y 0.5, z 0; B -> y 1, w 0; missing counts 0.
    # x = 1 + 0, y = 0.5 + 1, z = 0 + 0, w = 0 + 0; w and z tie: w's best rank 2 beats z's 3.
    assert ranked(fuse(method="weighted")) == [("y", 1.5), ("x", 1.0), ("w", 0.0), ("z", 0.0)]


def test_weighted_minmax_with_weights():
    # x = 3*1 + 0 = 3; y = 3*0.5 + 1 = 2.5; w = 0; z = 0
    assert ranked(fuse(method="weighted", weights={"A": 3})) == [
        ("x", 3.0),
        ("y", 2.5),
        ("w", 0.0),
        ("z", 0.0),
    ]


def test_weighted_z_scores_missing_as_channel_minimum():
    # A: mean 0.5, population std sqrt(0.32/3) -> x +sqrt(1.5), y 0, z -sqrt(1.5)
    # B: mean 7, std 3 -> y +1, w -1.  Missing: A's min -sqrt(1.5), B's min -1.
    # x = 1.2247448713915890 - 1; y = 0 + 1; w = -1.2247448713915890 - 1 = z (tie: w rank 2)
    assert ranked(fuse(method="weighted", normalization="z")) == [
        ("y", pytest.approx(1.0)),
        ("x", pytest.approx(0.2247448713915890)),
        ("w", pytest.approx(-2.2247448713915890)),
        ("z", pytest.approx(-2.2247448713915890)),
    ]


def test_weighted_dbsf_maps_three_sample_deviations_onto_the_unit_range():
    # A: mean 0.5, sample sd 0.4 -> range [-0.7, 1.7]: x 2/3, y 1/2, z 1/3.
    # B: mean 7, sample sd sqrt(18) -> y 0.5 + 3 / (6 sqrt 18), w 0.5 - 3 / (6 sqrt 18).
    # Missing counts 0: y = 1/2 + 0.6178511; x = 2/3; w = 0.3821489; z = 1/3.
    spread = 3 / (6 * math.sqrt(18))
    assert ranked(fuse(method="weighted", normalization="dbsf")) == [
        ("y", pytest.approx(0.5 + 0.5 + spread)),
        ("x", pytest.approx(2 / 3)),
        ("w", pytest.approx(0.5 - spread)),
        ("z", pytest.approx(1 / 3)),
    ]


def test_dbsf_does_not_clip_outliers_as_qdrant_does_not():
    # 40 hits: b 100 and a 90 lie above mean + 3 sd, low -100 below mean - 3 sd.
    pairs = [("b", 100.0), ("a", 90.0), ("low", -100.0)]
    pairs += [(f"c{i:02}", 0.0) for i in range(37)]
    values = [score for _, score in pairs]
    mean, deviation = statistics.mean(values), statistics.stdev(values)

    def mapped(score: float) -> float:
        return (score - (mean - 3 * deviation)) / (6 * deviation)

    fused = ranked(fuse({"A": hits(*pairs)}, top_n=100, method="weighted", normalization="dbsf"))
    # Beyond the range, the order among the best survives: b above a, both above 1.
    assert fused[:2] == [("b", pytest.approx(mapped(100.0))), ("a", pytest.approx(mapped(90.0)))]
    assert fused[1][1] > 1.0
    assert fused[2:-1] == [(f"c{i:02}", pytest.approx(mapped(0.0))) for i in range(37)]
    assert fused[-1] == ("low", pytest.approx(mapped(-100.0))) and fused[-1][1] < 0.0


def test_max_minmax_breaks_ties_by_best_rank_then_id():
    # x = max(1, 0) = 1; y = max(0.5, 1) = 1; w = max(0, 0); z = max(0, 0)
    # x and y both have a rank 1 somewhere: id order. w (rank 2) before z (rank 3).
    assert ranked(fuse(method="max")) == [("x", 1.0), ("y", 1.0), ("w", 0.0), ("z", 0.0)]


def test_single_hit_channel_normalises_to_one():
    results = {"A": hits(("x", 0.9), ("y", 0.1)), "C": hits(("q", -3.0))}
    assert ranked(fuse(results, method="weighted")) == [("q", 1.0), ("x", 1.0), ("y", 0.0)]
    # z: a one-hit channel carries no information (all 0, missing 0 too).
    assert ranked(fuse(results, method="weighted", normalization="z")) == [
        ("x", pytest.approx(1.0)),
        ("q", pytest.approx(-1.0)),
        ("y", pytest.approx(-1.0)),
    ]
    # dbsf: the one-hit channel sits in the middle, 0.5; two hits are always
    # 0.5 +- 0.5 / (3 sqrt 2) whatever their scores (mean +- 3 sample sd).
    assert ranked(fuse(results, method="weighted", normalization="dbsf")) == [
        ("x", pytest.approx(0.5 + 0.5 / (3 * math.sqrt(2)))),
        ("q", 0.5),
        ("y", pytest.approx(0.5 - 0.5 / (3 * math.sqrt(2)))),
    ]
    equal = {"A": hits(("x", 2.0), ("y", 2.0), ("z", 2.0))}
    assert ranked(fuse(equal, method="weighted", normalization="dbsf")) == [
        ("x", 0.5),
        ("y", 0.5),
        ("z", 0.5),
    ]


def test_nan_score_counts_as_missing_for_scores_but_keeps_its_rank():
    results = {"A": hits(("x", 0.9), ("n", math.nan), ("z", 0.1))}
    weighted = fuse(results, method="weighted")
    assert ranked(weighted) == [("x", 1.0), ("n", 0.0), ("z", 0.0)]  # n ties z, ranks 2 < 3
    assert weighted[1].channel_ranks == {"A": 2}
    assert math.isnan(weighted[1].channel_scores["A"])
    assert [hit.id for hit in fuse(results)] == ["x", "n", "z"]  # rrf: ranks only
    # dbsf measures x and z alone; n is missing (0), so below z.
    assert ranked(fuse(results, method="weighted", normalization="dbsf")) == [
        ("x", pytest.approx(0.5 + 0.5 / (3 * math.sqrt(2)))),
        ("z", pytest.approx(0.5 - 0.5 / (3 * math.sqrt(2)))),
        ("n", 0.0),
    ]


def test_empty_channels_and_top_n():
    assert fuse({}) == []
    assert fuse({"A": [], "B": []}) == []
    assert ranked(fuse({"A": [], "B": hits(("y", 1.0))}, method="max")) == [("y", 1.0)]
    assert [hit.id for hit in fuse(top_n=2)] == ["y", "x"]
    assert fuse(top_n=0) == []
    with pytest.raises(ValueError, match="top_n"):
        fuse(top_n=-1)


def test_repeated_id_in_a_channel_keeps_its_first_entry():
    results = {"A": hits(("x", 0.9), ("y", 0.5), ("x", 0.1))}
    fused = fuse(results, k=0)
    assert ranked(fused) == [("x", 1.0), ("y", 0.5)]  # 1/1 and 1/2
    assert fused[0].channel_scores == {"A": 0.9}


def test_fused_fields_come_from_the_best_ranked_hit_that_has_them():
    results = {
        "bm25": [ChannelHit(id="v", score=3.0, modality="text", metadata={"title": "t"})],
        "clip_image": [
            ChannelHit(id="u", score=0.8),
            ChannelHit(id="v", score=0.7, modality="video", best_timestamp=12.5, page=None),
        ],
    }
    v = next(hit for hit in fuse(results) if hit.id == "v")
    assert (v.modality, v.best_timestamp, v.page, v.metadata) == (
        "text",
        12.5,
        None,
        {"title": "t"},
    )


def test_config():
    assert FusionConfig() == FusionConfig(method="rrf", k=60, normalization="minmax", weights={})
    with pytest.raises(ValidationError, match="extra"):
        FusionConfig(methd="rrf")
    with pytest.raises(ValidationError, match="weight of channel 'bm25'"):
        FusionConfig(weights={"bm25": -1})
    with pytest.raises(ValidationError):
        FusionConfig(method="borda")
    assert FusionConfig(normalization="dbsf").normalization == "dbsf"
    with pytest.raises(ValidationError, match="normalization"):
        FusionConfig(normalization="arctan")


# -- properties --------------------------------------------------------------------------

IDS = list("abcdefgh")
scores = st.one_of(st.floats(-10, 10), st.sampled_from([0.0, 1.0, math.nan]))
channel = st.lists(st.tuples(st.sampled_from(IDS), scores), max_size=8).map(lambda p: hits(*p))
channels = st.dictionaries(st.sampled_from(["A", "B", "C"]), channel, max_size=3)
configs = st.builds(
    FusionConfig,
    method=st.sampled_from(["rrf", "weighted", "max"]),
    k=st.integers(0, 100),
    normalization=st.sampled_from(["minmax", "z", "dbsf"]),
)


@settings(max_examples=200, deadline=None)
@given(results=channels, config=configs)
def test_fused_ids_are_the_union_of_the_inputs(results, config):
    fused = create_fuser(config).fuse(results, top_n=100)
    union = {hit.id for channel_hits in results.values() for hit in channel_hits}
    assert sorted(hit.id for hit in fused) == sorted(union)
    for hit in fused:
        for name, rank in hit.channel_ranks.items():
            assert results[name][rank - 1].id == hit.id
    assert [h.score for h in fused] == sorted((h.score for h in fused), reverse=True)
    # The input's dict order does not matter.
    assert create_fuser(config).fuse(dict(reversed(results.items())), top_n=100) == fused


@settings(max_examples=100, deadline=None)
@given(ids=st.lists(st.sampled_from(IDS), unique=True), k=st.integers(0, 100))
def test_rrf_with_one_channel_keeps_its_order(ids, k):
    ranked_hits = [ChannelHit(id=hit_id, score=0.0) for hit_id in ids]
    fused = fuse({"only": ranked_hits}, top_n=100, k=k)
    assert [hit.id for hit in fused] == ids


@settings(max_examples=200, deadline=None)
@given(results=channels, muted=channel, config=configs)
def test_zero_weight_removes_a_channel_influence(results, muted, config):
    without = create_fuser(config).fuse(results, top_n=100)
    muted_config = config.model_copy(update={"weights": {"muted": 0.0}})
    with_muted = create_fuser(muted_config).fuse({**results, "muted": muted}, top_n=100)
    kept = {hit.id for hit in without}
    assert ranked([hit for hit in with_muted if hit.id in kept]) == ranked(without)


# -- folding -----------------------------------------------------------------------------


def test_fold_pages_into_documents():
    pages = [
        ChannelHit(id="d1#p1", score=0.4, page=1, metadata={"doc_id": "d1"}),
        ChannelHit(id="d2#p3", score=0.9, page=3, metadata={"doc_id": "d2"}),
        ChannelHit(id="d1#p5", score=0.7, page=5, metadata={"doc_id": "d1"}),
        ChannelHit(id="loose", score=0.5),
    ]
    folded = fold(pages, parent_by("doc_id"))
    assert [(hit.id, hit.score, hit.page) for hit in folded] == [
        ("d2", 0.9, 3),
        ("d1", 0.7, 5),
        ("loose", 0.5, None),
    ]


def test_fold_frames_into_videos_keeps_the_best_frame_timestamp():
    frames = [
        ChannelHit(id=f"clip:{t}", score=s, best_timestamp=t, modality="video")
        for t, s in [(0.0, 0.2), (2.0, 0.6), (4.0, 0.6), (6.0, 0.1)]
    ]
    folded = fold(frames, key=lambda hit: hit.id.split(":")[0])
    assert [(h.id, h.score, h.best_timestamp) for h in folded] == [("clip", 0.6, 2.0)]


def test_fold_merges_duplicates_and_puts_nan_last():
    duplicates = hits(("a", math.nan), ("b", 0.6), ("a", 0.8), ("c", math.nan), ("b", 0.1))
    folded = fold(duplicates, key=lambda hit: hit.id)
    assert [hit.id for hit in folded] == ["a", "b", "c"]
    assert [hit.score for hit in folded[:2]] == [0.8, 0.6]
    assert math.isnan(folded[2].score)


def test_fold_names_the_hit_whose_parent_cannot_be_found():
    with pytest.raises(ValueError, match="hit 'p7': cannot find its parent"):
        fold(hits(("p7", 1.0)), key=lambda hit: hit.metadata["doc_id"])
    with pytest.raises(ValueError, match="hit 'p7': parent id must be"):
        fold(hits(("p7", 1.0)), key=lambda hit: "")
