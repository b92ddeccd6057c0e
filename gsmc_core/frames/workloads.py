"""What the speed benchmarks run on: frames of a real clip laid out at a chosen size and face
count, and a busy neighbour process. Only OpenCV and numpy, so other packages' pipelines can
be measured on the same frames (scripts/bench_fer.py)."""

import contextlib
import math
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence

import cv2
import numpy as np
import numpy.typing as npt

from gsmc_core.frames.sources import SourceError


def read_clip(path: str) -> list[npt.NDArray[np.uint8]]:
    """Every frame of a video file (BGR); a short clip only: all of it is kept in memory."""
    capture = cv2.VideoCapture(path)
    frames = []
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(frame)
    finally:
        capture.release()
    if not frames:
        raise SourceError(f"{path}: no frames could be decoded")
    return frames


def clip_frames(
    clip: Sequence[npt.NDArray[np.uint8]],
    faces: int = 1,
    count: int = 150,
    size: tuple[int, int] = (640, 360),
) -> Iterator[npt.NDArray[np.uint8]]:
    """``count`` frames of a real clip played forwards and backwards (so it can run for any
    length without a jump), each frame filling ``faces`` cells of a ``size`` grid: one cell is
    the whole frame, four are a 2 x 2 grid of the same talking head."""
    if not clip:
        raise SourceError("the clip has no frames")
    width, height = size
    cols = math.ceil(math.sqrt(faces))
    rows = math.ceil(faces / cols)
    cell_w, cell_h = width // cols, height // rows
    order = list(range(len(clip))) + list(range(len(clip) - 2, 0, -1))
    for t in range(count):
        source = clip[order[t % len(order)]]
        h, w = source.shape[:2]
        scale = max(cell_w / w, cell_h / h)  # fill the cell, cut the bottom (the head is on top)
        scaled = cv2.resize(source, (math.ceil(w * scale), math.ceil(h * scale)))
        x0 = (scaled.shape[1] - cell_w) // 2
        cell = scaled[:cell_h, x0 : x0 + cell_w]
        frame = np.zeros((height, width, 3), np.uint8)
        for k in range(faces):
            r, c = divmod(k, cols)
            frame[r * cell_h : (r + 1) * cell_h, c * cell_w : (c + 1) * cell_w] = cell
        yield frame


@contextlib.contextmanager
def busy_core() -> Iterator[None]:
    """Keep one core busy with another process (a Python spin loop) while inside: the load a
    browser or a video call puts beside the app."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)  # let the scheduler see it
        yield
    finally:
        spinner.kill()
        spinner.wait()


