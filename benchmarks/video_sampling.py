"""Video sampling cost against decoding every frame, on a synthetic clip, in one run.

Makes (once, cached under --out) a 320x240 H.264 clip with a long GOP and one with a short
GOP, then times sample_video at several rates with each strategy next to a full decode
that converts every frame to RGB. Seek and sequential results are checked to be identical.
Speedups use CPU seconds, which other work on a shared machine disturbs far less than wall
time (decoding here is single-threaded); wall seconds are shown too.

    python benchmarks/video_sampling.py --minutes 10 --out runs/video_sampling
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

import av
from av.video.reformatter import VideoReformatter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.media import Strategy, probe_video, sample_video
from pipeline.schema import Frame
from tests.media_factory import make_video

STRATEGIES: tuple[Strategy, ...] = ("auto", "seek", "sequential")
NO_LIMIT = 10**6
T = TypeVar("T")


@dataclass(frozen=True)
class Timing:
    cpu_s: float
    wall_s: float


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="clip length")
    parser.add_argument("--out", type=Path, default=Path("runs/video_sampling"), help="clip cache")
    parser.add_argument("--size", default="320x240", help="WIDTHxHEIGHT")
    parser.add_argument("--video-fps", type=int, default=25)
    parser.add_argument("--gops", default="250,12", help="keyframe spacings, in frames")
    parser.add_argument("--rates", default="0.5,1,2", help="sampling rates, frames/s")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    width, height = (int(v) for v in args.size.lower().split("x"))
    rates = [float(r) for r in args.rates.split(",")]
    for gop in (int(g) for g in args.gops.split(",")):
        clip = _clip(args.out, args.minutes, (width, height), args.video_fps, gop)
        _report(clip, rates)


def _report(clip: Path, rates: list[float]) -> None:
    info = probe_video(clip)
    full, frame_count = _timed(lambda: _decode_all(clip, to_rgb=True))
    bare, _ = _timed(lambda: _decode_all(clip, to_rgb=False))
    print(
        f"\n{clip.name}: {info.duration:.0f} s at {info.avg_fps:g} fps, keyframe every "
        f"{info.keyframe_interval:g} s, {clip.stat().st_size / 1e6:.1f} MB"
    )
    print(
        f"full decode + RGB of {frame_count} frames: {full.cpu_s:.2f} s CPU "
        f"({full.wall_s:.2f} s wall); decode alone {bare.cpu_s:.2f} s CPU"
    )
    columns = (("fps", 5), ("max", 6), ("strategy", 10), ("frames", 7), ("cpu s", 7),
               ("wall s", 7), ("speedup", 8))  # fmt: skip
    print(" ".join(f"{name:>{width}}" for name, width in columns))
    for rate, max_frames in [(rate, NO_LIMIT) for rate in rates] + [(1.0, 64)]:
        results = {s: _timed(partial(_sample, clip, rate, max_frames, s)) for s in STRATEGIES}
        if _digest(results["seek"][1]) != _digest(results["sequential"][1]):
            raise SystemExit(f"seek and sequential disagree at {rate} fps on {clip.name}")
        limit = "none" if max_frames == NO_LIMIT else str(max_frames)
        for strategy, (timing, frames) in results.items():
            print(
                f"{rate:5g} {limit:>6} {strategy:>10} {len(frames):7d} {timing.cpu_s:7.2f} "
                f"{timing.wall_s:7.2f} {full.cpu_s / timing.cpu_s:7.1f}x"
            )
    print("seek and sequential returned identical frames (timestamps and pixels) in every row")


def _clip(out: Path, minutes: float, size: tuple[int, int], fps: int, gop: int) -> Path:
    path = out / f"clip_{minutes:g}min_{size[0]}x{size[1]}_{fps}fps_gop{gop}.mp4"
    if not path.exists():
        logging.warning("encoding %s (cached for later runs)", path)
        partial = path.with_suffix(".partial.mp4")
        make_video(
            partial,
            seconds=minutes * 60,
            fps=fps,
            size=size,
            gop=gop,
            texture=True,
            options={"preset": "veryfast"},
        )
        partial.rename(path)
    return path


def _timed(work: Callable[[], T]) -> tuple[Timing, T]:
    cpu, wall = time.process_time(), time.perf_counter()
    result = work()
    return Timing(time.process_time() - cpu, time.perf_counter() - wall), result


def _decode_all(path: Path, to_rgb: bool) -> int:
    """Every frame decoded, and converted the way sample_video converts those it keeps."""
    count = 0
    reformatter = VideoReformatter()
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            if to_rgb:
                reformatter.reformat(frame, format="rgb24").to_image()
            count += 1
    return count


def _sample(path: Path, fps: float, max_frames: int, strategy: Strategy) -> list[Frame]:
    return sample_video(path, fps=fps, max_frames=max_frames, strategy=strategy)


def _digest(frames: list[Frame]) -> str:
    digest = hashlib.sha256()
    for frame in frames:
        digest.update(repr(frame.timestamp).encode())
        digest.update(frame.image.tobytes())
    return digest.hexdigest()


if __name__ == "__main__":
    main()
