"""Opening a video and learning its timing from the header and packets, never decoding."""

from __future__ import annotations

import contextlib
import itertools
import math
import statistics
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
from av.container import InputContainer
from av.packet import Packet
from av.stream import Disposition
from av.video.stream import VideoStream
from pydantic import BaseModel, ConfigDict, Field

from pipeline.media._files import os_error_reason, require_content
from pipeline.media.errors import MediaError

VIDEO_CONTAINERS = frozenset({"mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "avi"})
"""FFmpeg demuxer names accepted as video. FFmpeg also opens still images, GIFs and even
``.txt`` files (its ``tty`` demuxer) as one-stream "videos"; those are not ours."""

# Without a per-frame index, keyframe spacing is read from packet flags over a bounded
# prefix: enough keyframes for a stable median without reading the whole file.
_SCAN_KEYFRAMES = 12
_SCAN_SECONDS = 60
_FAR_FUTURE_SECONDS = 10**7  # a seek target past any real end (about four months)
_FALLBACK_TIME_BASE = Fraction(1, 1000)


class VideoInfo(BaseModel):
    """What a video holds, read from its header and packets without decoding."""

    model_config = ConfigDict(frozen=True)

    duration: float = Field(ge=0.0, description="Seconds from the first frame to the end.")
    avg_fps: float = Field(ge=0.0)
    width: int = Field(ge=0, description="Coded width, before any rotation metadata.")
    height: int = Field(ge=0)
    frame_count: int = Field(ge=0, description="From the header when stored, else estimated.")
    keyframe_interval: float = Field(
        ge=0.0,
        description="Median seconds between keyframes; a lower bound when fewer than two "
        "keyframes were seen.",
    )


@dataclass(frozen=True)
class Clock:
    """Converts between a stream's ticks and seconds from its first frame."""

    origin: int
    time_base: Fraction
    frame_ticks: int
    """Ticks per frame at the average rate (0 when the rate is unknown)."""

    def seconds(self, ticks: int) -> float:
        return max(0.0, float((ticks - self.origin) * self.time_base))

    def ticks(self, seconds: float) -> int:
        # The slack keeps float error from pushing a target past a frame at exactly t.
        return self.origin + math.ceil(seconds / self.time_base - 1e-6)


@dataclass(frozen=True)
class Probe:
    info: VideoInfo
    clock: Clock


@contextmanager
def open_video(path: Path) -> Iterator[tuple[InputContainer, VideoStream]]:
    """The container and its main video stream; MediaError for anything unusable,
    including FFmpeg errors raised while the caller reads it."""
    require_content(path)
    try:
        container = av.open(str(path), mode="r", metadata_errors="replace")
    except (OSError, av.FFmpegError) as exc:
        raise MediaError(path, _av_reason(exc, "not a readable video")) from None
    try:
        if container.format.name not in VIDEO_CONTAINERS:
            raise MediaError(path, f"not a supported video container ({container.format.name})")
        stream = next(
            (s for s in container.streams.video if not s.disposition & Disposition.attached_pic),
            None,
        )
        if stream is None:
            raise MediaError(path, "container has no video stream")
        yield container, stream
    except (OSError, av.FFmpegError) as exc:
        raise MediaError(path, _av_reason(exc, "corrupt video data")) from None
    finally:
        container.close()


def probe(container: InputContainer, stream: VideoStream) -> Probe:
    time_base = stream.time_base or _FALLBACK_TIME_BASE
    rate = stream.average_rate or stream.guessed_rate
    frame_ticks = round(1 / (rate * time_base)) if rate else 0
    scan = _scan_start(container, stream, frame_ticks)
    origin = stream.start_time if stream.start_time is not None else scan.earliest
    clock = Clock(origin=origin or 0, time_base=time_base, frame_ticks=frame_ticks)
    duration = _duration(container, stream, clock, scan)
    avg_fps = float(rate) if rate else 0.0
    frame_count = stream.frames or round(duration * avg_fps)
    info = VideoInfo(
        duration=duration,
        avg_fps=avg_fps,
        width=stream.codec_context.width,
        height=stream.codec_context.height,
        frame_count=frame_count,
        keyframe_interval=_median_spacing(scan.keyframes, time_base),
    )
    return Probe(info=info, clock=clock)


def _av_reason(exc: Exception, default: str) -> str:
    if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError):
        return os_error_reason(exc)
    detail = getattr(exc, "strerror", None) or str(exc)
    return f"{default} ({detail})"


@dataclass
class _PacketScan:
    """What demuxing (never decoding) some packets of a stream told us."""

    keyframes: list[int] = field(default_factory=list)
    earliest: int | None = None
    end: int | None = None
    reached_eof: bool = False

    def add(self, packet: Packet, frame_ticks: int) -> None:
        pts = packet.pts
        if pts is None:
            return
        self.earliest = pts if self.earliest is None else min(self.earliest, pts)
        stop = pts + (packet.duration or frame_ticks)
        self.end = stop if self.end is None else max(self.end, stop)
        if packet.is_keyframe:
            self.keyframes.append(pts)


def _scan_start(container: InputContainer, stream: VideoStream, frame_ticks: int) -> _PacketScan:
    """Keyframe timestamps, plus what the first packets say when they had to be read.

    MP4/MOV and AVI index every frame with its keyframe flag in the header, so that index
    costs nothing to read. Matroska/WebM load their (keyframe-only, possibly sparse) cues
    lazily and fragmented or streamed files have none, so there a bounded prefix of packets
    is demuxed instead: no decoding, and the scan stops after a few keyframes.
    """
    entries = stream.index_entries
    if stream.start_time is not None and stream.frames and len(entries) >= stream.frames:
        return _PacketScan(keyframes=[e.timestamp for e in entries if e.is_keyframe])
    scan = _PacketScan()
    limit = _SCAN_SECONDS / (stream.time_base or _FALLBACK_TIME_BASE)
    for packet in container.demux(stream):
        scan.add(packet, frame_ticks)
        if (
            scan.earliest is not None
            and scan.end is not None
            and (len(scan.keyframes) >= _SCAN_KEYFRAMES or scan.end - scan.earliest >= limit)
        ):
            return _with_spacing_bound(scan)
    scan.reached_eof = True
    return _with_spacing_bound(scan)


def _with_spacing_bound(scan: _PacketScan) -> _PacketScan:
    if len(scan.keyframes) < 2 and scan.earliest is not None and scan.end is not None:
        # One keyframe in the whole span scanned: the spacing is at least that span.
        scan.keyframes = [scan.earliest, scan.end]
    return scan


def _median_spacing(ticks: list[int], time_base: Fraction) -> float:
    gaps = [b - a for a, b in itertools.pairwise(sorted(ticks)) if b > a]
    return float(statistics.median(gaps) * time_base) if gaps else 0.0


def _duration(
    container: InputContainer, stream: VideoStream, clock: Clock, scan: _PacketScan
) -> float:
    if stream.duration:
        return float(stream.duration * clock.time_base)
    # Matroska/WebM rarely store a per-stream duration, and their container duration
    # counts from timestamp 0 rather than from the first frame; the packets are exact.
    end = scan.end if scan.reached_eof else _tail_end(container, stream, clock)
    return 0.0 if end is None else clock.seconds(end)


def _tail_end(container: InputContainer, stream: VideoStream, clock: Clock) -> int | None:
    """Where the last packet ends, read from the packets after the last keyframe."""
    far_end = clock.origin + round(_FAR_FUTURE_SECONDS / clock.time_base)
    with contextlib.suppress(av.FFmpegError):  # unseekable: demux on from where we are
        container.seek(far_end, stream=stream, backward=True)
    tail = _PacketScan()
    for packet in container.demux(stream):
        tail.add(packet, clock.frame_ticks)
    return tail.end
