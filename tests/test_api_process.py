"""``vlsearch serve`` as a process: acknowledged writes survive SIGKILL, and SIGTERM
drains requests in flight before a clean exit (tiny offline models)."""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.api_support import copy_index, free_port, wait_for_server

REPO = Path(__file__).resolve().parents[1]
CAT = REPO / "examples" / "media" / "cat.jpg"


@contextmanager
def server(index: Path, *extra: str) -> Iterator[tuple[subprocess.Popen, str]]:
    port = free_port()
    argv = [sys.executable, "-m", "pipeline", "serve", "--index", f"shop={index}"]
    argv += ["--port", str(port), *extra]
    env = {**os.environ, "VLSEARCH_MODELS": "tiny"}
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_for_server(base, 120, lambda: process.poll() is None)
        except AssertionError:
            process.kill()
            output = process.stdout.read().decode() if process.stdout else ""
            raise AssertionError(f"the server did not start:\n{output}") from None
        yield process, base
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(30)


def _assets(start: int, count: int, image: str) -> list[dict]:
    return [
        {"id": f"new-{i}", "text": f"new asset {i}", "image": image}
        for i in range(start, start + count)
    ]


def test_acknowledged_upserts_survive_sigkill_and_nothing_is_half_written(
    tiny_examples_index, tmp_path
):
    index = copy_index(tiny_examples_index, tmp_path)
    # Each asset gets its own image bytes, so every upsert also writes a new media file.
    images = [base64.b64encode(CAT.read_bytes() + bytes([i])).decode() for i in range(40)]
    acknowledged: list[str] = []
    in_flight: list[str] = []
    with server(index) as (process, base):
        before = httpx.get(f"{base}/v1/indexes/shop").json()
        with httpx.Client(base_url=base, timeout=60) as client:
            for batch in range(6):
                rows = _assets(2 * batch, 2, images[batch])
                assert (
                    client.post("/v1/indexes/shop/assets", json={"assets": rows}).status_code == 200
                )
                acknowledged += [row["id"] for row in rows]

            def last_write() -> None:
                rows = _assets(100, 20, images[39])
                in_flight.extend(row["id"] for row in rows)
                with contextlib.suppress(httpx.TransportError):  # killed: no acknowledgement
                    client.post("/v1/indexes/shop/assets", json={"assets": rows})

            writer = threading.Thread(target=last_write)
            writer.start()
            time.sleep(0.05)
            process.send_signal(signal.SIGKILL)
            process.wait(30)
            writer.join(30)
    with server(index) as (_, base):
        after = httpx.get(f"{base}/v1/indexes/shop").json()
        held = {
            asset_id
            for asset_id in acknowledged + in_flight
            if httpx.get(f"{base}/v1/indexes/shop/assets/{asset_id}/media").status_code == 200
        }
    assert set(acknowledged) <= held
    late = held - set(acknowledged)
    assert late in (set(), set(in_flight))  # the last upsert is one transaction: all or none
    assert after["assets"] == before["assets"] + len(held)
    assert after["vectors"] == before["vectors"] + 2 * len(held)  # text + image each


def test_sigterm_drains_the_request_in_flight_then_exits_cleanly(tiny_examples_index):
    documents = [
        {"text": f"document {i}", "image": base64.b64encode(CAT.read_bytes()).decode()}
        for i in range(40)
    ]
    answers: list[httpx.Response] = []
    with server(tiny_examples_index) as (process, base):
        httpx.post(f"{base}/v1/models/reranker/load", timeout=60)

        def rerank() -> None:
            body = {"query": "a cat", "documents": documents}
            answers.append(httpx.post(f"{base}/v1/rerank", json=body, timeout=120))

        caller = threading.Thread(target=rerank)
        caller.start()
        time.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        caller.join(120)
        assert process.wait(60) == 0
    assert answers and answers[0].status_code == 200
    assert len(answers[0].json()["results"]) == 40


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--index", "a=/nonexistent"], "no such index directory"),
        (["--index", "x", "--index", "x"], "given twice"),
        (["--index", "=dir"], "NAME=DIR"),
    ],
)
def test_serve_refuses_bad_index_options(argv, message):
    from typer.testing import CliRunner

    from pipeline.cli import app

    result = CliRunner().invoke(app, ["serve", *argv])
    assert result.exit_code == 2
    assert message in result.output
