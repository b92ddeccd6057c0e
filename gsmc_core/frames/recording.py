"""Recording a stream of results: one CSV row per face per frame (``face_table``'s stream
columns) and optionally the annotated frames as a video — Live ▸ Record and `gsmc video`.

Both files survive the process dying mid-recording: the CSV is flushed to the operating system
at least once a second, and a Matroska video (.mkv, the app's choice) is read by a player up to
the last written cluster without an index at the end (an MP4 without its closing ``moov`` atom
is unplayable; measured: after ``kill -9`` at frame 300, 275 frames of the .mkv play and 0 of
the .mp4). `gsmc video --out x.mp4` keeps the container asked for; ``--out x.mkv`` survives.
"""

import csv
import errno
import time
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from gsmc_core.frames.face_table import stream_header, stream_rows
from gsmc_core.frames.results import FrameResult

VIDEO_SUFFIX = ".mkv"
FLUSH_SECONDS = 1.0
CAMERA_VIDEO_FPS = 30.0  # a camera's recording plays in real time at this rate


class Recorder:
    """Writes every face of every frame handed to ``write``; ``close`` finishes the files.

    ``csv_path``: the table (None: none). ``video_path``: the annotated video, MPEG-4 Part 2 at
    ``fps``, opened at the first frame (its size is not known before); with ``matroska`` its
    suffix becomes .mkv. Frames of another size than the first (an image folder) are fitted.
    ``timed`` (a camera, whose frames come when processing allows): each frame is written as
    many times as its timestamp says (none when it comes early), so the video plays in real
    time at ``fps`` however fast frames were processed; otherwise every frame once.
    """

    def __init__(self, csv_path: Path | None, classes: tuple[str, ...], video_path: Path | None = None,
                 fps: float = 30.0, matroska: bool = True, timed: bool = False) -> None:
        self.csv_path = csv_path
        self.video_path = (video_path.with_suffix(VIDEO_SUFFIX) if matroska and video_path is not None
                           else video_path)
        self.fps = fps
        self.timed = timed
        self.rows = 0
        self.frames = 0
        self.video_frames = 0  # frames in the video (with ``timed``, copies included)
        self._start: float | None = None  # the first video frame's timestamp
        self._size: tuple[int, int] | None = None
        # open the table up front so a bad path fails now, not after the first frame
        self._file = open(csv_path, "w", newline="", encoding="utf-8") if csv_path is not None else None
        self._csv = csv.writer(self._file) if self._file is not None else None
        if self._csv is not None:
            self._csv.writerow(stream_header(classes))
        self._video: cv2.VideoWriter | None = None
        self._flushed = time.monotonic()

    def write(self, frame_index: int, timestamp: float, result: FrameResult,
              annotated_bgr: npt.NDArray[np.uint8] | None) -> None:
        if self._csv is not None:
            for row in stream_rows(frame_index, timestamp, result):
                self._csv.writerow(row)
                self.rows += 1
        if self.video_path is not None and annotated_bgr is not None:
            if self._video is None:
                h, w = annotated_bgr.shape[:2]
                self._size = (w, h)
                self._video = cv2.VideoWriter(str(self.video_path), cv2.VideoWriter_fourcc(*"mp4v"),
                                              self.fps, self._size)
                if not self._video.isOpened():
                    self._video = None
                    raise OSError(errno.EIO, "cannot write a video here (folder missing or format "
                                  "unsupported)", str(self.video_path))
                self._start = timestamp
            if (annotated_bgr.shape[1], annotated_bgr.shape[0]) != self._size:
                annotated_bgr = cv2.resize(annotated_bgr, self._size, interpolation=cv2.INTER_AREA)
            copies = 1
            if self.timed:  # the video holds a frame for each 1/fps s up to this one
                copies = int((timestamp - self._start) * self.fps) + 1 - self.video_frames
            for _ in range(copies):
                self._video.write(annotated_bgr)
            self.video_frames += max(copies, 0)
        self.frames += 1
        now = time.monotonic()
        if self._file is not None and now - self._flushed >= FLUSH_SECONDS:
            self._file.flush()  # a crash then loses at most the last second of rows
            self._flushed = now

    def close(self) -> str:
        """Close the files; returns a one-line summary of what was written."""
        try:
            if self._file is not None:
                self._file.close()
        finally:  # the video is released also when the CSV's last flush fails
            if self._video is not None:
                self._video.release()
        written = [f"{self.rows} rows in {self.csv_path.name}"] if self.csv_path is not None else []
        if self._video is not None:
            written.append(f"{self.video_frames} frames in {self.video_path.name}")
        return ", ".join(written) or "nothing"
