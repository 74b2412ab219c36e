"""An asset's own media, as the media and thumbnail routes send it. Only paths the index
holds are ever opened: nothing in a request names a file."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from pipeline.api.problems import NotFound
from pipeline.media import frames_at, load_image
from pipeline.schema import Asset
from pipeline.settings import MediaConfig


def media_file(asset: Asset, frame: int = 0) -> Path:
    """The asset's image (a PDF page's render), else its video file, else frame ``frame``
    of a video stored as frames."""
    if isinstance(asset.image, Path):
        return _existing(asset.image, asset)
    if isinstance(asset.video, Path):
        return _existing(asset.video, asset)
    if isinstance(asset.video, list) and asset.video:
        if not 0 <= frame < len(asset.video):
            raise NotFound(f"asset {asset.id!r} has {len(asset.video)} frames, no {frame}")
        return _existing(Path(asset.video[frame]), asset)  # type: ignore[arg-type]
    raise NotFound(f"asset {asset.id!r} has no image or video (a text asset)")


def thumbnail(asset: Asset, at: float | None, side: int, media: MediaConfig) -> bytes:
    """A JPEG at most ``side`` pixels wide and high: the image, the PDF page, or the
    video's frame at ``at`` seconds (its first frame when none is given)."""
    if isinstance(asset.video, Path) and asset.image is None:
        moment = max(at or 0.0, 0.0)
        path = _existing(asset.video, asset)
        image = frames_at(path, lambda _: [moment], max_pixels=media.max_image_pixels)[0].image
    else:
        image = load_image(media_file(asset), max_pixels=media.max_image_pixels)
    image = image.convert("RGB")
    image.thumbnail((side, side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def _existing(path: Path, asset: Asset) -> Path:
    if not path.is_file():
        raise NotFound(f"asset {asset.id!r}: its file {path.name} is gone")
    return path
