"""The vllm backend against a real HTTP server on 127.0.0.1 that answers vLLM's
/v1/rerank with our local Qwen3-VL backend: same inputs must give the same scores."""

from __future__ import annotations

import math
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from pipeline.schema import Content, Frame
from rerankers.config import Qwen3VLRerankerConfig, VllmRerankerConfig
from rerankers.qwen3_vl.prompt import DEFAULT_INSTRUCTION
from rerankers.qwen3_vl.reranker import Qwen3VLRerankerBackend
from rerankers.vllm import VllmReranker, VllmRerankerError
from tests.rerankers_support import (
    EXAMPLE_MEDIA,
    SMALL_VISUALS,
    FakeVllmServer,
    tiny_qwen_path,
)

CAT = EXAMPLE_MEDIA / "cat.jpg"
COFFEE = EXAMPLE_MEDIA / "coffee.jpg"
CLIP = EXAMPLE_MEDIA / "launch_clip.mp4"
QUERY = Content(text="a cat on a poster", image=COFFEE)


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Qwen3VLRerankerBackend:
    """One pair per forward, so the server's batches and ours compute alike, bit for bit."""
    folder = tiny_qwen_path(tmp_path_factory)
    return Qwen3VLRerankerBackend(
        Qwen3VLRerankerConfig(
            model=f"local-dir:{folder}", device="cpu", max_batch_size=1, **SMALL_VISUALS
        )
    )


@pytest.fixture
def server(local: Qwen3VLRerankerBackend, tmp_path: Path) -> Iterator[FakeVllmServer]:
    with FakeVllmServer(local, tmp_path) as running:
        yield running


def same_as(scores: list[float]):
    """The server scores its own batches: equal to the local scores up to the float
    rounding a different batch composition brings."""
    return pytest.approx(scores, abs=1e-6)


def client(server: FakeVllmServer, **settings) -> VllmReranker:
    settings = {"max_retries": 2, "backoff_s": 0.01, "timeout_s": 30.0} | settings
    return VllmReranker(VllmRerankerConfig(url=server.url, model=server.model, **settings))


DOCUMENTS = [
    Content(text="a tabby cat poster"),
    Content(image=CAT),
    Content(text="an espresso cup", image=COFFEE),
    Content(image=Image.open(CAT).convert("L").resize((80, 60))),  # in memory, not a file
    Content(),  # an empty side is sent, and scored, as NULL
    Content(text="returns policy: unworn items can be returned within 30 days " * 6),
]


def test_scores_equal_the_local_backend(server, local):
    reranker = client(server, batch_size=2, max_concurrency=2)
    instruction = "Find the product the shopper describes."
    remote = reranker.score_report(QUERY, DOCUMENTS, instruction=instruction)
    expected = local.score_report(QUERY, DOCUMENTS, instruction=instruction)
    assert remote.failures == []
    assert remote.scores == same_as(expected.scores)
    assert len(server.payloads) == 3  # batches of two


def test_requests_follow_vllms_rerank_format(server):
    client(server).score(QUERY, DOCUMENTS[:3])
    (payload,) = server.payloads
    assert payload["model"] == server.model
    assert payload["chat_template_kwargs"] == {"instruction": DEFAULT_INSTRUCTION}
    assert payload["use_activation"] is True and payload["top_n"] == 3
    assert "mm_processor_kwargs" not in payload  # no video, nothing to sample
    query_parts = payload["query"]["content"]
    assert [p["type"] for p in query_parts] == ["image_url", "text"]
    assert query_parts[0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert query_parts[1] == {"type": "text", "text": QUERY.text}
    assert [[p["type"] for p in d["content"]] for d in payload["documents"]] == [
        ["text"],
        ["image_url"],
        ["image_url", "text"],
    ]


def test_videos_go_as_files_sampled_at_their_own_fps(server, local):
    documents = [
        Content(video=CLIP),
        Content(video=CLIP, fps=2.0),
        Content(text="a rocket launch", video=CLIP),
    ]
    remote = client(server).score_report(Content(text="a rocket"), documents, fps=0.5)
    expected = local.score_report(Content(text="a rocket"), documents, fps=0.5)
    assert remote.scores == same_as(expected.scores)
    sent = sorted((p["mm_processor_kwargs"]["fps"], len(p["documents"])) for p in server.payloads)
    assert sent == [(0.5, 2), (2.0, 1)]
    video_part = server.payloads[0]["documents"][0]["content"][0]
    assert video_part["video_url"]["url"].startswith("data:video/mp4;base64,")


def test_unreadable_documents_fail_alone(server, local, tmp_path):
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(CAT.read_bytes()[:300])
    not_a_video = tmp_path / "noise.mp4"
    not_a_video.write_bytes(bytes(range(256)) * 40)
    frames = [Frame(timestamp=0.0, image=Image.open(CAT).convert("RGB"))]
    documents = [
        Content(text="a tabby cat poster"),
        Content(image=truncated),  # refused here, before sending
        Content(video=not_a_video),  # sent; the server cannot decode it
        Content(image=tmp_path / "missing.png"),
        Content(video=frames),  # frame lists cannot travel
        Content(image=CAT),
    ]
    report = client(server, batch_size=6).score_report(QUERY, documents)
    reasons = {f.index: f.reason for f in report.failures}
    assert sorted(reasons) == [1, 2, 3, 4]
    assert "truncated.jpg" in reasons[1]
    assert reasons[2].startswith("rejected by the vLLM server: HTTP 400")
    assert "missing.png" in reasons[3]
    assert "frames" in reasons[4]
    assert all(math.isnan(report.scores[i]) for i in reasons)
    good = [documents[0], documents[5]]
    assert [report.scores[0], report.scores[5]] == same_as(local.score(QUERY, good))


def test_a_failing_server_is_retried(server, local):
    server.fail_next = 2
    scores = client(server, max_retries=2).score(QUERY, DOCUMENTS[:2])
    assert scores == same_as(local.score(QUERY, DOCUMENTS[:2]))


def test_retries_end_in_a_clear_error(server):
    server.fail_next = 10
    with pytest.raises(VllmRerankerError, match=r"gave up after 3 attempt.*HTTP 500: engine"):
        client(server, max_retries=2).score(QUERY, DOCUMENTS[:2])


def test_an_unreachable_server_is_a_clear_error():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = VllmRerankerConfig(url=f"http://127.0.0.1:{port}", max_retries=1, backoff_s=0.01)
    with pytest.raises(VllmRerankerError, match=rf"127.0.0.1:{port}/v1/rerank.*connection failed"):
        VllmReranker(config).score(QUERY, DOCUMENTS[:1])


def test_a_slow_server_times_out(server):
    server.delay_s = 1.0
    with pytest.raises(VllmRerankerError, match=r"no answer within timeout_s=0.2"):
        client(server, timeout_s=0.2, max_retries=0).score(QUERY, DOCUMENTS[:1])


def test_api_key_is_sent_and_a_refusal_is_explained(server, local):
    server.api_key = "s3cret"
    with pytest.raises(VllmRerankerError, match=r"HTTP 401.*api_key"):
        client(server).score(QUERY, DOCUMENTS[:1])
    expected = local.score(QUERY, DOCUMENTS[:1])
    assert client(server, api_key="s3cret").score(QUERY, DOCUMENTS[:1]) == same_as(expected)


def test_a_model_the_server_lacks_is_a_clear_error(server):
    reranker = VllmReranker(VllmRerankerConfig(url=server.url, model="other/model"))
    with pytest.raises(VllmRerankerError, match=r"does not exist.*'other/model'"):
        reranker.score(QUERY, DOCUMENTS[:1])


def test_an_unreadable_query_is_refused(server):
    with pytest.raises(ValueError, match=r"query cannot be used.*missing.jpg"):
        client(server).score(Content(image=EXAMPLE_MEDIA / "missing.jpg"), DOCUMENTS[:1])
