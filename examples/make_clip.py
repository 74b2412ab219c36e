"""Regenerates examples/media/launch_clip.mp4: an 8-second synthetic clip (a rocket-like
shape rising over a sky that darkens), made with PyAV and NumPy. Public domain (CC0)."""

from pathlib import Path

import av
import numpy as np

WIDTH, HEIGHT, FPS, SECONDS = 192, 144, 24, 8


def frame_at(index: int) -> np.ndarray:
    progress = index / (FPS * SECONDS)
    sky = np.array([90, 160, 235]) * (1.0 - 0.7 * progress)
    image = np.empty((HEIGHT, WIDTH, 3), dtype=np.uint8)
    image[:] = sky.astype(np.uint8)
    image[HEIGHT - 20 :] = (60, 110, 60)  # ground
    top = int((HEIGHT - 50) * (1.0 - progress))
    image[top : top + 30, WIDTH // 2 - 4 : WIDTH // 2 + 4] = (235, 235, 235)  # body
    image[top + 30 : top + 42, WIDTH // 2 - 6 : WIDTH // 2 + 6] = (250, 150, 30)  # flame
    return image


def main(out: Path = Path(__file__).parent / "media" / "launch_clip.mp4") -> None:
    with av.open(str(out), mode="w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"crf": "28", "g": "48"}
        for index in range(FPS * SECONDS):
            frame = av.VideoFrame.from_ndarray(frame_at(index), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


if __name__ == "__main__":
    main()
