"""Runs the app on uvicorn: binds, warns when open without a token, drains on exit."""

from __future__ import annotations

import ipaddress
import logging
import signal
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from pipeline.config import Config
from pipeline.pipeline import Pipeline

logger = logging.getLogger(__name__)


def parse_index_options(values: list[str]) -> dict[str, Path]:
    """``NAME=DIR`` pairs (a bare ``DIR`` is named ``default``), each name once."""
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
    if not indexes:
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
    finish (up to ``serve.drain_timeout_s``), close the indexes and return."""
    try:
        import uvicorn

        from pipeline.api.app import create_app
        from pipeline.api.service import Service
    except ImportError as exc:
        raise ImportError(
            f"vlsearch serve needs the serve extra: pip install 'vlsearch[serve]' ({exc})"
        ) from exc
    settings = pipeline.config.serve
    service = Service(pipeline, indexes, index_configs)
    if not is_loopback(settings.host) and not service.tokens.required:
        logger.warning(
            "serving on %s with no token: anyone who can reach it may search, write and "
            "load models; set VLSEARCH_API_TOKEN (or serve.token_file)",
            settings.host,
        )
    config = uvicorn.Config(
        create_app(service),
        host=settings.host,
        port=settings.port,
        timeout_graceful_shutdown=int(settings.drain_timeout_s),
        log_level="info",
        access_log=False,
    )
    with _clean_exit_after_drain():
        uvicorn.Server(config).run()
    logger.info("stopped: requests in flight were answered, indexes closed")


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
