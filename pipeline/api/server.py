"""Runs the app on uvicorn: binds, warns when open without a token, drains on exit."""

from __future__ import annotations

import ipaddress
import logging
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from pipeline.config import Config
from pipeline.pipeline import Pipeline
from pipeline.ui.settings import UiConfig

logger = logging.getLogger(__name__)


def parse_index_options(values: list[str], required: bool = True) -> dict[str, Path]:
    """``NAME=DIR`` pairs (a bare ``DIR`` is named ``default``), each name once; at
    least one when ``required``."""
    indexes: dict[str, Path] = {}
    for value in values:
        name, sep, directory = value.partition("=")
        if not sep:
            name, directory = "default", value
        name = name.strip()
        if not name or not directory.strip():
            raise ValueError(f"--index {value!r}: expected NAME=DIR or DIR")
        if name in indexes:
            raise ValueError(f"--index: the name {name!r} is given twice")
        indexes[name] = Path(directory)
    if not indexes and required:
        raise ValueError("give at least one --index NAME=DIR (or a bare DIR, named 'default')")
    for name, directory in indexes.items():
        if not directory.is_dir():
            raise ValueError(f"--index {name}={directory}: no such index directory")
    return indexes


def parse_index_configs(values: list[str], indexes: Mapping[str, Path]) -> dict[str, Path]:
    """``NAME=CONFIG`` pairs, each naming a served index once."""
    configs: dict[str, Path] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise ValueError(f"--index-config {value!r}: expected NAME=CONFIG")
        if name not in indexes:
            served = ", ".join(sorted(indexes))
            raise ValueError(f"--index-config {value!r}: no index {name!r} (served: {served})")
        if name in configs:
            raise ValueError(f"--index-config: index {name!r} is given two configs")
        configs[name] = Path(path)
    return configs


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    pipeline: Pipeline,
    indexes: Mapping[str, Path],
    index_configs: Mapping[str, Config] | None = None,
) -> None:
    """Serve until Ctrl-C or SIGTERM (``index_configs``: an index's own config, see
    ``Service``); then stop taking connections, let requests in flight
    finish (up to ``serve.drain_timeout_s``), close the indexes and return. The web page
    is mounted at /ui as ``ui.in_serve`` says."""
    create_app, service_class = _api()
    service = service_class(pipeline, indexes, index_configs)
    app = create_app(service)
    _mount_page(app, service, pipeline.config.ui)
    settings = pipeline.config.serve
    run_app(app, service, settings.host, settings.port)


def run_app(
    app: Any,
    service: Any,
    host: str,
    port: int,
    when_started: Callable[[str], None] | None = None,
) -> None:
    """Run ``app`` on uvicorn until Ctrl-C or SIGTERM, then drain (see ``serve``).
    ``when_started(url)`` is called in a thread once the server listens."""
    import uvicorn

    if not is_loopback(host) and not service.tokens.required:
        logger.warning(
            "serving on %s with no token: anyone who can reach it may search, write and "
            "load models; set VLSEARCH_API_TOKEN (or serve.token_file)",
            host,
        )
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        timeout_graceful_shutdown=int(service.serve.drain_timeout_s),
        log_level="info",
        access_log=False,
    )
    server = uvicorn.Server(config)
    finished = threading.Event()
    if when_started is not None:
        url = f"http://{host}:{port}"
        threading.Thread(
            target=_after_start,
            args=(server, finished, when_started, url),
            name="started",
            daemon=True,
        ).start()
    try:
        with _clean_exit_after_drain():
            server.run()
    finally:
        finished.set()
    logger.info("stopped: requests in flight were answered, indexes closed")


def _after_start(
    server: Any, finished: threading.Event, callback: Callable[[str], None], url: str
) -> None:
    while not server.started:
        if finished.wait(0.05):  # the server stopped (or never bound): nothing to announce
            return
    callback(url)


def _api() -> tuple[Any, Any]:
    try:
        import uvicorn  # noqa: F401  (checked here: the error names the extra)

        from pipeline.api.app import create_app
        from pipeline.api.service import Service
    except ImportError as exc:
        raise ImportError(
            f"vlsearch serve needs the serve extra: pip install 'vlsearch[serve]' ({exc})"
        ) from exc
    return create_app, Service


def _mount_page(app: Any, service: Any, ui: UiConfig) -> None:
    if ui.in_serve == "off":
        return
    try:
        from pipeline.ui.page import mount_page
    except ImportError as exc:
        if ui.in_serve == "on":
            raise ImportError(
                f"ui.in_serve is 'on' but the web page needs the ui extra: "
                f"pip install 'vlsearch[ui]' ({exc})"
            ) from exc
        logger.info("no web page at /ui: pip install 'vlsearch[ui]' for one")
        return
    mount_page(app, service, ui, "/ui")


@contextmanager
def _clean_exit_after_drain() -> Iterator[None]:
    """uvicorn drains on SIGTERM or Ctrl-C, then raises the signal again for the handler
    it found: with these no-op handlers the command then ends with status 0, as a
    service manager expects of a clean stop, instead of dying by the signal."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _drained) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _drained(signum: int, _frame: FrameType | None) -> None:
    logger.debug("signal %d after draining: exiting normally", signum)
