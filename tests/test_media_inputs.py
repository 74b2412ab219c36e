"""A Content's video in each accepted form becomes the same kind of sampled frames."""

from pathlib import Path

from PIL import Image

from pipeline.config import MediaConfig
from pipeline.media_inputs import content_frames, content_image
from pipeline.schema import Content, Frame

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_frame_files_are_thinned_and_timed_at_the_content_fps(tmp_path):
    paths = []
    for i in range(10):
        paths.append(tmp_path / f"f{i}.png")
        Image.new("RGB", (8, 8), (i * 20, 0, 0)).save(paths[-1])
    frames = content_frames(Content(video=paths, fps=2.0), MediaConfig(max_frames=4))
    assert [f.timestamp for f in frames] == [0.0, 1.5, 3.0, 4.5]  # files 0, 3, 6, 9
    assert [f.image.getpixel((0, 0))[0] for f in frames] == [0, 60, 120, 180]


def test_video_file_uses_content_fps_over_config():
    video = EXAMPLES / "media" / "launch_clip.mp4"
    slow = content_frames(Content(video=video, fps=0.5), MediaConfig(video_fps=2.0))
    fast = content_frames(Content(video=video), MediaConfig(video_fps=2.0))
    assert len(slow) == 4 and len(fast) == 16


def test_given_frames_and_images_pass_through():
    frame = Frame(timestamp=3.0, image=Image.new("RGB", (4, 4)))
    assert content_frames(Content(video=[frame]), MediaConfig()) == [frame]
    grey = Image.new("L", (4, 4))
    assert content_image(Content(image=grey), MediaConfig()).mode == "RGB"
