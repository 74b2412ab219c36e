"""Offline builds end to end: examples, bad inputs, kill-and-resume, upsert and delete."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from indexers.build import build_index
from indexers.index import Index
from pipeline.schema import Query

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


def _image_folder(folder: Path, count: int, size: int = 96) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        pixels = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img_{i:04d}.png")
    return folder


def test_examples_build_and_search(tmp_path, tiny_config, tiny_embedder):
    out = tmp_path / "index"
    report = build_index(tiny_config, tiny_embedder, EXAMPLES / "products.jsonl", out)
    assert (report.indexed, report.failed, report.skipped) == (7, 0, 0)
    # 6 texts + 5 images + two 8-second videos sampled at 1 fps.
    assert report.vectors == 6 + 5 + 8 + 8
    assert json.loads((out / "build_report.json").read_text())["indexed"] == 7
    assert (out / "errors.jsonl").read_text() == ""
    with Index.open(out, embedder=tiny_embedder) as index:
        assert len(index) == 7
        hits = index.search(Query(video=EXAMPLES / "media" / "launch_clip.mp4"), k=7)
        assert len({h.id for h in hits}) == 7
        video_hits = [h for h in hits if h.modality == "video"]
        assert video_hits and all(0.0 <= h.best_timestamp < 8.0 for h in video_hits)
        assert hits == sorted(hits, key=lambda h: -h.score)
        by_id = {h.id: h for h in hits}
        assert by_id["sku-rocket-model"].metadata == {"category": "toys", "price": 59.9}


def test_timings_cover_every_stage(tmp_path, tiny_config, tiny_embedder):
    report = build_index(
        tiny_config, tiny_embedder, _image_folder(tmp_path / "in", 6), tmp_path / "o"
    )
    timings = report.timings
    assert timings.total_s > 0 and timings.decode_s > 0 and timings.embed_s > 0
    assert timings.write_s > 0 and report.items_per_s > 0


def test_bad_inputs_are_reported_and_skipped(tmp_path, tiny_config, tiny_embedder):
    from tests.media_factory import make_bad_files

    source = _image_folder(tmp_path / "in", 3)
    bad = make_bad_files(source / "bad")
    (source / "tool.bin").write_bytes(b"\x7fELF" + bytes(64))
    report = build_index(tiny_config, tiny_embedder, source, tmp_path / "out")
    errors = [
        json.loads(line) for line in (tmp_path / "out" / "errors.jsonl").read_text().splitlines()
    ]
    by_item = {e["item"]: e for e in errors}
    assert report.indexed == 3
    assert report.skipped == 1 and "unsupported" in by_item.pop("tool.bin")["reason"]
    assert report.failed == len(by_item) == len(bad)
    assert set(by_item) == {f"bad/{p.name}" for p in bad.values()}
    assert all(e["reason"] and e["stage"] in {"read", "decode"} for e in by_item.values())
    # A text file named .png is refused, naming both kinds, not indexed as text.
    assert by_item["bad/text.png"]["reason"] == "named as image (.png) but its content is text"


def test_manifest_with_missing_and_corrupt_media(tmp_path, tiny_config, tiny_embedder):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"garbage" * 10)
    rows = [
        {"id": "good", "text": "a fine product"},
        {"id": "gone", "text": "x", "image": "absent.jpg"},
        {"id": "broken", "image": "broken.jpg"},
    ]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = build_index(tiny_config, tiny_embedder, manifest, tmp_path / "out")
    assert (report.indexed, report.failed) == (1, 2)
    errors = {e["item"]: e for e in map(json.loads, (tmp_path / "out" / "errors.jsonl").open())}
    assert set(errors) == {"gone", "broken"}
    assert "absent.jpg" in errors["gone"]["reason"] or "not found" in errors["gone"]["reason"]


def test_unstorable_metadata_fails_alone(tmp_path, tiny_config, tiny_embedder):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        '{"id": "ok", "text": "fine", "price": 3}\n{"id": "nan", "text": "x", "price": NaN}\n'
    )
    report = build_index(tiny_config, tiny_embedder, manifest, tmp_path / "out")
    assert (report.indexed, report.failed) == (1, 1)
    (error,) = map(json.loads, (tmp_path / "out" / "errors.jsonl").open())
    assert error["item"] == "nan" and "JSON" in error["reason"]


def test_create_refuses_an_existing_index(tmp_path, tiny_config, tiny_embedder):
    source = _image_folder(tmp_path / "in", 2)
    build_index(tiny_config, tiny_embedder, source, tmp_path / "out")
    with pytest.raises(Exception, match="exist"):
        build_index(tiny_config, tiny_embedder, source, tmp_path / "out")


def test_resume_skips_done_and_retries_failed(tmp_path, tiny_config, tiny_embedder):
    source = _image_folder(tmp_path / "in", 4)
    (source / "late.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"cut")
    first = build_index(tiny_config, tiny_embedder, source, tmp_path / "out")
    assert (first.indexed, first.failed) == (4, 1)
    Image.new("RGB", (40, 40), "green").save(source / "late.png")  # user fixes the file
    second = build_index(tiny_config, tiny_embedder, source, tmp_path / "out", mode="resume")
    assert (second.indexed, second.already_indexed, second.failed) == (1, 4, 0)
    assert (tmp_path / "out" / "errors.jsonl").read_text() == ""


def test_upsert_replaces_and_delete_removes(tmp_path, tiny_config, tiny_embedder):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"id": "a", "text": "red shoe"}\n{"id": "b", "text": "blue hat"}\n')
    out = tmp_path / "out"
    build_index(tiny_config, tiny_embedder, manifest, out)
    manifest.write_text('{"id": "a", "text": "green scarf", "color": "green"}\n')
    report = build_index(tiny_config, tiny_embedder, manifest, out, mode="upsert")
    assert report.indexed == 1
    scarf = tiny_embedder.embed_texts(["green scarf"])
    with Index.open(out, embedder=tiny_embedder) as index:
        assert len(index) == 2 and index.vector_count() == 2
        top = index.search_vectors(scarf, k=1)[0][0]
        assert top.id == "a" and top.score == pytest.approx(1.0, abs=1e-5)
        assert top.metadata == {"color": "green"}
        assert index.delete(["b", "never-there"]) == 1
        index.commit()
    with Index.open(out, embedder=tiny_embedder) as index:
        assert index.ids() == {"a"}


def test_resume_with_another_model_is_refused(tmp_path, tiny_config, tiny_embedder):
    from indexers.embedders import create_embedder
    from indexers.embedders.tiny import build_tiny_clip

    source = _image_folder(tmp_path / "in", 2)
    build_index(tiny_config, tiny_embedder, source, tmp_path / "out")
    other_dir = build_tiny_clip(tmp_path / "other-clip", seed=7)
    other = tiny_config.model_copy(
        update={
            "embedder": tiny_config.embedder.model_copy(update={"model": f"local-dir:{other_dir}"})
        }
    )
    with pytest.raises(Exception, match="open_clip:local-dir@") as excinfo:
        build_index(other, create_embedder(other.embedder), source, tmp_path / "out", mode="resume")
    assert tiny_embedder.model_id in str(excinfo.value)


# --- kill and resume -------------------------------------------------------------------


def _stored_asset_count(out: Path) -> int:
    db = out / "meta.sqlite"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.05) as conn:
            return conn.execute("SELECT COUNT(*) FROM assets").fetchone()[0]
    except sqlite3.Error:
        return 0


def _build_command(source: Path, out: Path, clip_dir: Path, resume: bool) -> list[str]:
    command = [sys.executable, "-m", "pipeline", "index", "build", "--input", str(source),
               "--out", str(out), "--set", f"embedder.model=local-dir:{clip_dir}",
               "--set", "embedder.pretrained=", "--set", "build.checkpoint_every=3",
               "--set", "embedder.batch_size=4"]  # fmt: skip
    return command + (["--resume"] if resume else [])


def _run_build(command: list[str]) -> None:
    done = subprocess.run(command, env=_subprocess_env(), capture_output=True, check=False)
    assert done.returncode == 0, done.stderr.decode()[-2000:]


def _subprocess_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def _kill_mid_build(command: list[str], out: Path, at_least: int, total: int) -> int:
    """Starts a build and SIGKILLs it once ``at_least`` assets are committed."""
    log = out.with_name(f"{out.name}.stderr")
    with log.open("ab") as stderr:  # a file, not a pipe: a full pipe would stall the build
        process = subprocess.Popen(
            command, env=_subprocess_env(), stdout=subprocess.DEVNULL, stderr=stderr
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if _stored_asset_count(out) >= at_least:
                os.kill(process.pid, signal.SIGKILL)
                break
            time.sleep(0.005)
        process.wait()
    stored = _stored_asset_count(out)
    assert process.returncode == -signal.SIGKILL, log.read_text()[-2000:]
    assert 0 < stored < total, f"kill landed outside the build ({stored}/{total})"
    return stored


def _contents(out: Path, embedder) -> tuple[set[str], int, list]:
    with Index.open(out, embedder=embedder) as index:
        probe = embedder.embed_texts(["probe"])
        hits = [(h.id, round(h.score, 5)) for h in index.search_vectors(probe, k=len(index))[0]]
        return index.ids(), index.vector_count(), hits


def test_killed_build_resumes_to_the_same_index(tmp_path, tiny_clip_dir, tiny_embedder):
    total = 240
    source = _image_folder(tmp_path / "in", total, size=192)
    reference = tmp_path / "reference"
    _run_build(_build_command(source, reference, tiny_clip_dir, resume=False))

    out = tmp_path / "killed"
    first = _kill_mid_build(_build_command(source, out, tiny_clip_dir, False), out, 10, total)
    _kill_mid_build(_build_command(source, out, tiny_clip_dir, True), out, first + 10, total)
    _run_build(_build_command(source, out, tiny_clip_dir, resume=True))

    ids, vectors, hits = _contents(out, tiny_embedder)
    ref_ids, ref_vectors, ref_hits = _contents(reference, tiny_embedder)
    assert ids == ref_ids and len(ids) == total
    assert vectors == ref_vectors == total  # one vector per image: none missing, none twice
    assert hits == ref_hits
    report = json.loads((out / "build_report.json").read_text())
    assert report["already_indexed"] + report["indexed"] == total
