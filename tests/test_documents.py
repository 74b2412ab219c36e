"""Documents into assets: PDF pages (rendered image + text) and text/Markdown passages."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from indexers.documents import (
    DocumentsConfig,
    is_pdf,
    iter_pdf_pages,
    iter_text_passages,
    split_passages,
)
from indexers.sources import SourceProblem
from pipeline.media import load_image
from pipeline.schema import Asset
from tests.media_factory import quadrant_image

pytest.importorskip("pypdfium2", reason="PDF ingestion needs the 'documents' extra")
fpdf = pytest.importorskip("fpdf", reason="PDF fixtures are written with fpdf2 (dev extra)")

PAGE_POINTS = (300, 200)  # width, height of the test pages in PDF points (1/72 inch)


# --- PDF fixtures ----------------------------------------------------------------------


def write_text_pdf(path: Path, page_texts: list[str], *, password: str | None = None) -> Path:
    pdf = fpdf.FPDF(unit="pt", format=PAGE_POINTS)
    pdf.set_compression(False)  # plain page objects, so a test can break one in place
    if password is not None:
        pdf.set_encryption(owner_password="owner", user_password=password)
    pdf.set_font("helvetica", size=14)
    for text in page_texts:
        pdf.add_page()
        pdf.text(20, 50, text)
    pdf.output(str(path))
    return path


def break_page_object(path: Path, page_number: int) -> None:
    """Overwrite one page's dictionary with a number of the same length: the cross-reference
    table stays valid, so the file opens, but that page can no longer be loaded."""
    data = path.read_bytes()
    object_number = 1 + 2 * page_number  # fpdf2: 1 = page tree, 2 = catalog, then page/content
    start = data.index(f"\n{object_number} 0 obj\n".encode()) + len(f"\n{object_number} 0 obj\n")
    end = data.index(b"endobj", start)
    assert b"/Type /Page" in data[start:end]
    path.write_bytes(data[:start] + b"42".ljust(end - start) + data[end:])


def pdf_items(path: Path, tmp_path: Path, doc_id: str = "doc.pdf", **config):
    return list(iter_pdf_pages(path, doc_id, DocumentsConfig(**config), tmp_path / "pages"))


def split(items):
    assets = [item for item in items if isinstance(item, Asset)]
    problems = [item for item in items if isinstance(item, SourceProblem)]
    assert len(assets) + len(problems) == len(items)
    return assets, problems


@pytest.fixture
def three_pages(tmp_path: Path) -> Path:
    return write_text_pdf(tmp_path / "three.pdf", ["alpha zebra", "beta giraffe", "gamma okapi"])


# --- PDF pages -------------------------------------------------------------------------


def test_every_page_is_an_asset_with_text_image_and_metadata(three_pages, tmp_path):
    assets, problems = split(pdf_items(three_pages, tmp_path, doc_id="reports/three.pdf"))
    assert problems == []
    assert [a.id for a in assets] == [f"reports/three.pdf#page={n}" for n in (1, 2, 3)]
    assert [a.text for a in assets] == ["alpha zebra", "beta giraffe", "gamma okapi"]
    for number, asset in enumerate(assets, start=1):
        assert asset.metadata == {
            "doc_id": "reports/three.pdf",
            "page": number,
            "page_count": 3,
            "path": str(three_pages),
            "dpi": 144.0,
        }
        assert isinstance(asset.image, Path)
        assert load_image(asset.image).size == (600, 400)  # 144 DPI = 2 pixels per point


@pytest.mark.parametrize("dpi", [36, 72, 200])
def test_dpi_sets_the_page_image_size(three_pages, tmp_path, dpi):
    assets, _ = split(pdf_items(three_pages, tmp_path, pdf_dpi=dpi))
    # PDFium rounds a fractional pixel up.
    expected = tuple(math.ceil(points * dpi / 72) for points in PAGE_POINTS)
    assert {load_image(a.image).size for a in assets} == {expected}


def test_page_image_shows_the_page_as_drawn(tmp_path):
    # Differential: a PDF holding one picture, rendered at the picture's own resolution,
    # gives that picture back.
    picture = quadrant_image((80, 60))
    path = tmp_path / "scan.pdf"
    picture.save(path, "PDF", resolution=72)
    assets, problems = split(pdf_items(path, tmp_path, pdf_dpi=72))
    assert problems == [] and len(assets) == 1
    assert assets[0].text is None  # an image-only page has no text layer
    rendered = np.asarray(load_image(assets[0].image), dtype=np.int16)
    assert rendered.shape == (60, 80, 3)
    assert np.abs(rendered - np.asarray(picture, dtype=np.int16)).mean() < 8


def test_oversized_pages_render_within_the_pixel_budget(tmp_path):
    pdf = fpdf.FPDF(unit="pt", format=(5000, 5000))
    pdf.add_page()
    pdf.output(str(tmp_path / "poster.pdf"))
    assets, _ = split(pdf_items(tmp_path / "poster.pdf", tmp_path, max_page_pixels=1_000_000))
    width, height = load_image(assets[0].image).size
    assert width * height <= 1_000_000 and width == height
    assert width >= 990  # lowered only as far as needed
    assert assets[0].metadata["dpi"] == pytest.approx(72 * width / 5000, abs=0.1)


def test_max_pages_reports_the_pages_left_out(three_pages, tmp_path):
    assets, problems = split(pdf_items(three_pages, tmp_path, max_pages=2))
    assert [a.metadata["page"] for a in assets] == [1, 2]
    assert len(problems) == 1
    assert problems[0].item == "doc.pdf" and problems[0].outcome == "skipped"
    assert "page 3 of 3" in problems[0].reason and "max_pages" in problems[0].reason


def test_pdfs_are_recognised_by_content_not_name(three_pages, tmp_path):
    renamed = tmp_path / "download.bin"
    renamed.write_bytes(three_pages.read_bytes())
    fake = tmp_path / "photo.pdf"
    Image.new("RGB", (8, 8)).save(fake, format="PNG")
    (tmp_path / "notes.pdf").write_text("A PDF file starts with\n%PDF-1.7\n", encoding="utf-8")
    assert is_pdf(three_pages) and is_pdf(renamed)
    assert not is_pdf(fake) and not is_pdf(tmp_path / "notes.pdf")
    assert not is_pdf(tmp_path / "missing.pdf")
    assets, _ = split(pdf_items(renamed, tmp_path))
    assert len(assets) == 3
    _, problems = split(pdf_items(fake, tmp_path, doc_id="photo.pdf"))
    assert problems == [SourceProblem("photo.pdf", "not a PDF (no %PDF- header)", "failed")]


def _zero_byte(path: Path, good: bytes) -> None:
    path.write_bytes(b"")


def _truncated(path: Path, good: bytes) -> None:
    path.write_bytes(good[: len(good) // 2])


def _garbage_after_header(path: Path, good: bytes) -> None:
    path.write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 8)


def _encrypted(path: Path, good: bytes) -> None:
    write_text_pdf(path, ["secret page"], password="hunter2")


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (_zero_byte, "empty file (0 bytes)"),
        (_truncated, "damaged, truncated or not a PDF"),
        (_garbage_after_header, "damaged, truncated or not a PDF"),
        (_encrypted, "encrypted: needs a password"),
    ],
)
def test_unusable_pdfs_fail_alone_with_a_reason(three_pages, tmp_path, make, expected):
    bad = tmp_path / "bad.pdf"
    make(bad, three_pages.read_bytes())
    items = pdf_items(bad, tmp_path, doc_id="in/bad.pdf")
    assert len(items) == 1
    problem = items[0]
    assert isinstance(problem, SourceProblem)
    assert problem.item == "in/bad.pdf" and problem.outcome == "failed"
    assert expected in problem.reason
    # The same run goes on to read a good file.
    assert len(split(pdf_items(three_pages, tmp_path))[0]) == 3


def test_missing_file_is_named(tmp_path):
    items = pdf_items(tmp_path / "gone.pdf", tmp_path, doc_id="gone.pdf")
    assert items == [SourceProblem("gone.pdf", "file not found", "failed")]


def test_a_broken_page_loses_only_that_page(three_pages, tmp_path):
    break_page_object(three_pages, page_number=2)
    assets, problems = split(pdf_items(three_pages, tmp_path))
    assert [a.id for a in assets] == ["doc.pdf#page=1", "doc.pdf#page=3"]
    assert [a.text for a in assets] == ["alpha zebra", "gamma okapi"]
    assert assets[1].metadata["page_count"] == 3
    assert [(p.item, p.outcome) for p in problems] == [("doc.pdf#page=2", "failed")]
    assert "cannot load page" in problems[0].reason


def test_rendered_pages_are_cached_by_content_and_settings(three_pages, tmp_path):
    first, _ = split(pdf_items(three_pages, tmp_path))
    stamps = [a.image.stat().st_mtime_ns for a in first]
    copy = tmp_path / "copy.pdf"
    copy.write_bytes(three_pages.read_bytes())
    again, _ = split(pdf_items(copy, tmp_path, doc_id="copy.pdf"))
    assert [a.image for a in again] == [a.image for a in first]
    assert [a.image.stat().st_mtime_ns for a in again] == stamps  # not rendered twice
    other_dpi, _ = split(pdf_items(three_pages, tmp_path, pdf_dpi=72))
    assert other_dpi[0].image.parent != first[0].image.parent
    assert load_image(other_dpi[0].image).size == PAGE_POINTS


# --- passages --------------------------------------------------------------------------


def words_config(words: int, overlap: int = 0, **extra) -> DocumentsConfig:
    return DocumentsConfig(passage_words=words, passage_overlap=overlap, **extra)


def body(text: str, passage: Asset) -> str:
    return text[passage.metadata["char_start"] : passage.metadata["char_end"]]


PLAIN = (
    "The first paragraph has six words.\n\n"
    "Second one is short.\r\n   \r\n"
    "Third paragraph: " + " ".join(f"w{i}" for i in range(30)) + "\n\n\n"
    "Last."
)


def test_passages_pack_paragraphs_within_the_budget():
    passages = split_passages(PLAIN, "notes.txt", words_config(12, 4), markdown=False)
    assert [p.id for p in passages] == [f"notes.txt#p={n}" for n in range(1, len(passages) + 1)]
    assert [p.metadata["passage"] for p in passages] == list(range(1, len(passages) + 1))
    assert passages[0].text == "The first paragraph has six words.\n\nSecond one is short."
    assert all(len(p.text.split()) <= 12 for p in passages)
    assert passages[-1].text == "Last."
    for passage in passages:
        assert passage.text == body(PLAIN, passage)
        assert passage.metadata["doc_id"] == "notes.txt" and passage.metadata["section"] is None


def test_passages_cover_every_word_once_apart_from_overlap():
    # Differential against the plain word list: dropping each window's overlap with the
    # one before rebuilds the text's words exactly.
    text = "\n\n".join(" ".join(f"p{p}w{w}" for w in range(n)) for p, n in enumerate([5, 70, 3]))
    passages = split_passages(text, "d", words_config(20, 6), markdown=False)
    rebuilt: list[str] = []
    previous_end = -1
    for passage in passages:
        words = passage.text.split()
        if passage.metadata["char_start"] < previous_end:  # a window of a long paragraph
            words = words[6:]
        rebuilt.extend(words)
        previous_end = passage.metadata["char_end"]
    assert rebuilt == text.split()


def test_long_paragraphs_become_overlapping_windows():
    words = [f"w{i}" for i in range(500)]
    passages = split_passages(" ".join(words), "long", DocumentsConfig(), markdown=False)
    assert [p.text.split() for p in passages] == [words[0:200], words[160:360], words[320:500]]


def test_same_text_gives_the_same_passages():
    first = split_passages(MARKDOWN, "guide.md", words_config(15, 3), markdown=True)
    second = split_passages(MARKDOWN, "guide.md", words_config(15, 3), markdown=True)
    assert [p.model_dump() for p in first] == [p.model_dump() for p in second]


MARKDOWN = """Preface before any heading.

# Guide

Read this first.

## Install

- pip install vlsearch
- run the tests

```sh
# a comment, not a heading
make test
```

Setext heading
--------------

Under the setext heading.

# Guide

A second section with the same heading.
"""


def test_markdown_headings_become_sections():
    passages = split_passages(MARKDOWN, "guide.md", words_config(50), markdown=True)
    sections = [(p.metadata["section"], body(MARKDOWN, p)) for p in passages]
    assert sections == [
        (None, "Preface before any heading."),
        ("Guide", "Read this first."),
        (
            "Guide > Install",
            "- pip install vlsearch\n- run the tests\n\n"
            "```sh\n# a comment, not a heading\nmake test\n```",
        ),
        ("Guide > Setext heading", "Under the setext heading."),
        ("Guide", "A second section with the same heading."),
    ]
    assert passages[1].text == "Guide\n\nRead this first."
    assert passages[0].text == "Preface before any heading."


def test_section_prefix_can_be_left_out():
    passages = split_passages(MARKDOWN, "g.md", words_config(50, section_prefix=False), True)
    assert all(p.text == body(MARKDOWN, p) for p in passages)
    assert passages[1].metadata["section"] == "Guide"


def test_markdown_lists_are_cut_between_items():
    items = "\n".join(f"- item {i} " + "word " * 6 for i in range(6))  # 9 words per item
    passages = split_passages(f"# List\n\n{items}\n", "l.md", words_config(20), markdown=True)
    assert [body(f"# List\n\n{items}\n", p).count("- item") for p in passages] == [2, 2, 2]


def test_editing_a_paragraph_changes_only_its_passage_when_the_count_holds():
    edited = MARKDOWN.replace("Read this first.", "Read this before anything else.")
    config = words_config(50)
    before = split_passages(MARKDOWN, "g.md", config, markdown=True)
    after = split_passages(edited, "g.md", config, markdown=True)
    assert [p.id for p in after] == [p.id for p in before]
    changed = [b.id for b, a in zip(before, after, strict=True) if a.text != b.text]
    assert changed == ["g.md#p=2"]


def test_text_files_become_passages_and_bad_ones_fail_alone(tmp_path):
    (tmp_path / "guide.md").write_text(MARKDOWN, encoding="utf-8")
    (tmp_path / "guide.txt").write_text(MARKDOWN, encoding="utf-8")
    (tmp_path / "blank.txt").write_text(" \n\n \t\n", encoding="utf-8")
    (tmp_path / "binary.txt").write_bytes(b"abc\x00\x01\x02" * 10)
    config = words_config(50)
    as_markdown = list(iter_text_passages(tmp_path / "guide.md", "guide.md", config))
    as_plain = list(iter_text_passages(tmp_path / "guide.txt", "guide.txt", config))
    assert as_markdown[1].metadata["section"] == "Guide"
    assert as_markdown[1].metadata["path"] == str(tmp_path / "guide.md")
    assert [p.id for p in as_markdown] == [f"guide.md#p={n}" for n in range(1, 6)]
    assert all(p.metadata["section"] is None for p in as_plain)
    for name in ("blank.txt", "binary.txt"):
        items = list(iter_text_passages(tmp_path / name, name, config))
        assert len(items) == 1 and isinstance(items[0], SourceProblem)
        assert items[0].item == name and items[0].outcome == "failed"
    assert "whitespace" in next(iter_text_passages(tmp_path / "blank.txt", "b", config)).reason


def test_config_rejects_overlap_not_below_the_budget_and_unknown_keys():
    with pytest.raises(ValidationError, match="passage_overlap"):
        DocumentsConfig(passage_words=10, passage_overlap=10)
    with pytest.raises(ValidationError, match="pdf_dpl"):
        DocumentsConfig(pdf_dpl=100)
