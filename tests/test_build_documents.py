"""Builds over documents: PDFs into page assets, Markdown into passages, text channels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from indexers.backends import open_index
from indexers.build import build_index
from indexers.channel_set import ChannelSet
from indexers.sources import count_source

fpdf = pytest.importorskip("fpdf", reason="PDF fixtures are written with fpdf2 (dev extra)")
pytest.importorskip("pypdfium2", reason="PDF ingestion needs the 'documents' extra")

NOTES = """# Garden

Tomatoes need six hours of direct sun and deep watering twice a week.

# Kitchen

The sourdough starter is fed with rye flour every morning.
"""


def _write_pdf(path: Path, page_texts: list[str]) -> Path:
    pdf = fpdf.FPDF(unit="pt", format=(300, 200))
    pdf.set_font("helvetica", size=14)
    for text in page_texts:
        pdf.add_page()
        pdf.text(20, 50, text)
    pdf.output(str(path))
    return path


def _documents_folder(folder: Path) -> Path:
    folder.mkdir()
    _write_pdf(folder / "doc.pdf", ["Quarterly revenue report", "Lighthouse keeper diary"])
    (folder / "notes.md").write_text(NOTES, encoding="utf-8")
    return folder


def test_pdf_pages_and_markdown_passages_are_indexed(tmp_path, tiny_config, tiny_embedder):
    source = _documents_folder(tmp_path / "in")
    advanced: list[int] = []
    report = build_index(
        tiny_config, tiny_embedder, source, tmp_path / "out", progress=advanced.append
    )
    assert (report.indexed, report.failed, report.skipped) == (4, 0, 0)
    # Progress counts input files, as the progress bar's total does.
    assert sum(advanced) == count_source(source) == 2
    with open_index(tmp_path / "out", embedder=tiny_embedder) as index:
        assert index.ids() == {"doc.pdf#page=1", "doc.pdf#page=2", "notes.md#p=1", "notes.md#p=2"}
        page = index.get("doc.pdf#page=2")
        assert page.metadata["doc_id"] == "doc.pdf" and page.metadata["page"] == 2
        assert "Lighthouse" in page.text
        assert (
            Path(page.image).is_file() and (tmp_path / "out" / "pages") in Path(page.image).parents
        )
        passage = index.get("notes.md#p=1")
        assert passage.metadata["doc_id"] == "notes.md"
        assert "Tomatoes" in passage.text and "sourdough" not in passage.text
        # A page holds an image and a text vector.
        assert index.vector_count() == 2 * 2 + 2


def test_broken_pdf_fails_alone(tmp_path, tiny_config, tiny_embedder):
    source = _documents_folder(tmp_path / "in")
    good = (source / "doc.pdf").read_bytes()
    (source / "broken.pdf").write_bytes(good[: len(good) // 3])
    report = build_index(tiny_config, tiny_embedder, source, tmp_path / "out")
    assert (report.indexed, report.failed) == (4, 1)
    errors = [json.loads(line) for line in (tmp_path / "out" / "errors.jsonl").open()]
    assert [e["item"] for e in errors] == ["broken.pdf"]
    assert "PDF" in errors[0]["reason"]


def test_manifest_row_expands_a_pdf_with_its_metadata(tmp_path, tiny_config, tiny_embedder):
    _write_pdf(tmp_path / "report.pdf", ["First page words", "Second page words"])
    row = {"id": "r1", "pdf": "report.pdf", "year": 2024, "page": "not this one"}
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps(row) + "\n", encoding="utf-8")
    report = build_index(tiny_config, tiny_embedder, manifest, tmp_path / "out")
    assert report.indexed == 2
    with open_index(tmp_path / "out", embedder=tiny_embedder) as index:
        second = index.get("r1#page=2")
        assert second.metadata["year"] == 2024
        assert (second.metadata["doc_id"], second.metadata["page"]) == ("r1", 2)


def test_bm25_channel_is_built_with_the_index(tmp_path, tiny_config, tiny_embedder):
    pytest.importorskip("bm25s", reason="the bm25 channel needs the 'text' extra")
    config = type(tiny_config).model_validate(
        {**tiny_config.model_dump(), "text_channels": [{"backend": "bm25"}]}
    )
    source = _documents_folder(tmp_path / "in")
    build_index(config, tiny_embedder, source, tmp_path / "out")
    channels = ChannelSet.open(tmp_path / "out", config.text_channels)
    assert channels.channel("bm25").ids() == {
        "doc.pdf#page=1",
        "doc.pdf#page=2",
        "notes.md#p=1",
        "notes.md#p=2",
    }
    hits = channels.search("bm25", "sourdough starter rye flour", k=2)
    assert hits[0].id == "notes.md#p=2"
    assert channels.search("bm25", "lighthouse keeper", k=1)[0].id == "doc.pdf#page=2"
