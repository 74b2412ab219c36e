"""Turns a Content's image and video fields into decoded pixels, whatever form they came in."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from pipeline.config import MediaConfig
from pipeline.schema import Content, Frame


def content_image(content: Content, media: MediaConfig) -> Image.Image:
    from pipeline.media import load_image

    if isinstance(content.image, Image.Image):
        return content.image.convert("RGB")
    if content.image is None:
        raise ValueError("content has no image")
    return load_image(Path(content.image), max_pixels=media.max_image_pixels)


def content_frames(content: Content, media: MediaConfig) -> list[Frame]:
    """Sampled frames of the content's video: decoded from a file, loaded from a
    list of frame files or images (taken as sampled at the content's fps), or as given."""
    from pipeline.media import sample_video, thin_indices

    video = content.video
    fps = content.fps or media.video_fps
    if video is None:
        raise ValueError("content has no video")
    if isinstance(video, Path):
        return sample_video(
            video, fps=fps, max_frames=media.max_frames, max_pixels=media.max_image_pixels
        )
    if video and isinstance(video[0], Frame):
        return list(video)  # type: ignore[arg-type]
    return [
        Frame(timestamp=i / fps, image=_frame_image(video[i], media))  # type: ignore[arg-type]
        for i in thin_indices(len(video), media.max_frames)
    ]


def with_sampling(media: MediaConfig, fps: float | None, max_frames: int | None) -> MediaConfig:
    """``media`` with a request's video sampling settings (None: as configured)."""
    updates: dict[str, float | int] = {}
    if fps is not None:
        updates["video_fps"] = fps
    if max_frames is not None:
        updates["max_frames"] = max_frames
    return media.model_copy(update=updates) if updates else media


def _frame_image(item: Path | Image.Image, media: MediaConfig) -> Image.Image:
    if isinstance(item, Image.Image):
        return item
    from pipeline.media import load_image

    return load_image(Path(item), max_pixels=media.max_image_pixels)


def check_query_media(query: Content, media: MediaConfig) -> None:
    """Raise MediaError, naming the file, for a query image or video that cannot be read:
    called before any model loads, so a typo costs no model start-up."""
    from pipeline.media import load_image, probe_video

    if isinstance(query.image, Path):
        load_image(query.image, max_pixels=media.max_image_pixels)
    if isinstance(query.video, Path):
        probe_video(query.video)
    elif isinstance(query.video, list):
        for frame in query.video:
            if isinstance(frame, Path):
                load_image(frame, max_pixels=media.max_image_pixels)
