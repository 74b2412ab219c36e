"""Saving a channel as a whole, atomically.

A channel is several files (a matrix and an id list, or a bm25s index and its corpus)
that must change together, so each save fills a fresh version folder and then switches
the ``CURRENT`` pointer file to it with one atomic rename::

    DIR/channels/bm25/CURRENT          -> "v-<time>-<random>"
    DIR/channels/bm25/v-<time>-<random>/channel.json, ...

A crash before the switch leaves the previous version current (its half-written
successor is removed by the next save); older versions are removed after the switch.
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from indexers.atomic import atomic_write_text
from indexers.text_channels.base import ChannelNotFoundError

CURRENT_FILE = "CURRENT"
MANIFEST_FILE = "channel.json"
FORMAT_VERSION = 1
_VERSION_PREFIX = "v-"


class ChannelManifest(BaseModel):
    """What a saved version holds and which settings built it."""

    format_version: int = FORMAT_VERSION
    backend: str
    documents: int
    config: dict[str, Any]


def save_version(directory: Path, manifest: ChannelManifest, fill: Callable[[Path], None]) -> Path:
    """Let ``fill`` write a channel's files into a new version folder, then make it current."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    version = directory / f"{_VERSION_PREFIX}{time.time_ns()}-{secrets.token_hex(4)}"
    version.mkdir()
    try:
        fill(version)
        (version / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2), encoding="utf-8")
        _fsync_tree(version)
        atomic_write_text(directory / CURRENT_FILE, version.name + "\n")
    except BaseException:
        shutil.rmtree(version, ignore_errors=True)
        raise
    _remove_versions_except(directory, version.name)
    return version


def current_version(directory: Path) -> tuple[Path, ChannelManifest]:
    """The current version folder of a saved channel and its manifest."""
    directory = Path(directory)
    pointer = directory / CURRENT_FILE
    if not pointer.is_file():
        raise ChannelNotFoundError(f"{directory}: no saved text channel ({CURRENT_FILE} missing)")
    version = directory / pointer.read_text(encoding="utf-8").strip()
    manifest_path = version / MANIFEST_FILE
    if not manifest_path.is_file():
        raise ChannelNotFoundError(
            f"{directory}: {CURRENT_FILE} names {version.name!r}, which has no {MANIFEST_FILE}; "
            "rebuild the channel"
        )
    manifest = ChannelManifest.model_validate_json(manifest_path.read_text(encoding="utf-8"))
    if manifest.format_version != FORMAT_VERSION:
        raise ChannelNotFoundError(
            f"{directory}: channel format {manifest.format_version} is not {FORMAT_VERSION}; "
            "rebuild the channel"
        )
    return version, manifest


def _remove_versions_except(directory: Path, keep: str) -> None:
    for candidate in directory.glob(f"{_VERSION_PREFIX}*"):
        if candidate.is_dir() and candidate.name != keep:
            shutil.rmtree(candidate, ignore_errors=True)


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
