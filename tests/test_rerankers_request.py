"""Rerank request files: parsing, path resolution, clear errors, and running one."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from pipeline.schema import Query
from rerankers.config import ClipRerankerConfig
from rerankers.registry import create_reranker
from rerankers.request import RequestError, load_request, parse_request, run_request
from tests.rerankers_support import EXAMPLE_MEDIA


def write(folder: Path, payload: object, name: str = "request.json") -> Path:
    path = folder / name
    path.write_text(json.dumps(payload), encoding="utf-8")
    return path


SEED_STYLE = {
    "instruction": "Retrieve images or text relevant to the user's query.",
    "query": {"text": "A rocket lifting off."},
    "documents": [
        {"text": "A model rocket kit with launch pad."},
        {"image": "media/rocket.jpg"},
        {"text": "A cat poster.", "image": "media/cat.jpg"},
        {"video": "media/launch_clip.mp4", "fps": 2.0},
        {"video": ["media/cat.jpg", "media/coffee.jpg"]},
    ],
    "fps": 1.0,
    "max_frames": 8,
}


def test_relative_paths_resolve_against_the_request_folder(tmp_path):
    folder = tmp_path / "requests"
    folder.mkdir()
    request = load_request(write(folder, SEED_STYLE))
    documents = request.document_contents()
    assert documents[1].image == folder / "media" / "rocket.jpg"
    assert documents[3].video == folder / "media" / "launch_clip.mp4"
    assert documents[3].fps == 2.0
    assert documents[4].video == [folder / "media" / "cat.jpg", folder / "media" / "coffee.jpg"]
    assert isinstance(request.query_content(), Query)
    assert (request.instruction, request.fps, request.max_frames) == (
        SEED_STYLE["instruction"],
        1.0,
        8,
    )


def test_absolute_paths_are_kept(tmp_path):
    payload = {"query": {"text": "q"}, "documents": [{"image": str(EXAMPLE_MEDIA / "cat.jpg")}]}
    request = load_request(write(tmp_path, payload))
    assert request.document_contents()[0].image == EXAMPLE_MEDIA / "cat.jpg"


@pytest.mark.parametrize(
    ("payload", "named"),
    [
        ({"query": {"text": "q"}, "documents": [{"imgae": "a.jpg"}]}, "documents.0.imgae"),
        ({"query": {"text": "q"}, "documents": [], "fps": 0}, "fps"),
        ({"query": {"text": "q"}, "documents": [{"video": []}]}, "documents.0.video"),
        ({"query": {"text": "q"}, "documents": [{"text": "d"}], "top_k": 0}, "top_k"),
        ({"query": {"image": "https://example.com/a.jpg"}, "documents": []}, "URLs"),
        ({"query": {"text": "q"}}, "documents"),
        ({"documents": [{"text": "d"}]}, "query"),
        ([{"text": "q"}], "JSON object"),
    ],
)
def test_bad_requests_name_the_file_and_the_field(tmp_path, payload, named):
    path = write(tmp_path, payload)
    with pytest.raises(RequestError) as info:
        load_request(path)
    assert str(path) in str(info.value)
    assert named in str(info.value)


def test_unreadable_request_files_are_clear_errors(tmp_path):
    with pytest.raises(RequestError, match="request file not found"):
        load_request(tmp_path / "absent.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"query": {"text": "q"},\n "documents": [}', encoding="utf-8")
    with pytest.raises(RequestError, match=r"broken\.json: not valid JSON \(line 2"):
        load_request(broken)
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(RequestError, match=r"binary\.json: cannot read"):
        load_request(binary)


def test_parse_request_takes_an_already_parsed_body(tmp_path):
    request = parse_request(
        {"query": {"text": "q"}, "documents": [{"image": "cat.jpg"}]}, base_dir=tmp_path
    )
    assert request.document_contents()[0].image == tmp_path / "cat.jpg"


@pytest.fixture(scope="module")
def clip_reranker(tiny_config, tiny_embedder):
    return create_reranker(
        ClipRerankerConfig(embedder=tiny_config.embedder), embedder=tiny_embedder
    )


def test_run_request_scores_in_order_ranks_and_reports_failures(tmp_path, clip_reranker):
    payload = {
        "query": {"text": "a rocket lifting off"},
        "documents": [
            {"text": "a model rocket kit"},
            {"image": str(EXAMPLE_MEDIA / "rocket.jpg")},
            {"image": "missing.jpg"},
            {"text": "a cat poster", "image": str(EXAMPLE_MEDIA / "cat.jpg")},
            {"video": str(EXAMPLE_MEDIA / "launch_clip.mp4")},
        ],
        "fps": 0.5,
        "max_frames": 3,
        "top_k": 3,
    }
    request = load_request(write(tmp_path, payload))
    response = run_request(clip_reranker, request)

    expected = clip_reranker.score(
        request.query_content(), request.document_contents(), fps=0.5, max_frames=3
    )
    assert response.scores == pytest.approx(expected, nan_ok=True)
    assert [f.index for f in response.failures] == [2]
    assert "missing.jpg" in response.failures[0].reason
    assert len(response.ranking) == 3
    best_first = sorted((i for i in range(5) if i != 2), key=lambda i: (-response.scores[i], i))[:3]
    assert [r.index for r in response.ranking] == best_first
    assert response.ranking[0].document == request.documents[best_first[0]]


def test_response_json_writes_failed_scores_as_null(tmp_path, clip_reranker):
    payload = {"query": {"text": "q"}, "documents": [{"image": "gone.jpg"}, {"text": "d"}]}
    response = run_request(clip_reranker, load_request(write(tmp_path, payload)))
    assert math.isnan(response.scores[0])
    data = json.loads(response.model_dump_json())
    assert data["scores"][0] is None and isinstance(data["scores"][1], float)
    assert data["ranking"][-1]["index"] == 0 and data["ranking"][-1]["score"] is None
    assert data["ranking"][-1]["error"]
