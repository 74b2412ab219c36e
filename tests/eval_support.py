"""A small judged collection for ``vlsearch eval`` tests: 24 text passages and 4 products
with photos (examples/media), 10 queries (one of them an image) with graded judgements,
on the tiny models. Rankings are meaningless: tests check behaviour and equalities."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
TOPICS = ["cat", "coffee", "rocket", "camera", "returns", "garden", "piano", "bicycle"]
PHOTOS = {"cat": "cat.jpg", "coffee": "coffee.jpg", "rocket": "rocket.jpg", "camera": "camera.jpg"}
# One configuration for every eval test: tiny models, BM25 beside CLIP, a small top_n.
CONFIG = {
    "profile": "tiny",
    "embedder": {"batch_size": 16},
    "build": {"workers": 1, "checkpoint_every": 16},
    "text_channels": [{"backend": "bm25"}],
    "recall": {"channels": ["clip_image", "clip_text", "bm25"]},
    "rerank": {"top_n": 5},
    "reranker": {"backend": "clip"},
}


def corpus_rows() -> list[dict[str, Any]]:
    rows = []
    for number, topic in enumerate(TOPICS):
        for part in range(3):
            text = f"{topic} note {part}: about the {topic}, item {number * 3 + part}"
            rows.append({"id": f"{topic}-{part}", "text": text, "topic": topic})
    for topic, photo in PHOTOS.items():
        rows.append({"id": f"photo-{topic}", "text": f"a photo of a {topic}", "image": photo})
    return rows


def write_collection(folder: Path) -> dict[str, Path]:
    """corpus.jsonl (with its photos), config.yaml, queries.jsonl and qrels.txt."""
    folder.mkdir(parents=True, exist_ok=True)
    for photo in PHOTOS.values():
        shutil.copy(EXAMPLES / "media" / photo, folder / photo)
    corpus = folder / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(row) + "\n" for row in corpus_rows()))
    config = folder / "config.yaml"
    config.write_text(json.dumps(CONFIG))  # JSON is YAML
    queries = folder / "queries.jsonl"
    lines = [json.dumps({"id": f"q-{t}", "text": f"tell me about the {t}"}) for t in TOPICS]
    lines.append(json.dumps({"_id": "q-photo", "image": "cat.jpg"}))
    lines.append(json.dumps({"id": "q-unjudged", "text": "nothing judged here"}))
    queries.write_text("\n".join(lines) + "\n")
    qrels = folder / "qrels.txt"
    judged = []
    for topic in TOPICS:
        judged += [f"q-{topic} 0 {topic}-{part} {grade}" for part, grade in enumerate((3, 1, 0))]
        judged.append(f"q-{topic} 0 {TOPICS[(TOPICS.index(topic) + 1) % 8]}-0 1")
        if topic in PHOTOS:
            judged.append(f"q-{topic} 0 photo-{topic} 2")
    judged += ["q-photo 0 photo-cat 3", "q-photo 0 cat-0 1"]
    qrels.write_text("\n".join(judged) + "\n")
    return {"corpus": corpus, "config": config, "queries": queries, "qrels": qrels}


def build_index(folder: Path) -> dict[str, Path]:
    """The collection in ``folder`` and its index (``folder/index``), built by the CLI."""
    from typer.testing import CliRunner

    from pipeline.cli import app

    files = write_collection(folder)
    out = folder / "index"
    argv = ["index", "build", "--input", str(files["corpus"]), "--out", str(out)]
    result = CliRunner().invoke(app, [*argv, "--config", str(files["config"])])
    assert result.exit_code == 0, result.output
    return {**files, "index": out}


def write_suite(path: Path, systems: dict[str, Any], config: Path, **settings: Any) -> Path:
    """A suite file (JSON, which is YAML); the first system is the baseline."""
    suite = {"config": str(config), "baseline": next(iter(systems)), "systems": systems}
    suite.update(settings)
    path.write_text(json.dumps(suite, indent=2))
    return path


def subprocess_env() -> dict[str, str]:
    paths = [str(REPO), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
