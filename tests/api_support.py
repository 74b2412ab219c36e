"""Served apps for the API tests: the tiny models (random weights: rankings are
meaningless, so tests check behaviour), in-process clients and live uvicorn servers."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient


def tiny_pipeline(serve: dict[str, Any] | None = None, **sections: Any) -> Any:
    from pipeline.config import validate_config
    from pipeline.pipeline import Pipeline

    return Pipeline(validate_config({"profile": "tiny", "serve": serve or {}, **sections}))


def copy_index(index: Path, folder: Path) -> Path:
    """A private copy of a shared index, for tests that write."""
    target = folder / "index"
    shutil.copytree(index, target)
    return target


def wait_ready(client: Any, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while client.get("/readyz").status_code != 200:
        if time.monotonic() > deadline:
            raise TimeoutError(f"not ready: {client.get('/readyz').json()}")
        time.sleep(0.05)


@contextmanager
def served(
    indexes: dict[str, Path], serve: dict[str, Any] | None = None, **sections: Any
) -> Iterator[TestClient]:
    """A TestClient on a fresh app, ready (every index open)."""
    from pipeline.api.app import create_app
    from pipeline.api.service import Service

    service = Service(tiny_pipeline(serve, **sections), indexes)
    with TestClient(create_app(service)) as client:
        wait_ready(client)
        yield client


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_server(base: str, timeout_s: float, running: Callable[[], bool]) -> None:
    """Until ``base``/readyz answers 200; AssertionError once ``running()`` is false (the
    server died) or the time is up."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(f"{base}/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        if not running() or time.monotonic() > deadline:
            raise AssertionError(f"the server at {base} did not become ready")
        time.sleep(0.05)


@contextmanager
def live_server(
    indexes: dict[str, Path], serve: dict[str, Any] | None = None, **sections: Any
) -> Iterator[str]:
    """A real uvicorn server on 127.0.0.1 in a thread; yields its base URL."""
    import uvicorn

    from pipeline.api.app import create_app
    from pipeline.api.service import Service

    port = free_port()
    service = Service(tiny_pipeline(serve, **sections), indexes)
    config = uvicorn.Config(create_app(service), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_server(base, 60, thread.is_alive)
        yield base
    finally:
        server.should_exit = True
        thread.join(30)


@contextmanager
def live_page(
    indexes: dict[str, Path], serve: dict[str, Any] | None = None, **sections: Any
) -> Iterator[tuple[str, Any]]:
    """The web page as ``vlsearch ui`` serves it (no model loaded at start, the API
    beside it) on 127.0.0.1 in a thread; yields its base URL and its ``Service``."""
    import uvicorn

    from pipeline.api.app import create_app
    from pipeline.api.service import Service
    from pipeline.ui.page import mount_page

    port = free_port()
    pipeline = tiny_pipeline(serve, **sections)
    service = Service(pipeline, indexes, preload=False)
    app = create_app(service)
    mount_page(app, service, pipeline.config.ui, "/ui")
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_server(base, 60, thread.is_alive)
        yield base, service
    finally:
        server.should_exit = True
        thread.join(30)
