"""Text retrieval collections for ``benchmarks/text_kb.py``, read from where they lie.

Two layouts, told apart by their files:

* BEIR (``corpus.jsonl``, ``queries.jsonl``, ``qrels.tsv`` with no header:
  ``qid docid grade``), such as the MS MARCO DL19 slice. A passage is ``title. text``.
* Captions (``captions.txt``: CSV ``image,caption``, several human captions per image),
  such as Flickr8k, turned into paraphrase retrieval at load time: each image's first
  caption (in file order) is a query, the image's other captions are its relevant
  documents (grade 1), and the corpus is every caption that is not a query. Nothing is
  written anywhere: the data stay where their licence keeps them.

Recall counts a document relevant from grade 2 where the judgements grade beyond 1 (the
TREC DL convention: grade 1 is "related"), from grade 1 otherwise.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

Qrels = dict[str, dict[str, int]]  # qid -> docid -> grade

BEIR_FILES = ("corpus.jsonl", "queries.jsonl", "qrels.tsv")
CAPTIONS_FILE = "captions.txt"


@dataclass(frozen=True)
class Collection:
    name: str
    documents: dict[str, str]  # docid -> text, in the collection's order
    queries: dict[str, str]  # qid -> text
    qrels: Qrels  # judged queries only
    recall_grade: int  # Recall@100 counts grades >= this one as relevant
    kind: str  # "BEIR" or "captions": how it was read, for the report


def load_collection(folder: Path) -> Collection:
    """The collection in ``folder``, by the files it holds."""
    if (folder / CAPTIONS_FILE).is_file():
        return load_captions(folder)
    missing = [name for name in BEIR_FILES if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{folder}: neither {CAPTIONS_FILE} nor a BEIR layout (lacks {', '.join(missing)})"
        )
    return load_beir(folder)


def load_beir(folder: Path) -> Collection:
    documents = {row["_id"]: passage(row) for row in read_jsonl(folder / "corpus.jsonl")}
    queries = {row["_id"]: row["text"] for row in read_jsonl(folder / "queries.jsonl")}
    qrels = {q: docs for q, docs in read_qrels(folder / "qrels.tsv").items() if q in queries}
    graded = any(grade >= 2 for docs in qrels.values() for grade in docs.values())
    return Collection(folder.name, documents, queries, qrels, 2 if graded else 1, "BEIR")


def load_captions(folder: Path) -> Collection:
    by_image = read_captions(folder / CAPTIONS_FILE)
    documents: dict[str, str] = {}
    queries: dict[str, str] = {}
    qrels: Qrels = {}
    for image, captions in by_image.items():
        if len(captions) < 2:
            raise ValueError(f"{folder / CAPTIONS_FILE}: {image} has fewer than two captions")
        queries[image] = captions[0]  # the first: a fixed choice, not a favourable one
        paraphrases = {f"{image}#{n}": text for n, text in enumerate(captions[1:], 1)}
        documents.update(paraphrases)
        qrels[image] = dict.fromkeys(paraphrases, 1)
    return Collection(folder.name, documents, queries, qrels, 1, "captions")


def read_captions(path: Path) -> dict[str, list[str]]:
    """Each image's captions in file order, images in the order they first appear."""
    by_image: dict[str, list[str]] = {}
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"image", "caption"} <= set(reader.fieldnames):
            raise ValueError(f"{path}: needs a header with the columns image and caption")
        for row in reader:
            by_image.setdefault(row["image"], []).append(row["caption"].strip())
    return by_image


def read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def read_qrels(path: Path) -> Qrels:
    qrels: Qrels = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            qid, docid, grade = line.split()
            qrels.setdefault(qid, {})[docid] = int(grade)
    return qrels


def passage(row: dict) -> str:
    title = (row.get("title") or "").strip()
    return f"{title}. {row['text']}" if title else row["text"]
