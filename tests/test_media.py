"""Media decoding on real files: every image format, EXIF rotation, bombs, broken files,
content sniffing, and video sampling checked frame by frame against the index each
synthetic frame draws (tests/media_factory.py)."""

from __future__ import annotations

import bisect
import itertools
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.media import (
    MediaError,
    detect_kind,
    load_image,
    probe_video,
    read_text,
    sample_times,
    sample_video,
)
from tests.media_factory import (
    BLUE,
    GREEN,
    QUADRANTS,
    RED,
    WHITE,
    frame_index,
    make_animation,
    make_bad_files,
    make_image,
    make_png_bomb,
    make_video,
    quadrant_colours,
)

STRATEGIES = ("auto", "seek", "sequential")


def _close(colour: tuple[int, ...], expected: tuple[int, ...], tolerance: int = 12) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(colour, expected, strict=True))


def _same_colours(image: Image.Image, expected: tuple[tuple[int, int, int], ...]) -> bool:
    return all(_close(c, e) for c, e in zip(quadrant_colours(image), expected, strict=True))


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_bad_files(tmp_path_factory.mktemp("bad"))


# --- images ------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp", ".gif", ".bmp", ".tif"])
def test_each_image_format_decodes_to_rgb(tmp_path: Path, suffix: str) -> None:
    image = load_image(make_image(tmp_path / f"quads{suffix}"))
    assert image.mode == "RGB"
    assert image.size == (64, 48)
    assert _same_colours(image, QUADRANTS)


@pytest.mark.parametrize(("mode", "suffix"), [("L", ".png"), ("P", ".png"), ("CMYK", ".jpg")])
def test_other_colour_modes_come_out_rgb(tmp_path: Path, mode: str, suffix: str) -> None:
    image = load_image(make_image(tmp_path / f"m{suffix}", mode=mode))
    expected = quadrant_colours(Image.open(tmp_path / f"m{suffix}").convert("RGB"))
    assert image.mode == "RGB"
    assert _same_colours(image, expected)


def test_bytes_give_the_same_image_as_the_path(tmp_path: Path) -> None:
    path = make_image(tmp_path / "q.png")
    from_bytes = load_image(path.read_bytes())
    assert np.array_equal(np.asarray(from_bytes), np.asarray(load_image(path)))


def test_image_stays_usable_after_its_file_changes(tmp_path: Path) -> None:
    path = make_image(tmp_path / "q.jpg")
    image = load_image(path)
    path.write_bytes(b"overwritten")
    path.unlink()
    assert _same_colours(image.copy(), QUADRANTS)


def test_transparent_pixels_are_shown_on_white(tmp_path: Path) -> None:
    pixels = np.zeros((48, 64, 4), np.uint8)  # black, fully transparent
    pixels[:, 32:] = (0, 0, 255, 255)  # right half opaque blue
    Image.fromarray(pixels, "RGBA").save(tmp_path / "alpha.png")
    colours = quadrant_colours(load_image(tmp_path / "alpha.png"))
    assert colours == (WHITE, BLUE, WHITE, BLUE)


def test_sixteen_bit_grey_keeps_its_tones(tmp_path: Path) -> None:
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (8, 1))
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    row = np.asarray(load_image(tmp_path / "deep.png"))[0, :, 0].astype(int)
    assert row[0] == 0 and row[-1] == 255
    assert np.all(np.diff(row) >= 0) and len(set(row.tolist())) > 50


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp"])
@pytest.mark.parametrize(
    ("orientation", "size", "layout"),
    [
        (1, (64, 48), (RED, GREEN, BLUE, WHITE)),
        (3, (64, 48), (WHITE, BLUE, GREEN, RED)),  # stored upside down
        (6, (48, 64), (BLUE, RED, WHITE, GREEN)),  # display turns it 90 degrees clockwise
        (8, (48, 64), (GREEN, WHITE, RED, BLUE)),  # display turns it 90 degrees anticlockwise
    ],
)
def test_exif_orientation_is_applied(
    tmp_path: Path, suffix: str, orientation: int, size: tuple[int, int], layout: tuple
) -> None:
    image = load_image(make_image(tmp_path / f"o{suffix}", exif_orientation=orientation))
    assert image.size == size
    assert _same_colours(image, layout)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animated_images_give_their_first_frame(tmp_path: Path, fmt: str) -> None:
    path = make_animation(tmp_path / f"anim.{fmt.lower()}", [GREEN, RED, BLUE], fmt=fmt)
    assert Image.open(path).n_frames == 3
    assert set(quadrant_colours(load_image(path))) == {GREEN}


def test_bomb_is_refused_from_its_header(bad_files: dict[str, Path], tmp_path: Path) -> None:
    bomb = bad_files["bomb.png"]
    assert bomb.stat().st_size < 100_000
    with pytest.raises(MediaError, match=r"144,000,000 pixels") as caught:
        load_image(bomb)
    assert "decompression bomb" in caught.value.reason
    # Cut the bomb after its header: had any pixel been decoded first, this would fail
    # as truncated instead of as too big.
    header_only = tmp_path / "header_only.png"
    header_only.write_bytes(bomb.read_bytes()[:100])
    with pytest.raises(MediaError, match="decompression bomb"):
        load_image(header_only)


def test_bomb_past_pils_own_hard_limit_is_a_media_error(tmp_path: Path) -> None:
    bomb = make_png_bomb(tmp_path / "huge.png", 13_400)  # over twice PIL's default limit
    with pytest.raises(MediaError, match="decompression bomb"):
        load_image(bomb)
    assert detect_kind(bomb) == "image"


def test_pixel_limit_is_inclusive(tmp_path: Path) -> None:
    path = make_image(tmp_path / "q.png", size=(64, 48))
    assert load_image(path, max_pixels=64 * 48).size == (64, 48)
    with pytest.raises(MediaError, match="over the 3,071 limit"):
        load_image(path, max_pixels=64 * 48 - 1)


@pytest.mark.parametrize(
    "name",
    [
        "empty.jpg",
        "truncated.jpg",
        "random.jpg",
        "bomb.png",
        "text.png",
        "truncated.mp4",
        "fake_header.mp4",
        "audio_only.avi",
    ],
)
def test_bad_image_files_raise_media_error(bad_files: dict[str, Path], name: str) -> None:
    path = bad_files[name]
    with pytest.raises(MediaError) as caught:
        load_image(path)
    assert caught.value.item == str(path)
    assert caught.value.reason
    assert str(caught.value) == f"{path}: {caught.value.reason}"


def test_truncated_and_empty_reasons_say_so(bad_files: dict[str, Path]) -> None:
    with pytest.raises(MediaError, match="truncated"):
        load_image(bad_files["truncated.jpg"])
    with pytest.raises(MediaError, match="empty"):
        load_image(bad_files["empty.jpg"])
    with pytest.raises(MediaError, match="empty"):
        load_image(b"")


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="not found"):
        load_image(tmp_path / "absent.jpg")
    with pytest.raises(MediaError, match="directory"):
        load_image(tmp_path)
    with pytest.raises(MediaError, match="not found"):
        sample_video(tmp_path / "absent.mp4")
    with pytest.raises(MediaError, match="not found"):
        detect_kind(tmp_path / "absent.txt")


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads mode-000 files"
)
def test_unreadable_file(bad_files: dict[str, Path]) -> None:
    with pytest.raises(MediaError, match="permission denied"):
        load_image(bad_files["unreadable.jpg"])


def test_media_error_survives_pickling() -> None:
    error = pickle.loads(pickle.dumps(MediaError("a/b.jpg", "truncated image data")))
    assert (error.item, error.reason, str(error)) == (
        "a/b.jpg",
        "truncated image data",
        "a/b.jpg: truncated image data",
    )


# --- text --------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16"])
def test_read_text_handles_byte_order_marks(tmp_path: Path, encoding: str) -> None:
    text = "Crème brûlée, 東京, emoji 🚀\nsecond line"
    path = tmp_path / "note.txt"
    path.write_bytes(text.encode(encoding))
    assert read_text(path) == text


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"caf\xe9 latin-1", "not valid utf-8"),
        ("utf-16 without a mark".encode("utf-16-le"), "binary"),
        (b"", "empty"),
    ],
)
def test_read_text_refuses_what_is_not_text(tmp_path: Path, data: bytes, reason: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(data)
    with pytest.raises(MediaError, match=reason):
        read_text(path)


# --- detect_kind -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def disguised(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Files whose names lie about (or say nothing of) their content."""
    root = tmp_path_factory.mktemp("disguised")
    files = {
        "image_as.txt": make_image(root / "image_as.txt", fmt="JPEG"),
        "png_as.mp4": make_image(root / "png_as.mp4", fmt="PNG"),
        "gif_no_suffix": make_animation(root / "gif_no_suffix", [RED, GREEN]),
        "notes.md": root / "notes.md",
    }
    files["notes.md"].write_text("# Notes\n\nPlain text – with “quotes”.\n", encoding="utf-8")
    for name, codec in [("v.mp4", "libx264"), ("v.mkv", "libx264"), ("v.webm", "libvpx"),
                        ("v.avi", "mpeg4"), ("v.mov", "libx264")]:  # fmt: skip
        make_video(root / name, seconds=0.4, fps=10, codec=codec)
    (root / "v.mp4").rename(root / "video_as.jpg")
    files.update({n: root / n for n in ("video_as.jpg", "v.mkv", "v.webm", "v.avi", "v.mov")})
    return files


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("image_as.txt", "image"),
        ("png_as.mp4", "image"),
        ("gif_no_suffix", "image"),
        ("notes.md", "text"),
        ("video_as.jpg", "video"),
        ("v.mkv", "video"),
        ("v.webm", "video"),
        ("v.avi", "video"),
        ("v.mov", "video"),
    ],
)
def test_detect_kind_reads_content_not_names(
    disguised: dict[str, Path], name: str, kind: str
) -> None:
    assert detect_kind(disguised[name]) == kind


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("empty.jpg", None),
        ("random.jpg", None),
        ("truncated.mp4", None),
        ("fake_header.mp4", None),
        ("audio_only.avi", None),
        ("text.png", "text"),
        ("truncated.jpg", "image"),  # an image by content; load_image says what is wrong
        ("bomb.png", "image"),
    ],
)
def test_detect_kind_of_bad_files(bad_files: dict[str, Path], name: str, kind: str) -> None:
    assert detect_kind(bad_files[name]) == kind


# --- sample_times ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("duration", "fps", "max_frames", "expected"),
    [
        (10.0, 1.0, 64, [float(i) for i in range(10)]),
        (10.5, 1.0, 64, [float(i) for i in range(11)]),
        (2.0, 2.0, 64, [0.0, 0.5, 1.0, 1.5]),
        (0.0, 1.0, 8, [0.0]),
        (0.4, 1.0, 8, [0.0]),
        (100.0, 1.0, 5, [0.0, 25.0, 50.0, 74.0, 99.0]),
        (10.0, 1.0, 1, [0.0]),
    ],
)
def test_sample_times_examples(
    duration: float, fps: float, max_frames: int, expected: list[float]
) -> None:
    assert sample_times(duration, fps, max_frames) == expected


@pytest.mark.parametrize("duration", [0.3, 7.0, 59.99, 600.0, 7201.5])
@pytest.mark.parametrize("fps", [0.25, 1.0, 3.0, 29.97])
@pytest.mark.parametrize("max_frames", [1, 2, 7, 64])
def test_sample_times_thin_uniformly(duration: float, fps: float, max_frames: int) -> None:
    unthinned = [i / fps for i in range(int(duration * fps) + 2) if i / fps < duration]
    times = sample_times(duration, fps, max_frames)
    assert len(times) == min(len(unthinned), max_frames)
    assert set(times) <= set(unthinned) and times[0] == 0.0
    assert all(a < b for a, b in itertools.pairwise(times))
    if len(times) > 2:
        steps = np.diff(np.round(np.array(times) * fps))
        assert steps.max() - steps.min() <= 1  # evenly spread, to the nearest frame
        assert times[-1] == unthinned[-1]


@pytest.mark.parametrize(("duration", "fps", "max_frames"), [(-1, 1, 1), (1, 0, 1), (1, 1, 0)])
def test_sample_times_rejects_bad_arguments(duration: float, fps: float, max_frames: int) -> None:
    with pytest.raises(ValueError):
        sample_times(duration, fps, max_frames)


# --- video -------------------------------------------------------------------------------

VFR_TIMES = [0, 0.04, 0.1, 0.5, 0.52, 1.3, 1.31, 2.0, *(2 + 0.13 * i for i in range(1, 15))]

# name -> make_video arguments; all 4 s at 25 fps unless frame_times are given.
VIDEOS: dict[str, dict] = {
    "h264.mp4": {"codec": "libx264", "gop": 10},
    "h264.mov": {"codec": "libx264", "gop": 25},
    "h264_long_gop.mkv": {"codec": "libx264", "gop": 250},
    "h264_open_gop.mkv": {
        "codec": "libx264",
        "options": {"x264-params": "keyint=12:min-keyint=12:scenecut=0:open-gop=1"},
    },
    "vp8.webm": {"codec": "libvpx", "gop": 10},
    "vp9.webm": {"codec": "libvpx-vp9", "gop": 30},
    "mpeg4.avi": {"codec": "mpeg4", "gop": 12},
    # Both below index keyframes by decode time, so a plain seek lands past some targets.
    "mpeg4_bframes.avi": {"codec": "mpeg4", "gop": 12, "options": {"bf": "2"}},
    "hevc.mp4": {"codec": "libx265", "gop": 10},
    "h264_bframes.avi": {"codec": "libx264", "gop": 25},
    "every_frame_key.mp4": {"codec": "libx264", "gop": 1},
    "late_start.mkv": {"codec": "libx264", "gop": 10, "start": 2.0},
    "late_start.mp4": {"codec": "libx264", "gop": 10, "start": 1.52},
    "vfr.mkv": {"codec": "libx264", "gop": 5, "frame_times": VFR_TIMES},
}


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, list[float]]]:
    root = tmp_path_factory.mktemp("videos")
    return {
        name: (root / name, make_video(root / name, seconds=4.0, fps=25, **args))
        for name, args in VIDEOS.items()
    }


def _expected_indices(times: list[float], duration: float, fps: float, max_frames: int):
    """The reference: for each target, the first frame shown at or after it."""
    indices: list[int] = []
    for target in sample_times(duration, fps, max_frames):
        index = min(bisect.bisect_left(times, target - 1e-9), len(times) - 1)
        if not indices or indices[-1] != index:
            indices.append(index)
    return indices


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("name", list(VIDEOS))
def test_sampled_frames_match_the_reference(
    videos: dict[str, tuple[Path, list[float]]], name: str, strategy: str
) -> None:
    path, times = videos[name]
    duration = probe_video(path).duration
    frames = sample_video(path, fps=3.0, max_frames=64, strategy=strategy)
    indices = [frame_index(f.image) for f in frames]
    assert indices == _expected_indices(times, duration, 3.0, 64)
    for frame, index in zip(frames, indices, strict=True):
        assert frame.image.mode == "RGB" and frame.image.size == (64, 48)
        assert frame.timestamp == pytest.approx(times[index], abs=1e-3)


@pytest.mark.parametrize("name", list(VIDEOS))
def test_seek_and_sequential_return_identical_frames(
    videos: dict[str, tuple[Path, list[float]]], name: str
) -> None:
    path, _ = videos[name]
    for fps, max_frames in [(7.0, 64), (1.0, 3)]:
        by_seek = sample_video(path, fps=fps, max_frames=max_frames, strategy="seek")
        in_order = sample_video(path, fps=fps, max_frames=max_frames, strategy="sequential")
        assert [f.timestamp for f in by_seek] == [f.timestamp for f in in_order]
        for a, b in zip(by_seek, in_order, strict=True):
            assert np.array_equal(np.asarray(a.image), np.asarray(b.image))


def test_fps_and_max_frames_are_honoured(videos: dict[str, tuple[Path, list[float]]]) -> None:
    path, times = videos["h264.mp4"]
    two_per_second = sample_video(path, fps=2.0)
    # Targets every 0.5 s; at 25 fps the frames shown then start at 0, 0.52, 1.0, 1.52...
    assert [frame_index(f.image) for f in two_per_second] == [0, 13, 25, 38, 50, 63, 75, 88]
    thinned = sample_video(path, fps=2.0, max_frames=3)
    assert [frame_index(f.image) for f in thinned] == [0, 50, 88]  # targets 0 s, 2 s, 3.5 s
    # Faster than the video's own 25 fps: every frame once, never a duplicate.
    every = sample_video(path, fps=60.0, max_frames=1000)
    assert [frame_index(f.image) for f in every] == list(range(len(times)))


def test_timestamps_are_within_one_frame_of_their_targets(
    videos: dict[str, tuple[Path, list[float]]],
) -> None:
    path, _ = videos["vp8.webm"]
    frames = sample_video(path, fps=3.0)
    targets = sample_times(probe_video(path).duration, 3.0, 64)
    for frame, target in zip(frames, targets, strict=True):
        assert target <= frame.timestamp < target + 1 / 25


def test_late_start_is_timed_from_the_first_frame(
    videos: dict[str, tuple[Path, list[float]]],
) -> None:
    for name in ("late_start.mkv", "late_start.mp4"):
        first = sample_video(videos[name][0], fps=1.0)[0]
        assert (first.timestamp, frame_index(first.image)) == (0.0, 0)
        assert probe_video(videos[name][0]).duration == pytest.approx(4.0, abs=0.05)


@pytest.mark.parametrize(
    ("name", "duration", "keyframe_interval"),
    [
        ("h264.mp4", 4.0, 0.4),
        ("h264_long_gop.mkv", 4.0, 4.0),  # one keyframe: spacing is at least the clip
        ("vp8.webm", 4.0, 0.4),
        ("mpeg4.avi", 4.0, 0.48),
    ],
)
def test_probe_video_reports_timing(
    videos: dict[str, tuple[Path, list[float]]],
    name: str,
    duration: float,
    keyframe_interval: float,
) -> None:
    info = probe_video(videos[name][0])
    assert info.duration == pytest.approx(duration, abs=0.05)
    assert info.avg_fps == pytest.approx(25.0)
    assert (info.width, info.height) == (64, 48)
    assert info.frame_count == 100
    assert info.keyframe_interval == pytest.approx(keyframe_interval, abs=0.01)


def test_rotation_metadata_is_applied(tmp_path: Path) -> None:
    path = tmp_path / "portrait.mp4"
    make_video(path, seconds=1.0, fps=10, rotation=90)
    frames = sample_video(path, fps=2.0)
    assert all(f.image.size == (48, 64) for f in frames)
    # Stored anticlockwise-turned: undoing it must bring the index grid back.
    upright = [f.image.transpose(Image.Transpose.ROTATE_270) for f in frames]
    assert [frame_index(image) for image in upright] == [0, 5]


def test_single_frame_video(tmp_path: Path) -> None:
    path = tmp_path / "still.mkv"
    make_video(path, frame_times=[0.0])
    frames = sample_video(path, fps=1.0)
    assert [(f.timestamp, frame_index(f.image)) for f in frames] == [(0.0, 0)]


@pytest.mark.parametrize(
    "name", ["empty.jpg", "truncated.mp4", "fake_header.mp4", "audio_only.avi", "random.jpg"]
)
def test_bad_videos_raise_media_error(bad_files: dict[str, Path], name: str) -> None:
    for call in (probe_video, sample_video):
        with pytest.raises(MediaError) as caught:
            call(bad_files[name])
        assert caught.value.item == str(bad_files[name]) and caught.value.reason


def test_images_and_text_are_not_videos(tmp_path: Path, bad_files: dict[str, Path]) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("Plain words.\n")
    with pytest.raises(MediaError, match="not a readable video"):
        sample_video(text)
    # FFmpeg opens still images and GIFs as one-frame "videos"; those are refused.
    for path in (make_image(tmp_path / "q.jpg"), make_animation(tmp_path / "a.gif", [RED])):
        with pytest.raises(MediaError, match="not a supported video container"):
            sample_video(path)


def test_video_over_the_pixel_limit_is_refused(
    videos: dict[str, tuple[Path, list[float]]],
) -> None:
    with pytest.raises(MediaError, match="pixel limit"):
        sample_video(videos["h264.mp4"][0], max_pixels=64 * 48 - 1)
