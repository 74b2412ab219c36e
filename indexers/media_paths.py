"""How an index writes down where its assets' media files are.

An index keeps references to media files, not the media: the reranker and the user read
the files later, from whatever working directory the search runs in, and often on
another machine the index was copied to. So paths are stored absolute, except files
inside the index folder itself (rendered PDF pages), which are stored relative to it and
travel with the folder. Indexes written before this rule say ``as_given`` in their
manifest: their paths are kept exactly as the build was given them (relative ones meant
the build's working directory), so they read as they always did.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pipeline.schema import Asset

MediaPathStyle = Literal["as_given", "index_relative"]


class MediaPaths:
    def __init__(self, index_dir: Path, style: MediaPathStyle) -> None:
        self.root = Path(os.path.abspath(index_dir))
        self.style = style

    def for_storage(self, asset: Asset) -> Asset:
        """``asset`` with its media paths as the index stores them."""
        if self.style == "as_given":
            return asset
        update: dict[str, object] = {}
        if isinstance(asset.image, Path):
            update["image"] = self._stored(asset.image)
        if isinstance(asset.video, Path):
            update["video"] = self._stored(asset.video)
        elif isinstance(asset.video, list) and all(isinstance(f, Path) for f in asset.video):
            update["video"] = [self._stored(frame) for frame in asset.video]
        return asset.model_copy(update=update) if update else asset

    def opened(self, stored: str) -> Path:
        """A stored path as a reader can open it."""
        path = Path(stored)
        if self.style == "as_given" or path.is_absolute():
            return path
        return self.root / path

    def opened_video(self, stored: str | list[str] | None) -> Path | list[Path] | None:
        """A stored video (a file, or a list of frame files) as a reader can open it."""
        if stored is None:
            return None
        if isinstance(stored, list):
            return [self.opened(frame) for frame in stored]
        return self.opened(stored)

    def _stored(self, path: Path) -> Path:
        absolute = Path(os.path.abspath(path))
        return absolute.relative_to(self.root) if absolute.is_relative_to(self.root) else absolute
