"""A vlsearch server in a child process, for benchmarks that time it from outside: start
it, wait until ``/readyz`` answers 200, stop it with SIGTERM (as a service manager does)."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def child_server(
    command: list[str],
    env: dict[str, str],
    port: int,
    log: Path,
    meanwhile: Callable[[], None] = lambda: None,
) -> Iterator[str]:
    """Run ``command`` (a server on ``port``) with its output in ``log``; ``meanwhile``
    runs while it starts; yields the base URL once ready. SystemExit, with the log, when
    it exits or is not ready within two minutes."""
    with log.open("w") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        meanwhile()
        _wait_ready(process, base, log)
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_ready(process: subprocess.Popen[bytes], base: str, log: Path) -> None:
    deadline = time.monotonic() + 120
    while True:
        if process.poll() is not None:
            raise SystemExit(f"the server exited ({process.returncode}):\n{log.read_text()}")
        try:
            if httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"the server did not become ready:\n{log.read_text()}")
        time.sleep(0.1)
