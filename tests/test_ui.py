"""The web page's parts without a browser: what uploads are read as, what the cards
show, and the signed links that let the page's players open media behind a token, on
the tiny random-weight models (rankings are meaningless, so these tests check what a
person is shown, never which result wins).

The page itself (mounted in serve's app, its actions, ``vlsearch ui``) is
tests/test_ui_page.py; the page in a real browser, tests/test_ui_browser.py.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from PIL import Image

from indexers.documents import DocumentsConfig
from pipeline.api.media_in import MediaRefused
from pipeline.api.schemas import SearchResult
from pipeline.api.settings import ServeConfig
from pipeline.schema import Asset, Content
from pipeline.search import StageScore
from pipeline.settings import MediaConfig
from pipeline.ui import cards
from pipeline.ui.uploads import Candidate, UploadInfo, UploadReader, aspect, describe_upload
from rerankers.breakdown import Breakdown, FrameScore, PartScore
from tests.api_support import served
from tests.media_factory import make_png_bomb
from tests.ui_support import PDF_PAGE, Tags, make_uploads, write_pdf

pytest.importorskip("fpdf", reason="PDF fixtures are written with fpdf2 (dev extra)")
pytest.importorskip("pypdfium2", reason="PDF uploads need the 'documents' extra")

EVIL = "<script>alert(1)</script>\"'&"
"""What an asset's id, text or metadata might hold: it must reach the page as text."""
API_TOKEN = "reader-token"
BEARER = {"Authorization": f"Bearer {API_TOKEN}"}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_uploads(tmp_path_factory.mktemp("uploads"))


def reader(tmp_path: Path, max_documents: int = 20, **serve: Any) -> UploadReader:
    return UploadReader(
        ServeConfig(**serve), MediaConfig(), DocumentsConfig(), tmp_path / "pages", max_documents
    )


def paths(files: dict[str, Path], *names: str) -> list[str]:
    return [str(files[name]) for name in names]


# -- what an upload is ---------------------------------------------------------------


def test_images_are_described_by_pixels_aspect_and_bytes(files):
    jpeg = describe_upload(files["photo.jpg"])
    assert (jpeg.kind, jpeg.width, jpeg.height) == ("image", 96, 64)
    assert jpeg.aspect == "1.50:1 (3:2)"
    assert jpeg.size_bytes == files["photo.jpg"].stat().st_size and jpeg.problem is None
    png = describe_upload(files["wide.png"])
    assert (png.width, png.height, png.aspect) == (160, 90, "1.78:1 (16:9)")
    assert png.name == "wide.png"


def test_videos_pdfs_and_text_are_described(files):
    video = describe_upload(files["clip.mp4"])
    assert (video.kind, video.width, video.height) == ("video", 64, 48)
    assert video.duration_s == pytest.approx(2.0, abs=0.15)
    pdf = describe_upload(files["two.pdf"])
    assert (pdf.kind, pdf.pages, pdf.width, pdf.height) == ("pdf", 2, *PDF_PAGE)
    assert pdf.aspect == "1.50:1 (3:2)"
    text = describe_upload(files["notes.txt"])
    assert (text.kind, text.problem, text.width) == ("text", None, None)
    assert text.size_bytes == files["notes.txt"].stat().st_size


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("random.jpg", "not a supported image"),
        ("empty.jpg", "empty"),
        ("truncated.mp4", "not a readable video"),
        ("audio_only.avi", "not a supported video"),
        ("table.bin", "unsupported"),
    ],
)
def test_broken_and_unsupported_files_are_described_with_their_problem(files, name, problem):
    info = describe_upload(files[name])
    assert info.kind == "other" and problem in (info.problem or "")
    assert info.size_bytes == files[name].stat().st_size


def test_a_truncated_image_is_described_from_its_header(files):
    """Nothing is decoded whole to describe it: reading the candidate says it is broken."""
    info = describe_upload(files["truncated.jpg"])
    assert (info.kind, info.width, info.height, info.problem) == ("image", 256, 192, None)


def test_a_broken_pdf_and_a_huge_bomb_are_described_not_raised(tmp_path):
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.7\nnot really\n")
    info = describe_upload(broken)
    assert info.kind == "pdf" and "PDFium cannot parse" in (info.problem or "")
    # Over twice PIL's own limit, PIL refuses even the header: still a description.
    bomb = describe_upload(make_png_bomb(tmp_path / "huge.png", 14_000))
    assert bomb.kind == "image" and "decompression bomb" in (bomb.problem or "")


def test_aspect_names_common_ratios_only_when_close():
    assert aspect(1920, 1080) == "1.78:1 (16:9)"
    assert aspect(1080, 1920) == "0.56:1 (9:16)"
    assert aspect(500, 500) == "1.00:1 (1:1)"
    assert aspect(1000, 333) == "3.00:1"
    assert aspect(0, 10) is None


# -- uploads into candidates ---------------------------------------------------------


def test_files_then_snippets_become_candidates_and_broken_ones_say_why(files, tmp_path):
    found = reader(tmp_path).candidates(
        paths(files, "two.pdf", "notes.txt", "truncated.jpg", "random.jpg", "photo.jpg"),
        "a model rocket kit\n\n   \n  returns policy  \n",
    )
    labels = [c.label for c in found]
    assert labels == [
        "two.pdf p.1",
        "two.pdf p.2",
        "notes.txt",
        "truncated.jpg",
        "random.jpg",
        "photo.jpg",
        "snippet 1",
        "snippet 2",
    ]
    assert [c.badge for c in found] == [
        "PDF page",
        "PDF page",
        "text",
        "unreadable",
        "unreadable",
        "image",
        "text",
        "text",
    ]
    first, second = found[0], found[1]
    assert first.content.text == "alpha zebra" and second.content.text == "beta giraffe"
    for page in (first, second):
        assert page.media == page.content.image and page.media.is_file()
        assert page.media.is_relative_to(tmp_path / "pages")
        with Image.open(page.media) as image:
            assert image.format == "PNG" and image.width > image.height  # 300x200 pt
        assert page.upload.pages == 2
    assert found[2].content.text.startswith("Returns within 30 days.")
    truncated, random_bytes = found[3], found[4]
    assert truncated.content is None and "truncated" in truncated.error
    assert random_bytes.content is None and "not a supported image" in random_bytes.error
    assert found[5].content.image == files["photo.jpg"]
    assert [c.content.text for c in found[6:]] == ["a model rocket kit", "returns policy"]


def test_an_oversize_file_refuses_the_request_naming_it(files, tmp_path):
    limit = files["photo.jpg"].stat().st_size - 1
    with pytest.raises(MediaRefused) as refused:
        reader(tmp_path, max_upload_bytes=limit).candidates(
            paths(files, "notes.txt", "photo.jpg"), ""
        )
    assert refused.value.status == 413 and refused.value.field == "photo.jpg"
    assert refused.value.limit == "serve.max_upload_bytes"
    assert "serve.max_upload_bytes" in refused.value.reason


@pytest.mark.parametrize("side", [12_000, 14_000])  # under and over PIL's own hard limit
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_a_decompression_bomb_refuses_the_request(files, tmp_path, side):
    bomb = make_png_bomb(tmp_path / "bomb.png", side)
    with pytest.raises(MediaRefused) as refused:
        reader(tmp_path).candidates([str(files["photo.jpg"]), str(bomb)], "")
    assert refused.value.status == 413 and refused.value.field == "bomb.png"
    assert refused.value.limit == "media.max_image_pixels"


def test_a_video_over_the_length_limit_refuses_the_request(files, tmp_path):
    with pytest.raises(MediaRefused) as refused:
        reader(tmp_path, max_video_seconds=1.0).candidates(paths(files, "clip.mp4"), "")
    assert refused.value.status == 413 and refused.value.limit == "serve.max_video_seconds"
    found = reader(tmp_path, max_video_seconds=5.0).candidates(paths(files, "clip.mp4"), "")
    assert [(c.badge, c.label) for c in found] == [("video", "clip.mp4")]


def test_more_candidates_than_max_documents_refuses_and_stops_rendering(tmp_path):
    many = write_pdf(tmp_path / "many.pdf", [f"page {n}" for n in range(1, 31)])
    with pytest.raises(MediaRefused) as refused:
        reader(tmp_path, max_documents=3).candidates([str(many)], "")
    assert refused.value.status == 413 and refused.value.limit == "ui.max_documents"
    assert "ui.max_documents" in refused.value.reason
    rendered = list((tmp_path / "pages").rglob("*.png"))
    assert len(rendered) <= 4  # stopped at the first page over the limit, not all 30
    # Snippets count too, even when the files alone fit.
    with pytest.raises(MediaRefused, match=r"ui\.max_documents"):
        reader(tmp_path, max_documents=3).candidates([], "a\nb\nc\nd")


def test_no_candidates_at_all_is_refused(tmp_path):
    with pytest.raises(MediaRefused) as refused:
        reader(tmp_path).candidates([], " \n\n  ")
    assert refused.value.status == 422


def test_the_query_needs_something_readable(files, tmp_path):
    uploads = reader(tmp_path)
    assert uploads.query("a cat", None, None).text == "a cat"
    assert uploads.query(None, str(files["photo.jpg"]), None).image == files["photo.jpg"]
    with pytest.raises(MediaRefused) as empty:
        uploads.query(None, None, None)
    assert empty.value.status == 422 and "give a query" in empty.value.reason
    for name in ("truncated.jpg", "random.jpg"):
        with pytest.raises(MediaRefused) as unreadable:
            uploads.query("text too", str(files[name]), None)
        assert unreadable.value.status == 422 and unreadable.value.field == "query image"


# -- cards ---------------------------------------------------------------------------


def _stage(score: float, rank: int = 1) -> StageScore:
    return StageScore(score=score, rank=rank)


def _result(**fields: Any) -> SearchResult:
    base: dict[str, Any] = {"score": 0.5, "rank": 1, "fused": _stage(0.03)}
    return SearchResult(**(base | fields))


def signed(path: str) -> str:
    return f"{path}{'&' if '?' in path else '?'}sig=test"


def test_search_cards_escape_whatever_the_asset_holds():
    result = _result(
        id=EVIL,
        modality="image",
        recall={EVIL: _stage(0.4)},
        rerank=_stage(0.7),
        rerank_error=EVIL,
        metadata={"note": EVIL, EVIL: [EVIL]},
        thumbnail_url=f"/v1/indexes/shop/assets/{EVIL}/thumbnail",
    )
    markup = cards.search_cards([result], {EVIL: Asset(id=EVIL, text=EVIL)}, signed)
    assert "<script" not in markup
    page = Tags(markup)
    assert [name for name, _ in page.tags if name == "script"] == []
    (card,) = page.find("div", "vls-card")
    assert card["data-id"] == EVIL  # the id, as text, whole
    (image,) = page.find("img")
    assert image["alt"] == EVIL
    shown = page.joined
    assert shown.count(EVIL) >= 3  # the id line, the stage row, the rerank error
    assert json.dumps(EVIL)[1:-1] in shown  # the metadata, as JSON text


def test_rerank_cards_escape_labels_text_errors_and_file_facts():
    info = UploadInfo(name=EVIL, kind="other", size_bytes=10, problem=EVIL)
    ranked = [
        (
            Candidate(label=EVIL, badge="text", content=Content(text=EVIL)),
            Breakdown(whole=0.5, parts=[], frames=[], best_moment=None),
        ),
        (Candidate(label=EVIL, badge="unreadable", error=EVIL, upload=info), None),
    ]
    markup = cards.rerank_cards(ranked, lambda path: f"file={path}")
    assert "<script" not in markup
    page = Tags(markup)
    assert [attrs["data-label"] for attrs in page.find("div", "vls-card")] == [EVIL, EVIL]
    assert page.joined.count(EVIL) >= 5  # labels, text, error, file problem


def test_a_video_result_plays_from_its_best_moment():
    base = "/v1/indexes/shop/assets/clip-launch"
    result = _result(
        id="clip-launch",
        modality="video",
        best_timestamp=5.2,
        media_url=f"{base}/media#t=5.200",
        thumbnail_url=f"{base}/thumbnail?t=5.200",
    )
    page = Tags(cards.search_cards([result], {}, signed))
    (player,) = page.find("video", "vls-player")
    assert player["src"] == f"{base}/media?sig=test"  # signed, the fragment left off
    assert player["poster"] == f"{base}/thumbnail?t=5.200&sig=test"
    (seek,) = page.find("a", "vls-seek")
    assert float(seek["data-t"]) == pytest.approx(result.best_timestamp)
    assert "0:05.2" in page.joined


def test_a_pdf_page_result_shows_its_badge_text_and_a_link_to_the_page():
    base = "/v1/indexes/docs/assets/two.pdf%23page%3D2"
    result = _result(
        id="two.pdf#page=2",
        modality="image",
        page=2,
        media_url=f"{base}/media",
        thumbnail_url=f"{base}/thumbnail",
    )
    asset = Asset(id=result.id, text="beta giraffe", image=Path("page.png"))
    markup = cards.search_cards([result], {result.id: asset}, signed)
    page = Tags(markup)
    assert page.find("span", "vls-badge")[0]["class"] == "vls-badge vls-badge-pdf"
    assert "PDF page" in page.text
    (link,) = page.find("a", "vls-page")
    assert link["href"] == f"{base}/media?sig=test" and link["target"] == "_blank"
    assert "page 2" in page.joined and "beta giraffe" in page.text
    assert page.find("img")[0]["src"] == f"{base}/thumbnail?sig=test"


def test_no_results_say_so():
    assert "No results" in cards.search_cards([], {}, signed)


def test_an_unreadable_candidate_is_listed_with_its_reason():
    ranked = [
        (
            Candidate(label="photo.png", badge="image", content=Content(text="x")),
            Breakdown(whole=0.61, parts=[], frames=[], best_moment=None),
        ),
        (
            Candidate(label="scan.jpg", badge="image", content=Content(text="y")),
            Breakdown(
                whole=None, whole_error="cannot decode", parts=[], frames=[], best_moment=None
            ),
        ),
        (Candidate(label="broken.jpg", badge="unreadable", error="truncated image data"), None),
    ]
    page = Tags(cards.rerank_cards(ranked, str))
    classes = [attrs["class"] for attrs in page.find("div", "vls-card")]
    assert classes == ["vls-card", "vls-card vls-failed", "vls-card vls-failed"]
    badges = [t for t in page.text if t in {"image", "unreadable"}]
    assert badges == ["image", "unreadable", "unreadable"]
    assert "cannot decode" in page.text and "truncated image data" in page.text
    assert len(page.find("span", "vls-score")) == 1  # a failure shows no score
    assert "0.6100" in page.text


def test_the_breakdown_shows_each_part_alone_and_says_they_are_separate():
    breakdown = Breakdown(
        whole=0.7,
        parts=[PartScore(part="text", score=0.61), PartScore(part="image", score=0.42)],
        frames=[],
        best_moment=None,
    )
    candidate = Candidate(label="two.pdf p.1", badge="PDF page", content=Content(text="alpha"))
    markup = cards.rerank_cards([(candidate, breakdown)], str)
    page = Tags(markup)
    assert page.find("details", "vls-breakdown")
    text = page.joined
    assert "text alone" in text and "image alone" in text and "whole document" in text
    assert "0.6100" in text and "0.4200" in text and "0.7000" in text
    assert cards.PARTS_NOTE in text and "separate judgements" in text


def test_a_videos_frames_and_best_moment_are_shown_with_seek_links():
    frames = [
        FrameScore(index=0, timestamp=0.0, score=0.2),
        FrameScore(index=1, timestamp=65.5, score=0.9),
    ]
    breakdown = Breakdown(whole=0.5, parts=[], frames=frames, best_moment=frames[1])
    candidate = Candidate(label="clip.mp4", badge="video", media=Path("/tmp/clip.mp4"))
    page = Tags(cards.rerank_cards([(candidate, breakdown)], lambda p: f"file={p}"))
    (player,) = page.find("video", "vls-player")
    assert player["src"] == "file=/tmp/clip.mp4"
    times = [attrs["data-t"] for attrs in page.find("a", "vls-seek")]
    assert times == ["65.500", "0.000", "65.500"]  # the best moment, then each frame
    text = page.joined
    assert "1:05.5" in text and cards.FRAMES_NOTE in text


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0, "0:00"), (7, "0:07"), (65.5, "1:05.5"), (3600, "60:00"), (59.96, "1:00"), (-1, "0:00")],
)
def test_clock(seconds, shown):
    assert cards.clock(seconds) == shown


def test_the_upload_line_says_what_a_file_is(files):
    line = Tags(cards.upload_line(describe_upload(files["photo.jpg"]))).joined
    assert "96×64 px" in line and "aspect 1.50:1 (3:2)" in line and "B" in line
    line = Tags(cards.upload_line(describe_upload(files["two.pdf"]))).joined
    assert "300×200 pt" in line and "2 pages" in line
    line = Tags(cards.upload_line(describe_upload(files["clip.mp4"]))).joined
    assert "2.0 s" in line and "64×48 px" in line
    line = Tags(cards.upload_line(describe_upload(files["random.jpg"]))).joined
    assert "not a supported image" in line


# -- signed media links --------------------------------------------------------------


@pytest.fixture(scope="module")
def docs_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of one two-page PDF, built by ``vlsearch index build`` (tiny profile):
    its assets' ids hold '#' and '=', as every PDF page's does."""
    from typer.testing import CliRunner

    from pipeline.cli import app

    folder = tmp_path_factory.mktemp("docs")
    write_pdf(folder / "two.pdf", ["alpha", "beta"])
    out = tmp_path_factory.mktemp("docs-index") / "index"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VLSEARCH_MODELS", "tiny")
        result = CliRunner().invoke(
            app, ["index", "build", "--input", str(folder), "--out", str(out)]
        )
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def guarded(tiny_examples_index: Path, docs_index: Path) -> Iterator[Any]:
    """A served app behind an API token, serving the examples and the PDF pages."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VLSEARCH_API_TOKEN", API_TOKEN)
        indexes = {"shop": tiny_examples_index, "docs": docs_index}
        with served(indexes) as client:
            yield client


def _media_links(client: Any, index: str, text: str) -> list[SearchResult]:
    body = {"query": {"text": text}, "top_k": 10, "rerank": False}
    answer = client.post(f"/v1/indexes/{index}/search", json=body, headers=BEARER)
    assert answer.status_code == 200, answer.text
    return [SearchResult(**r) for r in answer.json()["results"] if r.get("media_url")]


def test_media_needs_the_token_or_a_signed_link(guarded):
    tokens = guarded.app.state.service.tokens
    base = "/v1/indexes/shop/assets/sku-cat-poster"
    for path in (f"{base}/media", f"{base}/thumbnail", f"{base}/thumbnail?t=0"):
        assert guarded.get(path).status_code == 401
        assert guarded.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert guarded.get(path, headers=BEARER).status_code == 200
        link = tokens.signed(path)
        assert link.startswith(path) and "exp=" in link and "sig=" in link
        opened = guarded.get(link)
        assert opened.status_code == 200 and opened.headers["content-type"].startswith("image/")


def test_a_signed_link_opens_only_its_own_path_until_it_expires(guarded):
    tokens = guarded.app.state.service.tokens
    cat = "/v1/indexes/shop/assets/sku-cat-poster/media"
    cup = "/v1/indexes/shop/assets/sku-espresso-cup/media"
    query = parse_qs(urlsplit(tokens.signed(cat)).query)
    exp, sig = query["exp"][0], query["sig"][0]
    assert guarded.get(f"{cat}?exp={exp}&sig={sig}").status_code == 200
    flipped = ("0" if sig[0] != "0" else "1") + sig[1:]
    assert guarded.get(f"{cat}?exp={exp}&sig={flipped}").status_code == 401
    assert guarded.get(f"{cat}?exp={int(exp) + 60}&sig={sig}").status_code == 401  # longer
    assert guarded.get(f"{cup}?exp={exp}&sig={sig}").status_code == 401  # another asset
    assert guarded.get(f"{cat}?exp=soon&sig={sig}").status_code == 401
    assert guarded.get(f"{cat}?sig={sig}").status_code == 401
    assert guarded.get(tokens.signed(cat, ttl_s=-5)).status_code == 401  # expired


def test_a_signed_link_expires_with_time(guarded, monkeypatch):
    tokens = guarded.app.state.service.tokens
    link = tokens.signed("/v1/indexes/shop/assets/sku-cat-poster/thumbnail", ttl_s=60)
    assert guarded.get(link).status_code == 200
    later = time.time() + 120
    monkeypatch.setattr("pipeline.api.auth.time.time", lambda: later)
    assert guarded.get(link).status_code == 401


def test_other_routes_take_no_signature(guarded):
    tokens = guarded.app.state.service.tokens
    search = tokens.signed("/v1/indexes/shop/search")
    body = {"query": {"text": "x"}, "rerank": False}
    assert guarded.post(search, json=body).status_code == 401
    for path in ("/v1/indexes", "/v1/models", "/v1/indexes/shop"):
        assert guarded.get(tokens.signed(path)).status_code == 401


def test_signed_links_open_pdf_pages_and_video_moments(guarded):
    """Ids with '#' and '=' travel escaped; a link must open what the search named."""
    tokens = guarded.app.state.service.tokens
    pages = _media_links(guarded, "docs", "alpha")
    assert {r.id for r in pages} == {"two.pdf#page=1", "two.pdf#page=2"}
    for result in pages:
        assert "%23page%3D" in result.media_url
        for path in (result.media_url, result.thumbnail_url):
            opened = guarded.get(tokens.signed(path))
            assert opened.status_code == 200, (path, opened.text)
            assert opened.headers["content-type"] in ("image/png", "image/jpeg")
    (clip,) = [r for r in _media_links(guarded, "shop", "launch") if r.id == "clip-launch"]
    media = clip.media_url.split("#", 1)[0]
    assert guarded.get(tokens.signed(media)).headers["content-type"] == "video/mp4"
    assert guarded.get(tokens.signed(clip.thumbnail_url)).status_code == 200


def test_without_a_token_links_are_left_as_they_are(tiny_examples_index, monkeypatch):
    monkeypatch.delenv("VLSEARCH_API_TOKEN", raising=False)
    monkeypatch.delenv("VLSEARCH_ADMIN_TOKEN", raising=False)
    with served({"shop": tiny_examples_index}) as client:
        tokens = client.app.state.service.tokens
        path = "/v1/indexes/shop/assets/sku-cat-poster/thumbnail?t=0"
        assert tokens.signed(path) == path
        assert client.get(path).status_code == 200


def test_the_pages_search_cards_link_signed_media(guarded):
    """What the Search tab shows behind a token: links a browser opens without a header."""
    pytest.importorskip("gradio", reason="the ui extra: pip install 'vlsearch[ui]'")
    from pipeline.ui.actions import PageActions
    from pipeline.ui.settings import UiConfig

    service = guarded.app.state.service
    page = PageActions(service, UiConfig(), service.scratch / "ui-pages")
    markup = asyncio.run(page.search("docs", "alpha", None, None, "", 5, False, 1.0, _quiet))
    found = Tags(markup)
    assert [t for t in found.text if t == "PDF page"] == ["PDF page", "PDF page"]
    images = [str(a["src"]) for a in found.find("img")]
    links = [str(a["href"]) for a in found.find("a", "vls-page")]
    assert len(images) == 2 and len(links) == 2
    for link in images + links:
        assert "sig=" in link
        assert guarded.get(link).status_code == 200  # a browser sends no header


def _quiet(*_: Any, **__: Any) -> None:
    """A progress callable that shows nothing."""
