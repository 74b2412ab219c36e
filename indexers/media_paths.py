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
from collections.abc import Callable
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
        return self._mapped(asset, self._stored)

    def from_storage(self, asset: Asset) -> Asset:
        """``asset`` as read from the index, with paths a reader can open."""
        return self._mapped(asset, self._opened)

    def _stored(self, path: Path) -> Path:
        absolute = Path(os.path.abspath(path))
        return absolute.relative_to(self.root) if absolute.is_relative_to(self.root) else absolute

    def _opened(self, path: Path) -> Path:
        return path if path.is_absolute() else self.root / path

    def _mapped(self, asset: Asset, convert: Callable[[Path], Path]) -> Asset:
        if self.style == "as_given":
            return asset
        update = {}
        if isinstance(asset.image, Path):
            update["image"] = convert(asset.image)
        if isinstance(asset.video, Path):
            update["video"] = convert(asset.video)
        elif isinstance(asset.video, list) and all(isinstance(f, Path) for f in asset.video):
            update["video"] = [convert(frame) for frame in asset.video]
        return asset.model_copy(update=update) if update else asset
