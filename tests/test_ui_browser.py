"""The web page in a real browser: Debian's chromium, driven by Playwright, against the
page served on 127.0.0.1 with the tiny random-weight models (rankings are meaningless,
so these tests check what a person sees, not which result wins).

``make browser`` installs chromium; these tests fail, not skip, without it, so CI cannot
pass without running them. ``VLSEARCH_SCREENSHOTS=DIR`` saves the tabs' screenshots
there (``docs/images`` for the README's).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.api_support import live_page
from tests.media_factory import make_bad_files, make_image

pytest.importorskip("gradio", reason="the ui extra: pip install 'vlsearch[ui]'")
playwright = pytest.importorskip("playwright.sync_api", reason="the dev extra installs it")

CHROMIUM = Path(os.environ.get("VLSEARCH_CHROMIUM", "/usr/bin/chromium"))
# Flags for a sandboxed, offline machine: no background connections to Google's hosts
# (refused here, and slow to fail), no GPU, no first-run dialogs.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
WAIT_MS = 60_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.is_file():
        pytest.fail(f"no chromium at {CHROMIUM}: run `make browser` (Debian's chromium package)")
    with playwright.sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def page_server(tiny_examples_index: Path) -> Iterator[tuple[str, Any]]:
    with live_page({"shop": tiny_examples_index}, serve={"max_upload_bytes": 400_000}) as served:
        yield served


@pytest.fixture
def page(browser: Any, page_server: tuple[str, Any]) -> Iterator[Any]:
    base, _ = page_server
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    opened = context.new_page()
    opened.set_default_timeout(WAIT_MS)
    opened.goto(f"{base}/ui/")
    opened.wait_for_selector("#vls-status")
    yield opened
    context.close()


def _status(page: Any) -> str:
    return page.locator("#vls-status").inner_text()


def _screenshot(page: Any, name: str, tmp_path: Path) -> None:
    folder = Path(os.environ.get("VLSEARCH_SCREENSHOTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    page.screenshot(path=str(path), full_page=True)
    with Image.open(path) as shot:
        assert shot.width >= 1000 and shot.height >= 600


def _search(page: Any) -> Any:
    page.locator("#vls-search").click()
    cards = page.locator("#vls-search-results .vls-card")
    cards.first.wait_for()
    return cards


# -- the page and its models -------------------------------------------------------------


def test_the_page_appears_before_any_model_loads(page: Any, page_server: tuple[str, Any]) -> None:
    _, service = page_server
    assert "not loaded" in _status(page)
    assert page.locator("#vls-tiny").is_visible()
    assert "meaningless" in page.locator("#vls-tiny").inner_text()
    models = service.models()
    assert all(status.state == "not_loaded" for status in models.rerankers)
    assert not any(embedder.loaded for embedder in models.embedders)


def test_load_model_and_unload_change_the_status(page: Any) -> None:
    page.locator("#vls-load").click()
    page.wait_for_function(
        "() => document.querySelector('#vls-status').innerText.includes('loaded on cpu')"
    )
    assert "float32" in _status(page)
    page.locator("#vls-unload").click()
    page.wait_for_function(
        "() => !document.querySelector('#vls-status').innerText.includes('loaded on')"
    )
    assert "Reranker" in _status(page) and "not loaded" in _status(page)


# -- search ------------------------------------------------------------------------------


def test_a_text_search_shows_cards_with_badges_and_scores(page: Any, tmp_path: Path) -> None:
    page.locator("#vls-search-text textarea").fill("a poster of a cat")
    cards = _search(page)
    assert cards.count() == 7  # every asset of the examples index, best first
    first = cards.first
    assert first.locator(".vls-badge").inner_text() in {"text", "image", "video"}
    assert float(first.locator(".vls-score").inner_text()) <= 1.0
    assert "fused" in first.locator(".vls-stages").inner_text()
    assert "rerank" in first.locator(".vls-stages").inner_text()
    ranks = [cards.nth(i).locator(".vls-rank").inner_text().strip() for i in range(cards.count())]
    assert ranks == [f"#{i}" for i in range(1, 8)]
    _screenshot(page, "ui-search.png", tmp_path)


def test_an_image_upload_search_shows_cards(page: Any) -> None:
    page.locator("#vls-search-image input[type=file]").set_input_files(
        str(EXAMPLES / "media" / "rocket.jpg")
    )
    page.locator("#vls-search-image img").first.wait_for()
    cards = _search(page)
    assert cards.count() >= 1
    badges = {cards.nth(i).locator(".vls-badge").inner_text() for i in range(cards.count())}
    assert badges <= {"image", "video"}  # an image query searches the visual channel
    thumbnail = cards.first.locator(".vls-media img, .vls-media video").first
    assert thumbnail.get_attribute("src") or thumbnail.get_attribute("poster")


def test_a_video_results_best_moment_seeks_its_player(page: Any, tmp_path: Path) -> None:
    # The query is the clip's frame at 5 s: its own frame row matches best, so the
    # best moment is known whatever the random weights say.
    frame = _video_frame(EXAMPLES / "media" / "launch_clip.mp4", 5.0, tmp_path / "frame.png")
    page.locator("#vls-search-image input[type=file]").set_input_files(str(frame))
    page.locator("#vls-search-image img").first.wait_for()
    page.get_by_label("Rerank (stage two)").uncheck()
    _search(page)
    card = page.locator('.vls-card[data-id="clip-launch"]')
    link = card.locator("a.vls-seek")
    seconds = float(link.get_attribute("data-t"))
    assert seconds == pytest.approx(5.0, abs=0.6)
    link.click()
    page.wait_for_function(
        "t => { const v = document.querySelector('.vls-card[data-id=\"clip-launch\"] video');"
        " return v && Math.abs(v.currentTime - t) < 0.5; }",
        arg=seconds,
    )


def _video_frame(video: Path, seconds: float, out: Path) -> Path:
    from pipeline.media import frames_at

    (frame,) = frames_at(video, lambda _: [seconds])
    frame.image.save(out)
    return out


# -- rerank ------------------------------------------------------------------------------


def test_the_rerank_tab_ranks_uploads_and_snippets_and_lists_a_corrupt_file(
    page: Any, tmp_path: Path
) -> None:
    bad = make_bad_files(tmp_path / "bad")
    corrupt = tmp_path / "broken.jpg"
    shutil.copy(bad["truncated.jpg"], corrupt)
    photo = make_image(tmp_path / "photo.png", size=(96, 64))
    uploads = [photo, EXAMPLES / "media" / "rocket.jpg", _pdf(tmp_path / "guide.pdf"), corrupt]
    page.get_by_role("tab", name="Rerank").click()
    page.locator("#vls-rerank-text textarea").fill("a rocket on its launch pad")
    page.locator("#vls-candidates input[type=file]").set_input_files([str(p) for p in uploads])
    info = page.locator("#vls-upload-info")
    info.get_by_text("guide.pdf").wait_for()
    assert "96×64 px" in info.inner_text() and "aspect 1.50:1 (3:2)" in info.inner_text()
    assert "1 page" in info.inner_text()
    page.locator("#vls-snippets textarea").fill("a model rocket kit\nreturns policy")
    page.locator("#vls-rerank").click()
    cards = page.locator("#vls-rerank-results .vls-card")
    cards.first.wait_for()
    assert cards.count() == 6
    last = cards.nth(5)
    assert last.get_attribute("data-label") == "broken.jpg"
    assert last.locator(".vls-badge").inner_text() == "unreadable"
    assert last.locator(".vls-error").inner_text()
    scores = [float(cards.nth(i).locator(".vls-score").inner_text()) for i in range(5)]
    assert scores == sorted(scores, reverse=True)
    pdf_page = page.locator('.vls-card[data-label="guide.pdf p.1"]')
    assert pdf_page.locator(".vls-badge").inner_text() == "PDF page"
    pdf_page.locator("details.vls-breakdown summary").click()
    breakdown = pdf_page.locator("details.vls-breakdown").inner_text()
    assert "text alone" in breakdown and "image alone" in breakdown
    assert "whole document" in breakdown and "not a split" in breakdown
    _screenshot(page, "ui-rerank.png", tmp_path)


def test_a_rerank_video_breakdown_finds_a_best_moment_that_seeks(page: Any) -> None:
    page.get_by_role("tab", name="Rerank").click()
    page.locator("#vls-rerank-text textarea").fill("the rocket lifts off")
    clip = EXAMPLES / "media" / "launch_clip.mp4"
    page.locator("#vls-candidates input[type=file]").set_input_files(str(clip))
    page.locator("#vls-upload-info").get_by_text("launch_clip.mp4").wait_for()
    assert "8.0 s" in page.locator("#vls-upload-info").inner_text()
    page.get_by_text("Settings").click()
    page.locator("#vls-frames input").check()
    page.locator("#vls-rerank").click()
    card = page.locator('#vls-rerank-results .vls-card[data-label="launch_clip.mp4"]')
    card.wait_for()
    card.locator("details.vls-breakdown summary").click()
    frames = card.locator("details.vls-breakdown tr a.vls-seek")
    assert frames.count() >= 8  # 8 s at 1 fps, as the reranker samples it
    best = card.locator("details.vls-breakdown p a.vls-seek")
    seconds = float(best.get_attribute("data-t"))
    best.click()
    page.wait_for_function(
        "t => { const v = document.querySelector("
        "'.vls-card[data-label=\"launch_clip.mp4\"] video');"
        " return v && Math.abs(v.currentTime - t) < 0.5 && (t < 0.5 || v.currentTime > 0); }",
        arg=seconds,
    )


def _pdf(path: Path) -> Path:
    fpdf = pytest.importorskip("fpdf", reason="PDF fixtures are written with fpdf2 (dev extra)")
    pdf = fpdf.FPDF(unit="pt", format=(300, 200))
    pdf.set_font("helvetica", size=14)
    pdf.add_page()
    pdf.text(20, 50, "Launch checklist: fuel, igniter, countdown")
    pdf.output(str(path))
    return path


def test_an_oversize_upload_shows_an_error_message(page: Any, tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    noise = Image.effect_noise((600, 600), 100).convert("RGB")
    noise.save(big)
    assert big.stat().st_size > 400_000  # over the page server's serve.max_upload_bytes
    page.get_by_role("tab", name="Rerank").click()
    page.locator("#vls-rerank-text textarea").fill("noise")
    page.locator("#vls-candidates input[type=file]").set_input_files(str(big))
    page.locator("#vls-upload-info").get_by_text("big.png").wait_for()
    page.locator("#vls-rerank").click()
    message = page.get_by_text("serve.max_upload_bytes").first
    message.wait_for()
    assert "big.png" in message.inner_text()
    assert "Traceback" not in page.content()
