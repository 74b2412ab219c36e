"""The reader stage: folders and manifests into assets or named problems."""

import json
from pathlib import Path

import pytest
from PIL import Image

from indexers.sources import SourceProblem, count_source, iter_source
from pipeline.schema import Asset

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _split(items):
    assets = [i for i in items if isinstance(i, Asset)]
    problems = [i for i in items if isinstance(i, SourceProblem)]
    return assets, problems


def test_folder_types_by_content_when_the_name_says_nothing(tmp_path):
    Image.new("RGB", (32, 32), "red").save(tmp_path / "photo.png")
    Image.new("RGB", (32, 32), "blue").save(tmp_path / "scan", format="PNG")
    Image.new("RGB", (32, 32), "blue").save(tmp_path / "picture.dat", format="JPEG")
    Image.new("RGB", (32, 32), "green").save(tmp_path / "really-a-png.jpg", format="PNG")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "note.md").write_text("# Note\nsome words", encoding="utf-8")
    (tmp_path / ".hidden.png").write_bytes(b"ignored")
    assets, problems = _split(list(iter_source(tmp_path)))
    by_id = {a.id: a for a in assets}
    # Text and Markdown files are read as passages, numbered from 1.
    assert sorted(by_id) == [
        "photo.png",
        "picture.dat",
        "really-a-png.jpg",  # one image format named as another is still an image
        "scan",
        "sub/note.md#p=1",
    ]
    assert by_id["scan"].image is not None and by_id["picture.dat"].image is not None
    assert by_id["sub/note.md#p=1"].text == "Note\n\nsome words"
    assert by_id["sub/note.md#p=1"].metadata["path"] == "sub/note.md"
    assert by_id["sub/note.md#p=1"].metadata["doc_id"] == "sub/note.md"
    assert problems == []
    assert count_source(tmp_path) == 5


def test_a_media_name_that_disagrees_with_the_content_is_a_failure(tmp_path):
    (tmp_path / "notes.png").write_text("meeting notes, not a picture", encoding="utf-8")
    Image.new("RGB", (32, 32), "blue").save(tmp_path / "photo.txt", format="PNG")
    Image.new("RGB", (32, 32), "blue").save(tmp_path / "clip.mp4", format="PNG")
    (tmp_path / "report.pdf").write_text("plain text", encoding="utf-8")
    (tmp_path / "slides.jpg").write_bytes(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")  # a PDF's header
    Image.new("RGB", (32, 32), "red").save(tmp_path / "fine.png")
    assets, problems = _split(list(iter_source(tmp_path)))
    assert [a.id for a in assets] == ["fine.png"]
    reasons = {p.item: (p.outcome, p.reason) for p in problems}
    assert reasons == {
        "notes.png": ("failed", "named as image (.png) but its content is text"),
        "photo.txt": ("failed", "named as text (.txt) but its content is image"),
        "clip.mp4": ("failed", "named as video (.mp4) but its content is image"),
        "report.pdf": ("failed", "named as pdf (.pdf) but its content is text"),
        "slides.jpg": ("failed", "named as image (.jpg) but its content is pdf"),
    }


def test_folder_problems_name_item_and_reason(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "noise.jpg").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "tool.bin").write_bytes(b"\x7fELF" + bytes(64))
    _, problems = _split(list(iter_source(tmp_path)))
    by_item = {p.item: p for p in problems}
    assert by_item["empty.jpg"].outcome == "failed" and "empty" in by_item["empty.jpg"].reason
    assert by_item["noise.jpg"].outcome == "failed"
    assert by_item["tool.bin"].outcome == "skipped"
    assert "unsupported" in by_item["tool.bin"].reason


def test_examples_manifest_mixes_modalities():
    assets, problems = _split(list(iter_source(EXAMPLES / "products.jsonl")))
    assert problems == []
    rocket = next(a for a in assets if a.id == "sku-rocket-model")
    assert rocket.text and rocket.image.is_file() and rocket.video.is_file()
    assert rocket.metadata == {"category": "toys", "price": 59.9}


def test_manifest_rows_fail_alone(tmp_path):
    rows = [
        '{"id": "ok", "text": "fine"}',
        "{not json",
        '{"text": "no id"}',
        '{"id": "empty"}',
        '{"id": "ok", "text": "again"}',
        "[1, 2]",
    ]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(rows) + "\n", encoding="utf-8")
    assets, problems = _split(list(iter_source(manifest)))
    assert [a.id for a in assets] == ["ok"]
    reasons = {p.item.split(" ")[0]: p.reason for p in problems}
    assert "not valid JSON" in reasons["m.jsonl:2"]
    assert "no 'id'" in reasons["m.jsonl:3"]
    assert "no text, image or video" in reasons["m.jsonl:4"]
    assert "duplicate id" in reasons["m.jsonl:5"]
    assert "not a JSON object" in reasons["m.jsonl:6"]


def test_csv_manifest_keeps_ids_as_text_and_numbers_as_numbers(tmp_path):
    Image.new("RGB", (16, 16)).save(tmp_path / "a.png")
    manifest = tmp_path / "m.csv"
    manifest.write_text("id,text,image,price,color\n007,Shoe,a.png,49.5,red\n", encoding="utf-8")
    (asset,) = list(iter_source(manifest))
    assert asset.id == "007"
    assert asset.image == tmp_path / "a.png"
    assert asset.metadata == {"price": 49.5, "color": "red"}


def test_metadata_object_is_flattened(tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"id": "a", "text": "t", "metadata": {"k": 1}, "x": 2}) + "\n")
    (asset,) = list(iter_source(manifest))
    assert asset.metadata == {"k": 1, "x": 2}


def test_bad_input_path_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        list(iter_source(tmp_path / "absent"))
    (tmp_path / "list.txt").write_text("x")
    with pytest.raises(ValueError, match=r"folder or a \.jsonl/\.csv"):
        list(iter_source(tmp_path / "list.txt"))
