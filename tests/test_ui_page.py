"""The web page without a browser: mounted in ``vlsearch serve``'s app (behind its
tokens) and its actions called as its buttons call them, on the tiny random-weight
models (rankings are meaningless, so these tests check what a person is shown, never
which result wins).

``vlsearch ui`` as a process is tests/test_ui_process.py; the page in a real browser,
tests/test_ui_browser.py.
"""

from __future__ import annotations

import asyncio
import json
import re
import types
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from pipeline.ui import cards
from tests.api_support import tiny_pipeline, wait_ready
from tests.ui_support import Tags, make_uploads

gradio = pytest.importorskip("gradio", reason="the ui extra: pip install 'vlsearch[ui]'")
pytest.importorskip("fpdf", reason="PDF fixtures are written with fpdf2 (dev extra)")

REPO = Path(__file__).resolve().parents[1]
MEDIA = REPO / "examples" / "media"
API_TOKEN, ADMIN_TOKEN = "reader-token", "admin-token"
ANONYMOUS = types.SimpleNamespace(username=None)
"""What a request of the page without a login looks like to an action (gr.Request)."""
RERANK_SETTINGS = (1.0, 8, 0, 0, "none", "bicubic", 0.0, True, False)
"""The Rerank tab's defaults: fps, max_frames, width, height, resize mode, resampling,
blur sigma, parts, frames."""


def no_progress(*_: Any, **__: Any) -> None:
    """A progress callable that shows nothing."""


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_uploads(tmp_path_factory.mktemp("uploads"))


def paths(files: dict[str, Path], *names: str) -> list[str]:
    return [str(files[name]) for name in names]


# -- the page in serve's app ---------------------------------------------------------


@pytest.fixture
def serve_app(monkeypatch) -> Any:
    """``serve``'s app as ``pipeline.api.server.serve`` builds it, with no index: make
    one with ``serve_app(token=..., admin=..., in_serve=...)``."""
    from fastapi.testclient import TestClient

    from pipeline.api.app import create_app
    from pipeline.api.server import _mount_page
    from pipeline.api.service import Service

    opened: list[Any] = []

    def make(token: str | None = None, admin: str | None = None, **ui: Any) -> Any:
        for variable, value in (("VLSEARCH_API_TOKEN", token), ("VLSEARCH_ADMIN_TOKEN", admin)):
            if value is None:
                monkeypatch.delenv(variable, raising=False)
            else:
                monkeypatch.setenv(variable, value)
        pipeline = tiny_pipeline(ui=ui)
        service = Service(pipeline, {})
        app = create_app(service)
        _mount_page(app, service, pipeline.config.ui)
        client = TestClient(app)
        client.__enter__()
        opened.append(client)
        wait_ready(client)
        return client

    yield make
    for client in opened:
        client.__exit__(None, None, None)


def _page_config(markup: str) -> dict[str, Any]:
    found = re.search(r"window\.gradio_config = (\{.*?\});</script>", markup, re.DOTALL)
    assert found, "no Gradio config in the page"
    return json.loads(found.group(1))


def test_serve_mounts_the_page_at_ui_and_sends_the_root_there(serve_app):
    client = serve_app(in_serve="auto")
    page = client.get("/ui/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    config = _page_config(page.text)
    assert config["title"] == "vlsearch" and not config.get("auth_required")
    shown = json.dumps([c.get("props", {}) for c in config["components"]])
    assert "# vlsearch" in shown and "Load model" in shown and "Rerank" in shown
    assert "Tiny random-weight models" in shown  # the tiny profile says so
    root = client.get("/", follow_redirects=False)
    assert root.status_code in (302, 307) and root.headers["location"] == "/ui/"
    assert client.get("/readyz").status_code == 200  # the API's start-up still runs
    assert client.get("/v1/models").json()["reranker"]["state"] == "not_loaded"


def test_in_serve_off_leaves_the_page_out(serve_app):
    client = serve_app(in_serve="off")
    assert client.get("/ui/").status_code == 404
    assert client.get("/", follow_redirects=False).status_code == 404
    assert client.get("/healthz").status_code == 200


def test_with_a_token_the_page_asks_for_it(serve_app):
    client = serve_app(token=API_TOKEN)
    config = _page_config(client.get("/ui/").text)
    assert config["auth_required"] is True and "API token" in config["auth_message"]
    assert config["components"] == []  # nothing of the page before the login
    assert client.get("/ui/config").status_code == 401
    wrong = client.post("/ui/login", data={"username": "ann", "password": "nope"})
    assert wrong.status_code == 400
    assert client.get("/ui/config").status_code == 401
    right = client.post("/ui/login", data={"username": "ann", "password": API_TOKEN})
    assert right.status_code == 200 and right.json() == {"success": True}
    assert client.get("/ui/config").status_code == 200  # the login cookie opens the page
    assert "auth_required" not in _page_config(client.get("/ui/").text)


def test_user_admin_logs_in_with_the_admin_token(serve_app):
    client = serve_app(token=API_TOKEN, admin=ADMIN_TOKEN)
    as_admin = {"username": "admin", "password": API_TOKEN}
    assert client.post("/ui/login", data=as_admin).status_code == 400
    assert client.post("/ui/login", data=as_admin | {"password": ADMIN_TOKEN}).status_code == 200


def test_the_login_check(monkeypatch):
    from pipeline.api.service import Service
    from pipeline.ui.actions import login

    monkeypatch.setenv("VLSEARCH_API_TOKEN", API_TOKEN)
    monkeypatch.setenv("VLSEARCH_ADMIN_TOKEN", ADMIN_TOKEN)
    check = login(Service(tiny_pipeline(), {}))
    assert check("ann", API_TOKEN) and check("ann", ADMIN_TOKEN)
    assert not check("ann", "nope") and not check("ann", "")
    assert check("admin", ADMIN_TOKEN) and not check("admin", API_TOKEN)
    monkeypatch.delenv("VLSEARCH_ADMIN_TOKEN")
    check = login(Service(tiny_pipeline(), {}))
    assert check("admin", API_TOKEN) and not check("admin", ADMIN_TOKEN)  # no admin token set


def test_a_rendered_pdf_page_is_served_to_the_page(serve_app, files):
    """The Rerank tab shows rendered pages through Gradio's file route: allowed."""
    from pipeline.ui.actions import PageActions
    from pipeline.ui.settings import UiConfig

    client = serve_app()
    service = client.app.state.service
    actions = PageActions(service, UiConfig(), service.scratch / "ui-pages")
    markup = asyncio.run(
        actions.rerank("", "alpha", None, None, [str(files["two.pdf"])], "", *RERANK_SETTINGS)
    )
    sources = [attrs["src"] for attrs in Tags(markup).find("img")]
    assert len(sources) == 2 and all(s.startswith("gradio_api/file=") for s in sources)
    for source in sources:
        shown = client.get(f"/ui/{source}")
        assert shown.status_code == 200 and shown.headers["content-type"] == "image/png"
    elsewhere = actions.file_url(files["photo.jpg"])  # not an upload nor a rendered page
    assert client.get(f"/ui/{elsewhere}").status_code == 403


# -- the page's actions --------------------------------------------------------------


@pytest.fixture(scope="module")
def actions(tiny_examples_index: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The page's actions over a ``Service`` as ``vlsearch ui`` makes it (no model
    loaded at start), with a small upload limit."""
    from pipeline.api.service import Service
    from pipeline.ui.actions import PageActions
    from pipeline.ui.settings import UiConfig

    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("VLSEARCH_API_TOKEN", raising=False)
        patch.delenv("VLSEARCH_ADMIN_TOKEN", raising=False)
        pipeline = tiny_pipeline(serve={"max_upload_bytes": 60_000})
        service = Service(pipeline, {"shop": tiny_examples_index}, preload=False)
    service.open_indexes()
    pages = tmp_path_factory.mktemp("ui-pages")
    yield PageActions(service, UiConfig(max_documents=8), pages)
    service.close()


def search(actions: Any, text: str = "a rocket", **options: Any) -> str:
    values = {"image": None, "video": None, "filter_text": "", "top_k": 10, "rerank": True}
    values |= options
    return asyncio.run(
        actions.search(
            "shop",
            text,
            values["image"],
            values["video"],
            values["filter_text"],
            values["top_k"],
            values["rerank"],
            1.0,
            no_progress,
        )
    )


def rerank(actions: Any, files: list[str], snippets: str = "", text: str = "a rocket") -> str:
    return asyncio.run(actions.rerank("", text, None, None, files, snippets, *RERANK_SETTINGS))


def _gradio_error(call: Any) -> str:
    with pytest.raises(gradio.Error) as raised:
        call()
    message = raised.value.message
    assert "Traceback" not in message and 'File "' not in message
    return message


def test_the_status_line_says_whether_the_model_is_loaded(actions):
    unloaded = asyncio.run(actions.unload(ANONYMOUS))
    assert unloaded == actions.status()
    assert "**Reranker**" in unloaded and "not loaded" in unloaded.splitlines()[0]
    loaded = asyncio.run(actions.load(ANONYMOUS))
    assert "loaded on cpu in float32" in loaded.splitlines()[0]
    assert "**CLIP**" in loaded and "(index shop): loaded" in loaded
    assert actions.is_tiny and actions.index_names == ["shop"]


def test_a_search_shows_one_card_per_result(actions):
    markup = search(actions, top_k=3)
    ids = [attrs["data-id"] for attrs in Tags(markup).find("div", "vls-card")]
    assert len(ids) == 3 and len(set(ids)) == 3
    every = Tags(search(actions, top_k=50, rerank=False)).find("div", "vls-card")
    assert len(every) == 7  # the whole examples index
    filtered = search(actions, filter_text='category == "posters"', rerank=False)
    posters = {a["data-id"] for a in Tags(filtered).find("div", "vls-card")}
    assert posters == {"sku-cat-poster", "sku-astronaut-print", "sku-camera-print"}
    image_query = search(actions, "", image=str(MEDIA / "rocket.jpg"), top_k=2, rerank=False)
    assert len(Tags(image_query).find("div", "vls-card")) == 2


def test_a_bad_filter_or_an_oversize_upload_is_a_message(actions, tmp_path):
    message = _gradio_error(lambda: search(actions, filter_text="price <"))
    assert "filter" in message and "price <" in message
    big = tmp_path / "big.png"
    Image.effect_noise((300, 300), 100).convert("RGB").save(big)
    assert big.stat().st_size > 60_000
    message = _gradio_error(lambda: search(actions, "", image=str(big)))
    assert "query image" in message and "serve.max_upload_bytes" in message
    message = _gradio_error(lambda: rerank(actions, [str(big)], "one snippet"))
    assert "big.png" in message and "serve.max_upload_bytes" in message
    message = _gradio_error(lambda: search(actions, ""))
    assert "give a query" in message
    message = _gradio_error(lambda: rerank(actions, [], "a\nb\nc\nd\ne\nf\ng\nh\ni"))
    assert "ui.max_documents" in message


def test_rerank_ranks_uploads_and_lists_unreadable_ones_last(actions, files):
    chosen = paths(files, "truncated.jpg", "two.pdf", "photo.jpg", "notes.txt")
    markup = rerank(actions, chosen, "a model rocket kit")
    page = Tags(markup)
    labels = [attrs["data-label"] for attrs in page.find("div", "vls-card")]
    assert len(labels) == 6 and labels[-1] == "truncated.jpg"
    assert set(labels) == {
        "two.pdf p.1",
        "two.pdf p.2",
        "photo.jpg",
        "notes.txt",
        "snippet 1",
        "truncated.jpg",
    }
    scores = [float(t) for t in re.findall(r'class="vls-score">([0-9.]+)<', markup)]
    assert len(scores) == 5 and scores == sorted(scores, reverse=True)
    # A PDF page is text and image: each scored alone beside the whole.
    assert markup.count('class="vls-breakdown"') == 2
    text = page.joined
    assert "text alone" in text and "image alone" in text and cards.PARTS_NOTE in text


def test_describe_lists_the_uploads(actions, files):
    markup = asyncio.run(actions.describe(paths(files, "photo.jpg", "two.pdf", "random.jpg")))
    text = Tags(markup).joined
    assert "photo.jpg" in text and "96×64 px" in text and "2 pages" in text
    assert "not a supported image" in text
    assert asyncio.run(actions.describe(None)) == ""


def test_load_and_unload_need_the_admin_token_when_one_is_set(monkeypatch, tmp_path):
    from pipeline.api.service import Service
    from pipeline.ui.actions import PageActions
    from pipeline.ui.settings import UiConfig

    monkeypatch.setenv("VLSEARCH_API_TOKEN", API_TOKEN)
    monkeypatch.setenv("VLSEARCH_ADMIN_TOKEN", ADMIN_TOKEN)
    service = Service(tiny_pipeline(), {}, preload=False)
    page = PageActions(service, UiConfig(), tmp_path)
    for user in (None, "ann"):
        request = types.SimpleNamespace(username=user)
        message = _gradio_error(lambda r=request: asyncio.run(page.load(r)))
        assert "admin token" in message and "'admin'" in message
        assert "admin token" in _gradio_error(lambda r=request: asyncio.run(page.unload(r)))
    assert service.models().reranker.state == "not_loaded"
    admin = types.SimpleNamespace(username="admin")
    assert "not loaded" in asyncio.run(page.unload(admin))
    service.close()
