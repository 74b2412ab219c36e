"""The two ways of reaching sample targets: decoding in order, or seeking to each.

Both return, for every target tick, the first frame shown at or after it (the last frame
for targets past the end), each frame once, in order. Only those frames are converted to
RGB, which is most of the cost of a frame nobody looks at.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import av
from av.container import InputContainer
from av.video.frame import VideoFrame
from av.video.reformatter import VideoReformatter
from av.video.stream import VideoStream
from PIL import Image

from pipeline.media.video_probe import Probe

TimedFrame = tuple[int, VideoFrame]

_ROTATIONS = {1: Image.Transpose.ROTATE_90, 2: Image.Transpose.ROTATE_180,
              3: Image.Transpose.ROTATE_270}  # fmt: skip


@dataclass(frozen=True)
class Picked:
    ticks: int
    image: Image.Image


class SeekFailed(Exception):
    """The demuxer cannot seek; the caller decodes in order instead."""


class Decoder:
    """Decoded frames of one stream with their presentation ticks, from the start or
    from a seek.

    Most containers store presentation times. AVI stores none, and FFmpeg's guesses for
    AVI streams with B-frames come out of order, so there a frame's time is its decode
    time less the decoder's reorder delay. Frames flushed at the end may carry no time at
    all; they follow the previous frame by one frame period.

    A packet the codec rejects is skipped and counted, as players do, so one damaged
    packet does not cost the whole video.
    """

    def __init__(self, container: InputContainer, stream: VideoStream, probe: Probe) -> None:
        self.container = container
        self.stream = stream
        self.bad_packets = 0
        self.first_error: str | None = None
        self._decode_order = container.format.name == "avi"
        self._step = probe.clock.frame_ticks or 1
        self._delay = stream.codec_context.reorder_depth * self._step
        self._previous: int | None = None
        # One converter for the whole video: a fresh one per frame re-creates the
        # colour-conversion context each time.
        self._to_rgb = VideoReformatter()

    def frames(self) -> Iterator[TimedFrame]:
        for packet in self.container.demux(self.stream):
            try:
                decoded = packet.decode()
            except av.InvalidDataError as exc:
                self.bad_packets += 1
                self.first_error = self.first_error or exc.strerror or str(exc)
                continue
            for frame in decoded:
                yield self._ticks(frame), frame

    def frames_after_seek(self, ticks: int) -> Iterator[TimedFrame]:
        """Frames from the keyframe at or before ``ticks`` (by the demuxer's index)."""
        try:
            self.container.seek(ticks, stream=self.stream, backward=True)
        except av.FFmpegError as exc:
            raise SeekFailed(str(exc)) from None
        self._previous = None
        return self.frames()

    def pick(self, ticks: int, frame: VideoFrame) -> Picked:
        image = self._to_rgb.reformat(frame, format="rgb24").to_image()
        # Phones store portrait video sideways plus a display rotation (counter-clockwise).
        turns = round((frame.rotation or 0) / 90) % 4
        if turns:
            image = image.transpose(_ROTATIONS[turns])
        return Picked(ticks=ticks, image=image)

    def _ticks(self, frame: VideoFrame) -> int:
        if self._decode_order:
            ticks = None if frame.dts is None else frame.dts - self._delay
        else:
            ticks = frame.pts if frame.pts is not None else frame.dts
        if ticks is None:
            if self._previous is None:
                raise av.InvalidDataError(0, "decoded frame carries no timestamp")
            ticks = self._previous + self._step
        self._previous = ticks
        return ticks


def sample_in_order(decoder: Decoder, targets: list[int]) -> list[Picked]:
    """One pass from the start. Frames between targets are decoded (later frames depend
    on them) but never converted, and decoding stops once the last target is reached."""
    picked: list[Picked] = []
    pending = iter(targets)
    target = next(pending, None)
    last: TimedFrame | None = None
    for ticks, frame in decoder.frames():
        last = ticks, frame
        if target is None or ticks < target:
            continue
        picked.append(decoder.pick(ticks, frame))
        while target is not None and target <= ticks:
            target = next(pending, None)
        if target is None:
            return picked
    if last is not None and (not picked or picked[-1].ticks != last[0]):
        picked.append(decoder.pick(*last))  # targets past the end take the final frame
    return picked


def sample_by_seeking(decoder: Decoder, targets: list[int], probe: Probe) -> list[Picked]:
    """One seek per target, to the keyframe before it, then decode up to the target."""
    picked: list[Picked] = []
    for target in targets:
        if picked and picked[-1].ticks >= target:
            continue  # the previous frame already covers this target
        found = _first_frame_from(decoder, target, probe)
        if found is None:
            break
        ticks, frame = found
        if not picked or ticks != picked[-1].ticks:
            picked.append(decoder.pick(ticks, frame))
        if ticks < target:
            break  # ran off the end: every later target gets this same last frame
    return picked


def _first_frame_from(decoder: Decoder, target: int, probe: Probe) -> TimedFrame | None:
    """The first frame at or after ``target``, or the last frame if none is."""
    origin = probe.clock.origin
    backoff = math.ceil(max(probe.info.keyframe_interval, 1.0) / probe.clock.time_base)
    seek_to = target
    while True:
        frames = decoder.frames_after_seek(seek_to)
        first = next(frames, None)
        # Demuxers may index keyframes by decode time, and open-GOP decoders drop frames
        # that lean on the previous GOP, so a seek can land after frames we need. Only a
        # first frame at or before the target proves nothing was skipped; otherwise step
        # further back, down to the very start.
        if seek_to <= origin or (first is not None and first[0] <= target):
            break
        seek_to = max(origin, target - backoff)
        backoff *= 2
    if first is None or first[0] >= target:
        return first
    last = first
    for timed in frames:
        if timed[0] >= target:
            return timed
        last = timed
    return last
