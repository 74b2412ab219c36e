"""The text benchmark's protocol, offline: its collections (BEIR and captions), the
cross-validated fusion (a fold is never fused with a setting chosen on its own
judgements), the fusion study's choice rule, and a whole run on tiny collections."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "text_kb.py"
CAPTIONS_HEADER = "image,caption\n"


@pytest.fixture(scope="module")
def text_kb():
    spec = importlib.util.spec_from_file_location("text_kb_benchmark", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


@pytest.fixture(scope="module")
def collections():
    from benchmarks import text_collections

    return text_collections


# -- collections ----------------------------------------------------------------------------


def write_captions(folder: Path, captions: dict[str, list[str]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = [f'{image},"{text}"' for image, texts in captions.items() for text in texts]
    (folder / "captions.txt").write_text(CAPTIONS_HEADER + "\n".join(rows) + "\n")
    return folder


def test_captions_become_paraphrase_retrieval(collections, tmp_path):
    folder = write_captions(
        tmp_path / "caps",
        {
            "b.jpg": ["A dog runs , fast .", "A brown dog running", "Dog on grass"],
            "a.jpg": ["Two kids play", "Children playing", "Kids at a park"],
        },
    )
    collection = collections.load_collection(folder)
    assert (collection.name, collection.kind, collection.recall_grade) == ("caps", "captions", 1)
    # The first caption in file order is the query; file order, not sorted order.
    assert collection.queries == {"b.jpg": "A dog runs , fast .", "a.jpg": "Two kids play"}
    assert collection.documents == {
        "b.jpg#1": "A brown dog running",
        "b.jpg#2": "Dog on grass",
        "a.jpg#1": "Children playing",
        "a.jpg#2": "Kids at a park",
    }
    assert collection.qrels == {
        "b.jpg": {"b.jpg#1": 1, "b.jpg#2": 1},
        "a.jpg": {"a.jpg#1": 1, "a.jpg#2": 1},
    }


def test_captions_need_two_per_image_and_the_header(collections, tmp_path):
    lonely = write_captions(tmp_path / "lonely", {"a.jpg": ["x", "y"], "b.jpg": ["z"]})
    with pytest.raises(ValueError, match=r"b\.jpg has fewer than two captions"):
        collections.load_collection(lonely)
    headless = tmp_path / "headless"
    headless.mkdir()
    (headless / "captions.txt").write_text("a.jpg,x\na.jpg,y\n")
    with pytest.raises(ValueError, match="header"):
        collections.load_collection(headless)
    with pytest.raises(FileNotFoundError, match=r"neither captions\.txt nor a BEIR layout"):
        collections.load_collection(tmp_path)


def test_beir_recall_grade_follows_the_judgements(collections, tmp_path):
    graded = write_beir(tmp_path / "graded", ["d0", "d1"], ["q0"], "q0\td0\t2\nq0\td1\t1\n")
    binary = write_beir(tmp_path / "binary", ["d0", "d1"], ["q0"], "q0\td0\t1\n")
    assert collections.load_collection(graded).recall_grade == 2  # TREC DL: 1 is "related"
    assert collections.load_collection(binary).recall_grade == 1
    loaded = collections.load_collection(graded)
    assert loaded.documents == {"d0": "passage d0", "d1": "passage d1"}
    assert loaded.qrels == {"q0": {"d0": 2, "d1": 1}}


# -- the study's rule -----------------------------------------------------------------------


def test_choice_takes_the_best_mean_among_those_never_below_the_best_channel(text_kb):
    # Binary fractions, so that equal means are exactly equal.
    best_single = {"marco": 0.75, "caps": 0.5}
    ndcg = {
        "loses on caps": {"marco": 1.0, "caps": 0.4375},  # best mean, but below on caps
        "steady": {"marco": 0.8125, "caps": 0.5625},
        "ties the channels": {"marco": 0.75, "caps": 0.5},  # equal is not below
        "also steady": {"marco": 0.875, "caps": 0.5},  # the same mean, listed later
    }
    assert text_kb.choose(ndcg, best_single) == "steady"
    del ndcg["steady"], ndcg["also steady"]
    assert text_kb.choose(ndcg, best_single) == "ties the channels"
    del ndcg["ties the channels"]
    assert text_kb.choose(ndcg, best_single) is None


def test_the_candidates_were_fixed_and_name_the_old_default(text_kb):
    names = [candidate.name for candidate in text_kb.CANDIDATES]
    assert len(names) == len(set(names)) == 22
    assert {candidate.depth for candidate in text_kb.CANDIDATES} == {100, 1000}
    shipped = next(c for c in text_kb.CANDIDATES if c.name == text_kb.SHIPPED)
    assert (shipped.config.normalization, shipped.config.weights, shipped.depth) == (
        "minmax",
        {"bm25": 0.25, "text_dense": 0.75},
        1000,
    )


def test_kb_qa_ships_a_studied_candidate(text_kb):
    # configs/kb-qa.yaml cites the study's numbers for its text fusion: it must be one of
    # the candidates the study measured (fusion settings and recall.top_k alike).
    assert text_kb.kb_qa_candidate() in {candidate.name for candidate in text_kb.CANDIDATES}
    weighted = text_kb.convex("minmax", 0.25)
    assert text_kb.same_fusion(weighted, weighted.model_copy(update={"k": 5}))  # k unused
    assert not text_kb.same_fusion(weighted, text_kb.convex("z", 0.25))
    assert not text_kb.same_fusion(weighted, text_kb.convex("minmax", 0.3))


def test_fusion_depth_cuts_each_channel_before_fusing(text_kb):
    hit = text_kb.FusionHit
    lists = {"q": {"bm25": [hit(id=f"b{i}", score=10.0 - i) for i in range(5)],
                   "text_dense": [hit(id="deep", score=1.0)]}}  # fmt: skip
    rrf = text_kb.FusionConfig(method="rrf", k=60)
    assert set(text_kb.fuse(lists, rrf, ["q"], depth=2)["q"]) == {"b0", "b1", "deep"}
    assert len(text_kb.fuse(lists, rrf, ["q"], depth=1000)["q"]) == 6


# -- cross-validation -----------------------------------------------------------------------


def test_folds_split_every_query_once_and_repeat_per_seed(text_kb):
    qids = [f"q{i}" for i in range(23)]
    folds = text_kb.folds_of(qids, 5, seed=3)
    assert sorted(q for fold in folds for q in fold) == sorted(qids)
    assert sorted(len(fold) for fold in folds) == [4, 4, 5, 5, 5]
    assert folds == text_kb.folds_of(list(reversed(qids)), 5, seed=3)
    assert folds != text_kb.folds_of(qids, 5, seed=4)


def test_each_fold_takes_the_setting_best_on_the_other_folds(text_kb):
    # "a" is perfect on fold 1 and useless on fold 2, "b" the reverse: a fold that peeked
    # at its own judgements would score 1.0; honest cross-validation scores 0.
    ndcg = {
        "a": {"q1": 1.0, "q2": 1.0, "q3": 0.0, "q4": 0.0},
        "b": {"q1": 0.0, "q2": 0.0, "q3": 1.0, "q4": 1.0},
    }
    candidates = {name: {q: {f"{name}-{q}": 1.0} for q in ndcg[name]} for name in ndcg}
    configs = {"a": text_kb.convex("minmax", 0.2), "b": text_kb.convex("z", 0.7)}
    run, folds = text_kb.cross_validated(
        candidates, ndcg.__getitem__, configs, [["q1", "q2"], ["q3", "q4"]]
    )
    assert run == {"q1": {"b-q1": 1.0}, "q2": {"b-q2": 1.0}, "q3": {"a-q3": 1.0},
                   "q4": {"a-q4": 1.0}}  # fmt: skip
    assert [fold.chosen for fold in folds] == [configs["b"], configs["a"]]
    assert [fold.train_ndcg for fold in folds] == [1.0, 1.0]


# -- a whole run ----------------------------------------------------------------------------


def write_beir(folder: Path, docs: list[str], queries: list[str], qrels: str) -> Path:
    folder.mkdir(parents=True)
    rows = [json.dumps({"_id": d, "title": "", "text": f"passage {d}"}) for d in docs]
    (folder / "corpus.jsonl").write_text("\n".join(rows) + "\n")
    (folder / "queries.jsonl").write_text(
        "\n".join(json.dumps({"_id": q, "text": f"query {q}"}) for q in queries) + "\n"
    )
    (folder / "qrels.tsv").write_text(qrels)
    return folder


def write_run(path: Path, orders: dict[str, list[str]], tag: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        f"{q} Q0 {d} {r} {10 - r * 0.5} {tag}"
        for q, order in orders.items()
        for r, d in enumerate(order, 1)
    ]
    path.write_text("\n".join(lines) + "\n")


def test_the_benchmark_studies_both_collections_and_writes_the_chosen_run(tmp_path):
    pytest.importorskip("ranx")
    out = tmp_path / "out"
    # BEIR: 6 queries, each with a grade-2 and a grade-1 passage. bm25 ranks both first;
    # text_dense puts another passage between them, one bm25 ranks last.
    docs = [f"d{i}" for i in range(12)]
    queries = [f"q{i}" for i in range(6)]
    beir = write_beir(
        tmp_path / "marco",
        docs,
        queries,
        "".join(
            f"{q}\t{docs[2 * i]}\t2\n{q}\t{docs[2 * i + 1]}\t1\n" for i, q in enumerate(queries)
        ),
    )
    bm25, dense = {}, {}
    for i, q in enumerate(queries):
        judged, others = docs[2 * i : 2 * i + 2], docs[: 2 * i] + docs[2 * i + 2 :]
        bm25[q] = judged + others[1:] + others[:1]
        dense[q] = [judged[0], others[0], judged[1], *others[1:]]
    write_run(out / "marco" / "bm25.trec", bm25, "bm25")
    write_run(out / "marco" / "text_dense.trec", dense, "text_dense")
    # Captions: 6 images of 3 captions. text_dense ranks each query's two paraphrases
    # first; bm25 puts another caption between them, one text_dense ranks last.
    images = [f"img{i}.jpg" for i in range(6)]
    captions = write_captions(
        tmp_path / "caps", {image: [f"{image} caption {n}" for n in range(3)] for image in images}
    )
    paraphrases = [f"{image}#{n}" for image in images for n in (1, 2)]
    bm25, dense = {}, {}
    for image in images:
        own = [p for p in paraphrases if p.startswith(f"{image}#")]
        rest = [p for p in paraphrases if p not in own]
        dense[image] = own + rest[1:] + rest[:1]
        bm25[image] = [own[0], rest[0], own[1], *rest[1:]]
    write_run(out / "caps" / "bm25.trec", bm25, "bm25")
    write_run(out / "caps" / "text_dense.trec", dense, "text_dense")

    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--data", str(beir), str(captions), "--out", str(out),
         "--reuse-runs", "--folds", "3"],
        capture_output=True, text=True, check=True, timeout=600,
    )  # fmt: skip
    printed = done.stdout
    assert "fusion sweep" not in printed  # progress goes to stderr

    sections = printed.split("\n== ")
    assert [section.split()[0] for section in sections[1:]] == ["marco", "caps", "study"]
    marco, caps, study = (table_of(section) for section in sections[1:])
    assert {"bm25", "text_dense", "rrf k=60 @1000", "dbsf 0.5/0.5 @100", "cv"} <= set(marco)
    assert marco["bm25"][0] == pytest.approx(1.0)  # the grade-2 passage first
    assert caps["text_dense"][:2] == [pytest.approx(1.0), pytest.approx(1.0)]  # R@100 at 1
    assert marco["text_dense"][0] < 1.0 and caps["bm25"][0] < 1.0
    assert "against the best single channel, bm25" in sections[1]
    assert "against the best single channel, text_dense" in sections[2]
    assert printed.count("  fold ") == 6
    # The study: every candidate, each collection's nDCG@10, and the rule's choice.
    assert len(study) == 2 + 22
    chosen = next(line for line in printed.splitlines() if "<- chosen" in line)
    name = chosen.split("  ")[0].strip()
    assert f"Chosen: {name}" in printed
    for collection, table in (("marco", marco), ("caps", caps)):
        fused = (out / collection / "fused.trec").read_text().splitlines()
        assert {line.split()[5] for line in fused} == {name.replace(" ", "_")}
        assert table[name][2] >= 0  # not below the best single channel


def table_of(section: str) -> dict[str, list[float]]:
    """A printed table's rows by system name (names may hold spaces; cv by its first word):
    the numbers that follow the name."""
    rows = {}
    for line in section.splitlines()[1:]:
        words = line.split()
        numbers = [i for i, word in enumerate(words) if is_number(word)]
        if not numbers or line.startswith(("  ", "p:", "rule", "bm25 k1")):
            continue
        name = " ".join(words[: numbers[0]])
        rows["cv" if name.startswith("cv") else name] = [
            float(word) for word in words[numbers[0] :] if is_number(word)
        ]
    return rows


def is_number(word: str) -> bool:
    try:
        float(word)
    except ValueError:
        return False
    return True
