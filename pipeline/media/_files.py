"""File-system checks shared by the loaders, so every one names the same problems alike."""

from __future__ import annotations

import stat
from pathlib import Path

from pipeline.media.errors import MediaError


def file_size(path: Path) -> int:
    """Size in bytes of a regular file; MediaError when it is missing or not a file."""
    try:
        info = path.stat()
    except OSError as exc:
        raise MediaError(path, os_error_reason(exc)) from None
    if stat.S_ISDIR(info.st_mode):
        raise MediaError(path, "is a directory, not a file")
    if not stat.S_ISREG(info.st_mode):
        # Reading a FIFO or a device could block forever or never end.
        raise MediaError(path, "not a regular file")
    return info.st_size


def require_content(path: Path) -> None:
    """MediaError unless ``path`` is a regular, non-empty file."""
    if file_size(path) == 0:
        raise MediaError(path, "empty file (0 bytes)")


def read_head(path: Path, size: int) -> bytes:
    """The first ``size`` bytes of ``path``."""
    try:
        with path.open("rb") as handle:
            return handle.read(size)
    except OSError as exc:
        raise MediaError(path, os_error_reason(exc)) from None


def os_error_reason(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, IsADirectoryError):
        return "is a directory, not a file"
    return f"cannot read file ({exc.strerror or exc})"
