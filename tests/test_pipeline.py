"""The Pipeline end to end, once per shipped config, on the tiny offline models.

Random weights make rankings meaningless: these tests check what every stage reports
(channels, fused and rerank scores and ranks, folding, filters), not which result wins.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.pipeline import Pipeline
from pipeline.schema import Query

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
CONFIGS = REPO / "configs"


def _pipeline(name: str, *overrides: str) -> Pipeline:
    return Pipeline(load_config(CONFIGS / name, ["profile=tiny", *overrides]))


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> tuple[Pipeline, Path]:
    pipeline = _pipeline("ecommerce-image-search.yaml", "index.kind=flat")
    out = tmp_path_factory.mktemp("shop") / "index"
    report = pipeline.build(EXAMPLES / "products.jsonl", out)
    assert report.indexed == 7
    return pipeline, out


def test_ecommerce_image_query_reranks_the_fused_candidates(shop):
    pipeline, out = shop
    results = pipeline.search(out, Query(image=EXAMPLES / "media" / "cat.jpg"), top_k=5)
    assert len(results) == 5
    assert [r.rank for r in results] == [1, 2, 3, 4, 5]
    for result in results:
        assert set(result.recall) == {"clip_image"}  # an image query has no text to match
        assert result.rerank is not None and 0.0 <= result.rerank.score <= 1.0
        assert result.score == result.rerank.score  # blend: null
    assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)
    assert {r.id for r in results} <= {
        "sku-cat-poster",
        "sku-espresso-cup",
        "sku-astronaut-print",
        "sku-rocket-model",
        "sku-camera-print",
        "clip-launch",
    }  # fmt: skip  (faq-returns has no image or video)


def test_search_reports_rerank_progress(shop):
    pipeline, out = shop
    seen: list[tuple[int, int]] = []
    results = pipeline.search(out, Query(text="a cat"), top_k=3, progress=lambda *p: seen.append(p))
    assert len(results) == 3
    assert seen and seen[-1][0] == seen[-1][1] == 7  # every candidate of the 7 assets scored


def test_text_query_uses_both_clip_channels_and_filters(shop):
    pipeline, out = shop
    results = pipeline.search(
        out, Query(text="a framed print"), top_k=10, filter='category == "posters" and price < 30'
    )
    assert {r.id for r in results} == {"sku-cat-poster", "sku-camera-print"}
    assert all(set(r.recall) == {"clip_image", "clip_text"} for r in results)
    for result in results:
        fused = sum(1 / (60 + stage.rank) for stage in result.recall.values())
        assert result.fused.score == pytest.approx(fused)


def test_a_filter_field_no_asset_has_is_warned_of_once_with_the_nearest_field(shop, caplog):
    pipeline, out = shop
    with caplog.at_level(logging.WARNING, logger="pipeline.search"):
        results = pipeline.search(
            out, Query(text="a print"), filter='categry == "posters" or price < 20', rerank=False
        )
    warnings = [r.getMessage() for r in caplog.records if r.name == "pipeline.search"]
    # Two recall channels ran, and one warning came.
    assert warnings == [
        "filter field 'categry': no asset in the index has it; did you mean 'category'?"
    ]
    assert {r.id for r in results} == {"sku-cat-poster", "sku-espresso-cup"}  # still searched


def test_a_filter_on_fields_the_assets_have_warns_of_nothing(shop, caplog):
    pipeline, out = shop
    with caplog.at_level(logging.WARNING, logger="pipeline.search"):
        pipeline.search(out, Query(text="a print"), filter='category == "posters"', rerank=False)
    assert [r for r in caplog.records if r.name == "pipeline.search"] == []


def test_without_rerank_the_fused_order_is_final(shop):
    pipeline, out = shop
    results = pipeline.search(out, Query(text="rocket"), top_k=4, rerank=False)
    assert all(r.rerank is None for r in results)
    assert [r.score for r in results] == [r.fused.score for r in results]
    assert [r.fused.rank for r in results] == [1, 2, 3, 4]


def test_blend_and_min_score(shop):
    _, out = shop
    pipeline = _pipeline("ecommerce-image-search.yaml", "rerank.blend=0.5", "rerank.min_score=0.3")
    results = pipeline.search(out, Query(text="cup"), top_k=7)
    fused = [r.fused.score for r in results]
    for result in results:
        assert result.score >= 0.3
        assert 0.5 * result.rerank.score <= result.score <= 0.5 * result.rerank.score + 0.5
    assert len(fused) <= 7


def test_video_search_reports_the_best_frame(tmp_path):
    pipeline = _pipeline("video-search.yaml")
    out = tmp_path / "videos"
    pipeline.build(EXAMPLES / "products.jsonl", out)
    results = pipeline.search(out, Query(video=EXAMPLES / "media" / "launch_clip.mp4"), top_k=3)
    videos = [r for r in results if r.modality == "video"]
    assert videos and all(0.0 <= r.best_timestamp < 8.0 for r in videos)
    assert all(not math.isnan(r.rerank.score) for r in results)


def test_kb_qa_folds_pages_into_documents(tmp_path):
    fpdf = pytest.importorskip("fpdf")
    source = tmp_path / "kb"
    source.mkdir()
    pdf = fpdf.FPDF()
    for text in ("Expense reports are due on the fifth of each month.",
                 "Travel must be booked through the company portal."):  # fmt: skip
        pdf.add_page()
        pdf.set_font("helvetica", size=14)
        pdf.multi_cell(0, 10, text)
    pdf.output(str(source / "handbook.pdf"))
    (source / "vpn.md").write_text("# VPN\n\nConnect to the VPN before opening the wiki.\n")
    pipeline = _pipeline("kb-qa.yaml")
    report = pipeline.build(source, tmp_path / "index")
    assert (report.indexed, report.failed) == (3, 0)  # two pages and one passage
    results = pipeline.search(tmp_path / "index", Query(text="when are expense reports due"))
    by_id = {r.id: r for r in results}
    assert set(by_id) == {"handbook.pdf", "vpn.md"}  # folded by doc_id
    assert by_id["handbook.pdf"].page in (1, 2)
    assert "bm25" in by_id["handbook.pdf"].recall
    assert by_id["handbook.pdf"].recall["bm25"].rank == 1  # the only document with those words


def test_a_channel_without_its_text_index_is_a_clear_error(shop):
    _, out = shop
    pipeline = _pipeline("ecommerce-image-search.yaml", "recall.channels=[bm25]")
    with pytest.raises(ValueError, match="text channels"):
        pipeline.search(out, Query(text="cup"))
