"""The cross_encoder backend against a direct transformers forward of the same tiny BERT."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from pipeline.schema import Content
from rerankers.config import CrossEncoderRerankerConfig
from rerankers.cross_encoder import NO_TEXT, CrossEncoderReranker
from tests.rerankers_support import EXAMPLE_MEDIA, tiny_cross_encoder_path

QUERY = Content(text="a dog runs on the beach")
DOCUMENTS = [
    Content(text="a dog runs across the green field chasing a red ball"),
    Content(image=EXAMPLE_MEDIA / "cat.jpg"),
    Content(text="the capital of france is paris " * 40),  # longer than max_length
    Content(text="a black cat sleeps", image=EXAMPLE_MEDIA / "cat.jpg"),
    Content(text="how many legs does a spider have?"),
]


@pytest.fixture(scope="session")
def tiny_cross_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_cross_encoder_path(tmp_path_factory)


@pytest.fixture(scope="module")
def reranker(tiny_cross_encoder_dir: Path) -> CrossEncoderReranker:
    config = CrossEncoderRerankerConfig(
        model=f"local-dir:{tiny_cross_encoder_dir}", device="cpu", batch_size=2, max_length=64
    )
    return CrossEncoderReranker(config)


def reference_scores(folder: Path, query: str, texts: list[str], max_length: int) -> list[float]:
    """One pair at a time, straight through transformers: sigmoid of the single logit."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    scores = []
    with torch.inference_mode():
        for text in texts:
            inputs = tokenizer(
                query, text, truncation=True, max_length=max_length, return_tensors="pt"
            )
            scores.append(torch.sigmoid(model(**inputs).logits[0, 0]).item())
    return scores


def test_scores_match_a_direct_transformers_forward(reranker, tiny_cross_encoder_dir):
    report = reranker.score_report(QUERY, DOCUMENTS)
    scored = [i for i, d in enumerate(DOCUMENTS) if d.text is not None]
    expected = reference_scores(
        tiny_cross_encoder_dir, QUERY.text, [DOCUMENTS[i].text for i in scored], max_length=64
    )
    assert [report.scores[i] for i in scored] == pytest.approx(expected, abs=1e-5)
    assert all(0.0 <= report.scores[i] <= 1.0 for i in scored)
    # Random weights still separate different texts: the scores are not one constant.
    assert len({round(report.scores[i], 4) for i in scored}) > 1


def test_a_document_without_text_fails_alone_with_its_reason(reranker):
    report = reranker.score_report(QUERY, DOCUMENTS)
    assert [(f.index, f.reason) for f in report.failures] == [(1, NO_TEXT)]
    assert math.isnan(report.scores[1])
    ranked = reranker.rank(QUERY, DOCUMENTS)
    assert ranked[-1].index == 1 and ranked[-1].error == NO_TEXT


def test_a_query_without_text_is_refused_clearly(reranker):
    with pytest.raises(ValueError, match="needs a text query"):
        reranker.score_report(Content(image=EXAMPLE_MEDIA / "cat.jpg"), DOCUMENTS)


def test_loads_on_first_score_and_unloads(tiny_cross_encoder_dir):
    config = CrossEncoderRerankerConfig(model=str(tiny_cross_encoder_dir), device="cpu")
    reranker = CrossEncoderReranker(config)
    assert not reranker.loaded
    assert reranker.score(QUERY, []) == []
    assert not reranker.loaded  # nothing to score, nothing loaded
    first = reranker.score(QUERY, DOCUMENTS[:1])
    assert reranker.loaded
    reranker.unload()
    assert not reranker.loaded
    assert reranker.score(QUERY, DOCUMENTS[:1]) == first
