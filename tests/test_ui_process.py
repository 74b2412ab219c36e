"""``vlsearch ui`` as a process, on the tiny offline models and no index: the page
answers before any model loads, ``--share`` fails politely offline, ``--no-queue``
serves events over plain HTTP, SIGTERM ends it cleanly and a bad option is one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.api_support import free_port

pytest.importorskip("gradio", reason="the ui extra: pip install 'vlsearch[ui]'")

REPO = Path(__file__).resolve().parents[1]
START_S = 120.0
"""The longest a page may take to answer (imports on a slow, shared CI machine): a
tiny model loads in a fraction of that, so the point is what has loaded by then."""


class PageProcess:
    """``vlsearch ui ARGS`` on a free port, its output in a file."""

    def __init__(self, log: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        argv = [sys.executable, "-m", "pipeline", "ui", "--port", str(self.port), *args]
        environ = {k: v for k, v in os.environ.items() if not k.startswith("VLSEARCH_")}
        environ["VLSEARCH_CACHE"] = os.environ["VLSEARCH_CACHE"]
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                argv, cwd=REPO, env=environ | (env or {}), stdout=out, stderr=subprocess.STDOUT
            )
        self.started = time.monotonic()

    @property
    def output(self) -> str:
        """The log with Rich's line wrapping undone."""
        return " ".join(self.log.read_text(errors="replace").split())

    def wait_for_page(self) -> float:
        """Seconds from the start until GET /ui/ answered 200."""
        while time.monotonic() - self.started < START_S:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"vlsearch ui ended ({self.process.returncode}):\n{self.output}"
                )
            try:
                if httpx.get(f"{self.base}/ui/", timeout=5).status_code == 200:
                    return time.monotonic() - self.started
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"no page at {self.base}/ui/ after {START_S:.0f} s:\n{self.output}")

    def wait_for_log(self, text: str, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while text not in self.output:
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise AssertionError(f"{text!r} not in the output:\n{self.output}")
            time.sleep(0.1)

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(60)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)


@pytest.fixture(scope="module", autouse=True)
def _tiny_models() -> None:
    """Built once here, not inside the first process's start-up."""
    from pipeline.models import ensure_tiny_models

    ensure_tiny_models()


@contextmanager
def page_process(tmp_path: Path, *args: str, **env: str) -> Iterator[PageProcess]:
    page = PageProcess(tmp_path / "ui.log", *args, env=env)
    try:
        yield page
    finally:
        page.kill()


def _queued(base: str) -> dict[str, bool]:
    """Whether each of the page's events goes through Gradio's queue, by its API name."""
    config = httpx.get(f"{base}/ui/config", timeout=10).json()
    return {d["api_name"]: d["queue"] for d in config["dependencies"]}


def test_vlsearch_ui_shows_the_page_before_any_model_loads(tmp_path):
    with page_process(tmp_path, "--set", "profile=tiny") as page:
        assert page.wait_for_page() < START_S
        models = httpx.get(f"{page.base}/v1/models", timeout=10).json()
        assert [r["state"] for r in models["rerankers"]] == ["not_loaded"]
        assert models["embedders"] == []  # no index
        html = httpx.get(f"{page.base}/ui/", timeout=10).text
        assert "vlsearch" in html and "auth_required" not in html
        root = httpx.get(f"{page.base}/", timeout=10)
        assert root.status_code == 307 and root.headers["location"] == "/ui/"
        assert _queued(page.base)["rerank"] is True  # progress bars need the queue
        page.wait_for_log("the page is at")
        assert f"{page.base}/ui/" in page.output
        assert page.terminate() == 0
        assert "Traceback" not in page.output


def test_share_without_a_network_says_so_and_the_page_stays(tmp_path):
    with page_process(tmp_path, "--share", VLSEARCH_MODELS="tiny") as page:
        page.wait_for_page()
        page.wait_for_log("--share needs Gradio's share service")
        assert "api.gradio.app" in page.output
        assert f"the page is still served at {page.base}/ui/" in page.output
        assert "Traceback" not in page.output
        assert httpx.get(f"{page.base}/ui/", timeout=10).status_code == 200
        assert page.process.poll() is None
        assert page.terminate() == 0


def test_no_queue_answers_events_over_plain_http(tmp_path):
    with page_process(tmp_path, "--no-queue", "--set", "profile=tiny") as page:
        page.wait_for_page()
        queued = _queued(page.base)
        assert not any(queued[name] for name in ("search", "rerank", "load", "unload"))
        status = httpx.post(f"{page.base}/ui/gradio_api/run/status", json={"data": []})
        assert status.status_code == 200 and "not loaded" in status.json()["data"][0]
        assert page.terminate() == 0


def test_a_missing_index_is_one_line_and_exit_code_2(tmp_path):
    missing = tmp_path / "no-such-index"
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "ui", "--index", f"shop={missing}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("error:") and "no such index directory" in lines[0]
    assert str(missing) in lines[0]
