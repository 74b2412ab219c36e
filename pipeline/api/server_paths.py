"""Lets REST clients name files on the server for images and videos, but only files under the
folders the operator opened for that (serve.media_roots): a path in a request is otherwise a
way to read any file the server can, such as its keys or other users' data."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

logger = logging.getLogger(__name__)


class ServerPathRefused(PermissionError):
    """A path that a client may not make the server read (the REST server answers 403).

    The message names the path as the client wrote it, never what it resolves to, so that a
    refusal does not tell the client where the server's symlinks lead.
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def resolve_server_path(raw: str, media_roots: Sequence[Path]) -> Path:
    """The real path of raw (``..`` and symlinks resolved) when it lies under the real path
    of one of media_roots; raises ServerPathRefused otherwise.

    Resolving before comparing is what catches ``root/../etc/passwd`` and a symlink inside a
    root that leads out of it. Whether the file exists is not checked: the media loaders say
    so when they open it, in the same words as for any other missing file.
    """
    if not media_roots:
        raise _refused(raw, "server paths are off: serve.media_roots lists no folder")
    if "\0" in raw:
        raise _refused(raw, "the path contains a NUL byte")
    path = Path(raw)
    if not path.is_absolute():
        reason = "a relative path is ambiguous: give an absolute path under serve.media_roots"
        raise _refused(raw, reason)
    real = Path(os.path.realpath(path))
    for root in media_roots:
        if real.is_relative_to(Path(os.path.realpath(root))):
            return real
    raise _refused(raw, "not under any of serve.media_roots")


def _refused(raw: str, reason: str) -> ServerPathRefused:
    """A ServerPathRefused, logged: a refused path may be a probe for the server's files."""
    logger.info("refused server path %r: %s", raw, reason)
    return ServerPathRefused(raw, reason)
