"""The reranker score cache: a pair is scored once across runs and suites, and anything
that could change its score (the reranker's settings, the request's, the content of a
media file under the same name) misses."""

from __future__ import annotations

import math
import shutil
from collections.abc import Sequence

import pytest

from pipeline.schema import Content
from rerankers.base import DocumentFailure, Reranker, RerankerBase, ScoreOptions, ScoreReport
from rerankers.preprocessing import ImagePreprocessing
from tests.eval_support import EXAMPLES, write_suite


class Counting(RerankerBase):
    """Scores from the content (so a wrong cache hit shows), counting every pair scored;
    a document whose text is "unreadable" fails."""

    def __init__(self) -> None:
        self.scored: list[Content] = []

    def _score(
        self, query: Content, documents: Sequence[Content], options: ScoreOptions
    ) -> ScoreReport:
        self.scored += documents
        scores, failures = [], []
        for index, document in enumerate(documents):
            if document.text == "unreadable":
                scores.append(math.nan)
                failures.append(DocumentFailure(index=index, reason="cannot read it"))
            else:
                scores.append(len(document.text or "") + len(query.text or "") / 100)
        return ScoreReport(scores=scores, failures=failures)


@pytest.fixture()
def cached(tmp_path):
    from pipeline.evaluation.cache import CachingReranker, ScoreCache

    inner = Counting()
    cache = ScoreCache(tmp_path / "scores.sqlite")
    yield inner, CachingReranker(inner, cache, "settings-1"), cache
    cache.close()


def test_a_pair_is_scored_once(cached):
    inner, reranker, cache = cached
    assert isinstance(reranker, Reranker)
    query = Content(text="query")
    documents = [Content(text="a"), Content(text="bb"), Content(text="unreadable")]
    first = reranker.score_report(query, documents)
    assert len(inner.scored) == 3 and len(cache) == 2  # the failure is not kept
    assert first.failures == [DocumentFailure(index=2, reason="cannot read it")]

    seen: list[tuple[int, int]] = []
    again = reranker.score_report(
        query,
        [documents[2], Content(text="ccc"), *documents[:2]],
        progress=lambda *a: seen.append(a),
    )
    assert [d.text for d in inner.scored[3:]] == ["unreadable", "ccc"]  # only the new pairs
    assert again.scores[1:] == [3.05, 1.05, 2.05] and math.isnan(again.scores[0])
    assert again.failures == [DocumentFailure(index=0, reason="cannot read it")]
    assert seen[-1] == (4, 4)
    assert (reranker.hits, reranker.misses) == (2, 5)
    assert reranker.rank(query, documents[:2])[0].document.text == "bb"  # rank follows


def test_anything_that_changes_a_score_misses(cached, tmp_path):
    from pipeline.evaluation.cache import CachingReranker

    inner, reranker, cache = cached
    photo = tmp_path / "photo.jpg"
    shutil.copy(EXAMPLES / "media" / "cat.jpg", photo)
    query, document = Content(text="query"), Content(text="doc", image=photo)
    reranker.score_report(query, [document])
    variants = [
        dict(instruction="another task"),
        dict(fps=2.0),
        dict(max_frames=8),
        dict(image=ImagePreprocessing(target_size=(64, 64), resize_mode="fit")),
    ]
    for options in variants:
        before = len(inner.scored)
        reranker.score_report(query, [document], **options)
        assert len(inner.scored) == before + 1, options
    before = len(inner.scored)
    reranker.score_report(Content(text="another query"), [document])
    CachingReranker(inner, cache, "settings-2").score_report(query, [document])
    assert len(inner.scored) == before + 2

    # The bytes decide, not the name: a file replaced in place misses; the same bytes
    # under another name hit.
    before = len(inner.scored)
    copy = tmp_path / "same.jpg"
    shutil.copy(photo, copy)
    reranker.score_report(query, [Content(text="doc", image=copy)])
    assert len(inner.scored) == before
    shutil.copy(EXAMPLES / "media" / "coffee.jpg", photo)
    reranker.score_report(query, [document])
    assert len(inner.scored) == before + 1
    # A file that cannot be read is scored (and fails there), never keyed.
    photo.unlink()
    reranker.score_report(query, [document])
    reranker.score_report(query, [document])
    assert len(inner.scored) == before + 3


def test_a_second_suite_scores_no_pair_again(tmp_path, eval_collection, monkeypatch):
    """Two evaluations sharing systems and the cache file: the second one's reranker
    scores nothing it already scored; a changed reranker setting scores again."""
    from pipeline.evaluation import run_eval
    from pipeline.model_pool import ModelPool
    from rerankers.clip import ClipReranker

    scored: list[int] = []
    real = ClipReranker._score

    def counting(self, query, documents, options):
        scored.append(len(documents))
        return real(self, query, documents, options)

    monkeypatch.setattr(ClipReranker, "_score", counting)
    config = eval_collection["config"]
    bm25 = {"recall.channels": ["bm25"], "rerank.enabled": False}
    first = write_suite(tmp_path / "a.yaml", {"bm25": bm25, "fused+clip": {}}, config)
    changed = {"reranker": {"backend": "clip", "media": {"max_frames": 8}}}
    second = write_suite(
        tmp_path / "b.yaml",
        {"fused+clip": {}, "fused+clip@3": {"rerank.top_n": 3}, "changed": changed},
        config,
    )
    args = (eval_collection["index"], eval_collection["queries"], eval_collection["qrels"])
    cache = tmp_path / "scores.sqlite"
    models = ModelPool()  # the models load once; the pairs are what is counted
    report = run_eval(*args, first, tmp_path / "out-a", cache=cache, models=models)
    assert sum(scored) == report.system("fused+clip").rerank_pairs == 44
    scored.clear()
    report = run_eval(*args, second, tmp_path / "out-b", cache=cache, models=models)
    assert report.system("fused+clip").cached_pairs == 44
    shared = report.system("fused+clip@3")
    assert shared.cached_pairs == shared.rerank_pairs == 3 * 8 + 3
    assert report.system("changed").cached_pairs == 0
    assert sum(scored) == 44  # the changed system's pairs, and no other
    scored.clear()
    run_eval(*args, first, tmp_path / "out-c", cache=None, models=models)  # --no-cache
    assert sum(scored) == 44


def test_the_default_cache_is_in_the_user_cache_folder(tmp_path, monkeypatch):
    from pipeline.evaluation.cache import default_cache_path

    monkeypatch.delenv("VLSEARCH_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_path() == tmp_path / "vlsearch" / "rerank-scores.sqlite"
