"""The REST API as its clients see it, on the tiny offline models (random weights:
rankings are meaningless, so these tests check what is answered, never who wins)."""

from __future__ import annotations

import base64
import json
import threading
from pathlib import Path

import pytest

from pipeline.schema import Query
from tests.api_support import copy_index, served, tiny_pipeline
from tests.media_factory import make_bad_files, make_png_bomb

REPO = Path(__file__).resolve().parents[1]
MEDIA = REPO / "examples" / "media"
CAT = MEDIA / "cat.jpg"
CLIP = MEDIA / "launch_clip.mp4"


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


@pytest.fixture(scope="module")
def client(tiny_examples_index):
    with served({"shop": tiny_examples_index}) as client:
        yield client


@pytest.fixture
def writable(tiny_examples_index, tmp_path):
    return copy_index(tiny_examples_index, tmp_path)


# -- search ----------------------------------------------------------------------------


def test_search_answers_what_the_pipeline_answers(client, tiny_examples_index):
    body = {"query": {"text": "a poster of a cat"}, "top_k": 4, "rerank": True}
    response = client.post("/v1/indexes/shop/search", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    expected = tiny_pipeline().search(tiny_examples_index, Query(text="a poster of a cat"), 4)
    assert [r["id"] for r in answer["results"]] == [r.id for r in expected]
    for got, want in zip(answer["results"], expected, strict=True):
        assert got["score"] == pytest.approx(want.score, abs=1e-6)
        assert got["rerank"]["rank"] == want.rerank.rank
        assert set(got["recall"]) == set(want.recall)
        if got["id"] != "faq-returns":  # the one asset of text alone
            assert got["media_url"].startswith(f"/v1/indexes/shop/assets/{got['id']}/media")
    timings = answer["timings"]
    assert timings["rerank_s"] > 0 and timings["total_s"] >= timings["rerank_s"]


@pytest.mark.parametrize("form", ["base64", "data-uri", "multipart"])
def test_an_image_query_in_any_form_is_the_same_query(client, tiny_examples_index, form):
    if form == "multipart":
        with CAT.open("rb") as image:
            response = client.post(
                "/v1/indexes/shop/search",
                files={"image": ("anything.bin", image, "text/plain")},  # the type is ignored
                data={"top_k": "3", "rerank": "false"},
            )
    else:
        image = b64(CAT) if form == "base64" else f"data:image/jpeg;base64,{b64(CAT)}"
        body = {"query": {"image": image}, "top_k": 3, "rerank": False}
        response = client.post("/v1/indexes/shop/search", json=body)
    assert response.status_code == 200, response.text
    expected = tiny_pipeline().search(tiny_examples_index, Query(image=CAT), 3, rerank=False)
    assert [r["id"] for r in response.json()["results"]] == [r.id for r in expected]


def test_a_video_query_and_its_best_moment(client):
    body = {"query": {"video": b64(CLIP)}, "top_k": 7, "rerank": False}
    response = client.post("/v1/indexes/shop/search", json=body)
    assert response.status_code == 200, response.text
    videos = [r for r in response.json()["results"] if r["modality"] == "video"]
    assert videos and all(r["best_timestamp"] is not None for r in videos)
    assert all("#t=" in r["media_url"] for r in videos)


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"query": {}}, 422, None),
        ({"query": {"text": "x"}, "top_k": 0}, 422, "top_k"),
        ({"query": {"text": "x"}, "top_k": 5000}, 422, "top_k"),
        ({"query": {"text": "x"}, "filter": "price <"}, 422, "filter"),
        ({"query": {"text": "x"}, "surprise": 1}, 422, "surprise"),
        ({"query": {"image": b64(REPO / "README.md")}}, 422, "query.image"),
        ({"query": {"video": b64(CAT)}}, 422, "query.video"),
        ({"query": {"image": "/etc/passwd"}}, 403, "query.image"),
        ({"query": {"image": "file:///etc/passwd"}}, 403, "query.image"),
        ({"query": {"image": "http://127.0.0.1:1/x.jpg"}}, 403, "query.image"),
    ],
)
def test_bad_searches_are_refused_naming_the_field(client, body, status, field):
    response = client.post("/v1/indexes/shop/search", json=body)
    assert response.status_code == status, response.text
    answer = response.json()
    assert answer["detail"]
    if field is not None:
        assert answer["field"] == field


def test_unknown_index_bad_json_and_other_bodies(client):
    missing = client.post("/v1/indexes/nope/search", json={"query": {"text": "x"}})
    assert missing.status_code == 404 and "shop" in missing.json()["detail"]
    broken = client.post(
        "/v1/indexes/shop/search", content=b"{", headers={"content-type": "application/json"}
    )
    assert broken.status_code == 422 and "JSON" in broken.json()["detail"]
    xml = client.post(
        "/v1/indexes/shop/search", content=b"<q/>", headers={"content-type": "text/xml"}
    )
    assert xml.status_code == 415


# -- rerank ----------------------------------------------------------------------------


def test_rerank_scores_are_the_pipelines_and_unreadable_documents_rank_last(client, tmp_path):
    bad = make_bad_files(tmp_path / "bad")
    documents = [
        "a tabby cat poster",
        {"image": b64(CAT)},
        {"image": b64(bad["truncated.jpg"])},
        {"text": "a cup", "image": b64(MEDIA / "coffee.jpg")},
    ]
    body = {"model": "whatever", "query": "a cat", "documents": documents, "top_n": 4}
    response = client.post("/v1/rerank", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    from rerankers.request import parse_request

    request = parse_request(
        {
            "query": {"text": "a cat"},
            "documents": [
                {"text": "a tabby cat poster"},
                {"image": str(CAT)},
                {"text": "a cup", "image": str(MEDIA / "coffee.jpg")},
            ],
        }
    )
    expected = tiny_pipeline().rerank(request).scores
    by_index = {r["index"]: r for r in answer["results"]}
    for got_index, want in zip((0, 1, 3), expected, strict=True):
        assert by_index[got_index]["relevance_score"] == pytest.approx(want, abs=1e-6)
    assert answer["results"][-1]["index"] == 2
    assert answer["results"][-1]["relevance_score"] is None
    assert answer["results"][-1]["error"]
    assert answer["results"][0]["document"]
    assert answer["usage"]["total_tokens"] > 0


def test_rerank_limits(client):
    many = {"query": "q", "documents": ["d"] * 101}
    assert client.post("/v1/rerank", json=many).status_code == 413
    top = {"query": "q", "documents": ["d"], "top_n": 5000}
    assert client.post("/v1/rerank", json=top).json()["limit"] == "serve.max_top_k"
    text_only = {"query": "q", "documents": ["a", "b"], "return_documents": False}
    assert all(
        r["document"] is None for r in client.post("/v1/rerank", json=text_only).json()["results"]
    )


def test_server_paths_only_under_media_roots(tiny_examples_index, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "cat.jpg").write_bytes(CAT.read_bytes())
    (root / "escape.jpg").symlink_to(CAT)  # inside the root, leading out of it
    serve = {"media_roots": [str(root)]}
    with served({"shop": tiny_examples_index}, serve) as client:

        def rerank(path: str) -> int:
            body = {"query": "q", "documents": [{"image": path}]}
            return client.post("/v1/rerank", json=body).status_code

        assert rerank(str(root / "cat.jpg")) == 200
        assert rerank(str(root / "escape.jpg")) == 403
        assert rerank(str(root / ".." / "root" / ".." / "x.jpg")) == 403
        assert rerank("/etc/passwd") == 403


# -- limits ----------------------------------------------------------------------------


def test_media_limits_name_the_setting(tiny_examples_index, tmp_path):
    bomb = make_png_bomb(tmp_path / "bomb.png", 4000)
    serve = {"max_upload_bytes": 200_000, "max_video_seconds": 1.0, "max_video_frames": 2}
    with served({"shop": tiny_examples_index}, serve, media={"max_image_pixels": 1_000_000}) as c:

        def limit(query: dict) -> tuple[int, str | None]:
            answer = c.post("/v1/indexes/shop/search", json={"query": query, "rerank": False})
            return answer.status_code, answer.json().get("limit")

        assert limit({"image": b64(bomb)}) == (413, "media.max_image_pixels")
        assert limit({"video": b64(CLIP)}) == (413, "serve.max_video_seconds")
        assert limit({"video": [b64(CAT)] * 3}) == (413, "serve.max_video_frames")
        big = base64.b64encode(b"\xff\xd8" + bytes(300_000)).decode()
        assert limit({"image": big}) == (413, "serve.max_upload_bytes")


def test_body_size_is_capped_with_or_without_content_length(tiny_examples_index):
    with served({"shop": tiny_examples_index}, {"max_body_bytes": 10_000}) as client:
        body = json.dumps({"query": {"text": "x" * 20_000}}).encode()
        declared = client.post(
            "/v1/indexes/shop/search", content=body, headers={"content-type": "application/json"}
        )
        assert declared.status_code == 413
        assert declared.json()["limit"] == "serve.max_body_bytes"

        def chunks():
            yield body[:5000]
            yield body[5000:]

        streamed = client.post(
            "/v1/indexes/shop/search",
            content=chunks(),
            headers={"content-type": "application/json"},
        )
        assert streamed.status_code == 413


# -- tokens ----------------------------------------------------------------------------


def test_tokens_guard_every_v1_route(tiny_examples_index, tmp_path):
    (tmp_path / "api").write_text("reader-secret\n")
    (tmp_path / "admin").write_text("admin-secret")
    serve = {"token_file": str(tmp_path / "api"), "admin_token_file": str(tmp_path / "admin")}
    reader = {"Authorization": "Bearer reader-secret"}
    admin = {"Authorization": "Bearer admin-secret"}
    search = {"query": {"text": "x"}, "rerank": False}
    with served({"shop": copy_index(tiny_examples_index, tmp_path)}, serve) as client:
        assert client.get("/healthz").status_code == 200  # probes need no token
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "reader-secret"}):
            refused = client.post("/v1/indexes/shop/search", json=search, headers=headers)
            assert refused.status_code == 401
            assert refused.headers["www-authenticate"] == "Bearer"
        assert client.get("/v1/indexes", headers=reader).status_code == 200
        assert (
            client.post("/v1/indexes/shop/search", json=search, headers=reader).status_code == 200
        )
        assert (
            client.post(
                "/v2/rerank", json={"model": "m", "query": "q", "documents": ["d"]}
            ).status_code
            == 401
        )
        write = {"assets": [{"id": "n1", "text": "new"}]}
        assert client.post("/v1/indexes/shop/assets", json=write, headers=reader).status_code == 401
        assert client.post("/v1/models/reranker/load", headers=reader).status_code == 401
        assert client.post("/v1/indexes/shop/assets", json=write, headers=admin).status_code == 200
        assert client.get("/v1/indexes", headers=admin).status_code == 200  # admin reads too


def test_open_address_without_a_token_warns(caplog, tiny_examples_index, monkeypatch):
    import uvicorn

    from pipeline.api import server

    monkeypatch.setattr(uvicorn.Server, "run", lambda self: None)  # bind nothing
    pipeline = tiny_pipeline({"host": "0.0.0.0"})
    with caplog.at_level("WARNING"):
        server.serve(pipeline, {"shop": tiny_examples_index})
    assert "no token" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        server.serve(tiny_pipeline(), {"shop": tiny_examples_index})
    assert "no token" not in caplog.text


# -- upkeep ----------------------------------------------------------------------------


def test_upserts_are_searchable_at_once_and_bad_items_are_named(writable):
    with served({"shop": writable}) as client:
        before = client.get("/v1/indexes/shop").json()["assets"]
        assets = [
            {
                "id": "new-cat",
                "text": "a new cat print",
                "image": b64(CAT),
                "metadata": {"category": "new"},
            },
            {"id": "broken", "image": base64.b64encode(b"\x89PNG" + bytes(200)).decode()},
            {"id": "empty"},
        ]
        report = client.post("/v1/indexes/shop/assets", json={"assets": assets})
        assert report.status_code == 200, report.text
        answer = report.json()
        assert answer["indexed"] == 1
        assert {f["id"] for f in answer["failed"]} == {"broken", "empty"}
        assert client.get("/v1/indexes/shop").json()["assets"] == before + 1
        found = client.post(
            "/v1/indexes/shop/search",
            json={"query": {"text": "cat"}, "filter": 'category == "new"', "rerank": False},
        ).json()["results"]
        assert [r["id"] for r in found] == ["new-cat"]
        media = client.get(found[0]["media_url"])
        assert media.status_code == 200 and media.headers["content-type"] == "image/jpeg"
        assert media.content == CAT.read_bytes()
        assert client.delete("/v1/indexes/shop/assets/new-cat").json()["deleted"] == 1
        assert client.delete("/v1/indexes/shop/assets/new-cat").status_code == 404
        assert client.get("/v1/indexes/shop").json()["assets"] == before


def test_ids_with_slashes_have_media_thumbnails_and_can_be_deleted(writable):
    # A folder build names assets by relative path: reports/a.pdf#page=1.
    asset_id = "reports/q3/a.pdf#page=1"
    with served({"shop": writable}) as client:
        write = {"assets": [{"id": asset_id, "text": "page one", "image": b64(CAT)}]}
        assert client.post("/v1/indexes/shop/assets", json=write).status_code == 200
        found = client.post(
            "/v1/indexes/shop/search", json={"query": {"text": "page one"}, "rerank": False}
        ).json()["results"]
        result = next(r for r in found if r["id"] == asset_id)
        assert client.get(result["media_url"]).content == CAT.read_bytes()
        thumbnail = client.get(result["thumbnail_url"])
        assert thumbnail.status_code == 200 and thumbnail.headers["content-type"] == "image/jpeg"
        quoted = result["media_url"].removesuffix("/media")
        assert client.delete(quoted).json()["deleted"] == 1


def test_multipart_upsert_names_files_by_part(writable):
    with served({"shop": writable}) as client, CLIP.open("rb") as video:
        rows = [{"id": "clip-2", "text": "another launch", "video": "upload:clip"}]
        answer = client.post(
            "/v1/indexes/shop/assets",
            data={"assets": json.dumps(rows)},
            files={"clip": ("c.bin", video, "application/octet-stream")},
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["indexed"] == 1 and answer.json()["vectors"] > 2
        media = client.get("/v1/indexes/shop/assets/clip-2/media")
        assert media.headers["content-type"] == "video/mp4"
        missing = [{"id": "x", "image": "upload:nothing"}]
        answer = client.post("/v1/indexes/shop/assets", data={"assets": json.dumps(missing)})
        assert answer.json()["failed"][0]["id"] == "x"


def test_the_index_survives_a_restart_with_its_upserts(writable):
    with served({"shop": writable}) as client:
        write = {"assets": [{"id": "kept", "text": "kept after restart", "image": b64(CAT)}]}
        assert client.post("/v1/indexes/shop/assets", json=write).status_code == 200
    with served({"shop": writable}) as client:
        media = client.get("/v1/indexes/shop/assets/kept/media")
        assert media.status_code == 200 and media.content == CAT.read_bytes()


# -- media -----------------------------------------------------------------------------


def test_media_supports_ranges_and_serves_only_indexed_files(client):
    whole = client.get("/v1/indexes/shop/assets/clip-launch/media")
    assert whole.status_code == 200 and whole.headers["content-type"] == "video/mp4"
    assert whole.headers["accept-ranges"] == "bytes"
    part = client.get(
        "/v1/indexes/shop/assets/clip-launch/media", headers={"Range": "bytes=100-199"}
    )
    assert part.status_code == 206 and part.content == whole.content[100:200]
    for asset_id in ("..%2F..%2Fetc%2Fpasswd", "nope", "faq-returns"):
        assert client.get(f"/v1/indexes/shop/assets/{asset_id}/media").status_code == 404


def test_thumbnails_are_small_jpegs(client):
    import io

    from PIL import Image

    for asset_id, query in (("sku-cat-poster", ""), ("clip-launch", "?t=1.5")):
        answer = client.get(f"/v1/indexes/shop/assets/{asset_id}/thumbnail{query}")
        assert answer.status_code == 200 and answer.headers["content-type"] == "image/jpeg"
        image = Image.open(io.BytesIO(answer.content))
        assert image.format == "JPEG" and max(image.size) <= 256


# -- models, health, metrics -----------------------------------------------------------


def test_the_reranker_loads_lazily_and_on_demand(tiny_examples_index):
    with served({"shop": tiny_examples_index}) as client:
        assert client.get("/v1/models").json()["reranker"]["state"] == "not_loaded"
        loaded = client.post("/v1/models/reranker/load").json()["reranker"]
        assert loaded["state"] == "loaded" and loaded["device"] == "cpu"
        unloaded = client.post("/v1/models/reranker/unload").json()["reranker"]
        assert unloaded["state"] == "not_loaded"
        client.post("/v1/rerank", json={"query": "q", "documents": ["d"]})
        assert client.get("/v1/models").json()["reranker"]["state"] == "loaded"


def test_readiness_reports_an_index_that_cannot_open(tiny_examples_index, tmp_path):
    (tmp_path / "broken").mkdir()
    with served({"shop": tiny_examples_index}) as client:
        assert client.get("/readyz").status_code == 200
    from fastapi.testclient import TestClient

    from pipeline.api.app import create_app
    from pipeline.api.service import Service

    service = Service(tiny_pipeline(), {"shop": tiny_examples_index, "broken": tmp_path / "broken"})
    with TestClient(create_app(service)) as client:
        service._opened.wait(30)
        ready = client.get("/readyz")
        assert ready.status_code == 503 and "broken" in ready.json()["indexes"]["broken"]
        assert client.get("/healthz").status_code == 200
        body = {"query": {"text": "x"}, "rerank": False}
        assert client.post("/v1/indexes/shop/search", json=body).status_code == 200
        assert client.post("/v1/indexes/broken/search", json=body).status_code == 503


def test_metrics_count_routes_stages_and_models(client):
    client.post("/v1/indexes/shop/search", json={"query": {"text": "x"}, "rerank": False})
    text = client.get("/metrics").text
    assert (
        'vlsearch_requests_total{method="POST",route="/v1/indexes/{name}/search",status="200"}'
        in text
    )
    assert 'vlsearch_stage_seconds_count{stage="recall"}' in text
    assert 'vlsearch_queue_depth{stage="rerank"}' in text
    assert 'vlsearch_model_loaded{model="reranker"}' in text


# -- saturation ------------------------------------------------------------------------


class _HeldReranker:
    """The real reranker, held at the gate until the test lets it go."""

    def __init__(self, real):
        self.real = real
        self.release = threading.Event()
        self.entered = threading.Semaphore(0)

    def __getattr__(self, name):
        return getattr(self.real, name)

    def score_report(self, *args, **kwargs):
        self.entered.release()
        self.release.wait(30)
        return self.real.score_report(*args, **kwargs)


@pytest.fixture
def hold(monkeypatch):
    """Holds every reranker's scoring until the test releases it."""
    from pipeline.pipeline import Pipeline

    def hold(client) -> _HeldReranker:
        pipeline = client.app.state.service.pipeline
        pipeline.load_reranker()
        held = _HeldReranker(pipeline.reranker)
        monkeypatch.setattr(Pipeline, "reranker", property(lambda self: held))
        return held

    return hold


def test_a_full_stage_refuses_at_once_and_loses_nothing_accepted(tiny_examples_index, hold):
    import concurrent.futures
    import time

    serve = {"max_concurrency": 1, "max_queue": 1, "retry_after_s": 3}
    with served({"shop": tiny_examples_index}, serve) as client:
        held = hold(client)
        body = {"query": "q", "documents": ["d"]}
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            first = pool.submit(client.post, "/v1/rerank", json=body)
            assert held.entered.acquire(timeout=30)  # running
            second = pool.submit(client.post, "/v1/rerank", json=body)  # queued
            deadline = time.monotonic() + 10
            while client.app.state.service.gates["rerank"].in_stage < 2:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            started = time.perf_counter()
            refused = client.post("/v1/rerank", json=body)
            took = time.perf_counter() - started
            assert refused.status_code == 503 and refused.headers["retry-after"] == "3"
            assert took < 1.0
            held.release.set()
            assert first.result().status_code == 200 and second.result().status_code == 200
        assert (
            'vlsearch_rejected_requests_total{reason="saturated",stage="rerank"} 1.0'
            in client.get("/metrics").text
        )


def test_a_slow_request_gets_504_and_its_slot_comes_back(tiny_examples_index, hold):
    serve = {"max_concurrency": 1, "max_queue": 0, "request_timeout_s": 0.3}
    with served({"shop": tiny_examples_index}, serve) as client:
        held = hold(client)
        body = {"query": "q", "documents": ["d"]}
        slow = client.post("/v1/rerank", json=body)
        assert slow.status_code == 504 and slow.json()["limit"] == "serve.request_timeout_s"
        held.release.set()
        gate = client.app.state.service.gates["rerank"]
        import time

        deadline = time.monotonic() + 10
        while gate.in_stage:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert client.post("/v1/rerank", json=body).status_code == 200


def test_each_index_is_searched_with_its_own_config(tiny_examples_index, tmp_path):
    from fastapi.testclient import TestClient

    from pipeline.api.app import create_app
    from pipeline.api.service import Service
    from pipeline.config import load_config
    from pipeline.pipeline import Pipeline
    from tests.api_support import wait_ready

    kb_config = load_config(REPO / "configs" / "kb-qa.yaml", ["profile=tiny"])
    Pipeline(kb_config).build(MEDIA / "notes", tmp_path / "kb")
    indexes = {"shop": tiny_examples_index, "kb": tmp_path / "kb"}
    service = Service(tiny_pipeline(), indexes, {"kb": kb_config})
    with TestClient(create_app(service)) as client:
        wait_ready(client)
        body = {"query": {"text": "how long do I have to return an item"}, "rerank": False}
        kb = client.post("/v1/indexes/kb/search", json=body).json()["results"]
        shop = client.post("/v1/indexes/shop/search", json=body).json()["results"]
        assert any("bm25" in r["recall"] for r in kb)
        assert all(set(r["recall"]) <= {"clip_image", "clip_text"} for r in shop)
        models = client.get("/v1/models").json()
        assert len(models["rerankers"]) == 1 + (
            kb_config.reranker != tiny_pipeline().config.reranker
        )


def test_search_passes_the_instruction_to_the_reranker(client):
    def score(instruction: str | None) -> float:
        body = {"query": {"text": "a cat"}, "top_k": 1, "instruction": instruction}
        return client.post("/v1/indexes/shop/search", json=body).json()["results"][0]["score"]

    assert score(None) == score(None)
    assert score("Find product photos that match the query.") != score(None)


def test_urls_are_fetched_only_when_allowed(tiny_examples_index):
    import http.server

    class Photos(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            data = CAT.read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    photos = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Photos)
    threading.Thread(target=photos.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{photos.server_address[1]}/cat.jpg"
    body = {"query": {"image": url}, "top_k": 2, "rerank": False}
    try:
        with served({"shop": tiny_examples_index}, {"allow_urls": True}) as client:
            refused = client.post("/v1/indexes/shop/search", json=body)
            assert refused.status_code == 403 and "loopback" in refused.json()["detail"]
        allowed = {"allow_urls": True, "allow_hosts": ["127.0.0.1"]}
        with served({"shop": tiny_examples_index}, allowed) as client:
            fetched = client.post("/v1/indexes/shop/search", json=body)
            assert fetched.status_code == 200, fetched.text
            by_path = client.post(
                "/v1/indexes/shop/search",
                json={"query": {"image": b64(CAT)}, "top_k": 2, "rerank": False},
            )
            assert fetched.json()["results"] == by_path.json()["results"]
    finally:
        photos.shutdown()


def test_a_milvus_index_is_served_and_updated_in_place(tmp_path):
    pytest.importorskip("milvus_lite", reason="needs vlsearch[milvus-lite]")
    from pipeline.config import validate_config
    from pipeline.pipeline import Pipeline

    config = validate_config({"profile": "tiny", "index": {"backend": "milvus", "kind": "flat"}})
    Pipeline(config).build(REPO / "examples" / "products.jsonl", tmp_path / "milvus")
    with served({"shop": tmp_path / "milvus"}) as client:
        write = {"assets": [{"id": "m1", "text": "a milvus mug", "metadata": {"category": "m"}}]}
        assert client.post("/v1/indexes/shop/assets", json=write).json()["indexed"] == 1
        body = {"query": {"text": "mug"}, "filter": 'category == "m"', "rerank": False}
        found = client.post("/v1/indexes/shop/search", json=body).json()["results"]
        assert [r["id"] for r in found] == ["m1"]
        assert client.delete("/v1/indexes/shop/assets/m1").json()["deleted"] == 1
        assert client.post("/v1/indexes/shop/search", json=body).json()["results"] == []


def test_text_assets_have_no_media_urls_and_documents_are_not_echoed_as_bytes(client):
    body = {"query": {"text": "returns policy"}, "top_k": 7, "rerank": False}
    results = {
        r["id"]: r for r in client.post("/v1/indexes/shop/search", json=body).json()["results"]
    }
    assert results["faq-returns"]["media_url"] is None  # text only
    assert results["sku-cat-poster"]["media_url"] is not None
    rerank = {"query": "q", "documents": [{"text": "a", "image": b64(CAT)}]}
    (result,) = client.post("/v1/rerank", json=rerank).json()["results"]
    assert result["document"] == {"text": "a"}


def test_union_errors_name_the_field_not_the_type(client):
    answer = client.post("/v1/rerank", json={"query": {"text": 5}, "documents": []})
    assert answer.status_code == 422
    assert answer.json()["field"] == "query"
    assert "query.text:" in answer.json()["detail"] and "MediaItem" not in answer.json()["detail"]
