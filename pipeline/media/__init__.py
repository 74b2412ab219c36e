"""Media decoding: images, text and sampled video frames, each failure a MediaError."""

from pipeline.media.errors import MediaError
from pipeline.media.images import DEFAULT_MAX_PIXELS, IMAGE_FORMATS, decode_image, load_image
from pipeline.media.kinds import MediaKind, detect_kind
from pipeline.media.text import read_text
from pipeline.media.video import (
    Strategy,
    frames_at,
    probe_video,
    sample_times,
    sample_video,
    thin_indices,
)
from pipeline.media.video_probe import VIDEO_CONTAINERS, VideoInfo

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_FORMATS",
    "VIDEO_CONTAINERS",
    "MediaError",
    "MediaKind",
    "Strategy",
    "VideoInfo",
    "decode_image",
    "detect_kind",
    "frames_at",
    "load_image",
    "probe_video",
    "read_text",
    "sample_times",
    "sample_video",
    "thin_indices",
]
