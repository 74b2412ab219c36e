"""What a file holds, judged by its bytes rather than its name."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pipeline.media._files import file_size
from pipeline.media.images import is_image
from pipeline.media.text import is_text
from pipeline.media.video import is_video

MediaKind = Literal["image", "video", "text"]


def detect_kind(path: Path) -> MediaKind | None:
    """``image``, ``video`` or ``text`` by content; None for empty or unsupported files.

    Raises MediaError only when the file itself cannot be read (missing, a directory,
    no permission). Images are tried first because FFmpeg would also open them as
    one-frame videos; text before video because it costs one read, not a probe.
    """
    if file_size(path) == 0:
        return None
    if is_image(path):
        return "image"
    if is_text(path):
        return "text"
    if is_video(path):
        return "video"
    return None
