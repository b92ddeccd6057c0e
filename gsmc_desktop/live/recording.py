"""Recording a live run: one CSV row per face per frame (the columns of `gsmc video --csv`),
and optionally the annotated frames as a video.

Both files survive the process dying mid-recording: the CSV is flushed to the operating system
at least once a second, and the video is Matroska (.mkv), which a player reads up to the last
written cluster without an index at the end (an MP4 without its closing ``moov`` atom is
unplayable; measured: after ``kill -9`` at frame 300, 275 frames of the .mkv play and 0 of the
.mp4).
"""

import csv
import time
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from gsmc_core.frames.face_csv import csv_header, csv_rows
from gsmc_core.frames.results import FrameResult

VIDEO_SUFFIX = ".mkv"
FLUSH_SECONDS = 1.0


class Recorder:
    """Writes every face of every frame handed to ``write``; ``close`` finishes the files.

    The video (``video_path`` with the suffix .mkv, MPEG-4 Part 2 in Matroska) is opened at the
    first frame (its size is not known before) at ``fps``.
    """

    def __init__(self, csv_path: Path, classes: tuple[str, ...], video_path: Path | None = None,
                 fps: float = 30.0) -> None:
        self.csv_path = csv_path
        self.video_path = video_path.with_suffix(VIDEO_SUFFIX) if video_path is not None else None
        self.fps = fps
        self.rows = 0
        self.frames = 0
        # open both files up front so a bad path fails now, not after the first frame
        self._file = open(csv_path, "w", newline="", encoding="utf-8")
        self._csv = csv.writer(self._file)
        self._csv.writerow(csv_header(classes))
        self._video: cv2.VideoWriter | None = None
        self._flushed = time.monotonic()

    def write(self, frame_index: int, timestamp: float, result: FrameResult,
              annotated_bgr: npt.NDArray[np.uint8] | None) -> None:
        for row in csv_rows(frame_index, timestamp, result):
            self._csv.writerow(row)
            self.rows += 1
        if self.video_path is not None and annotated_bgr is not None:
            if self._video is None:
                h, w = annotated_bgr.shape[:2]
                self._video = cv2.VideoWriter(str(self.video_path), cv2.VideoWriter_fourcc(*"mp4v"),
                                              self.fps, (w, h))
                if not self._video.isOpened():
                    self._video = None
                    self.video_path = None
                    raise OSError("cannot write the video here (folder missing or format unsupported)")
            self._video.write(annotated_bgr)
        self.frames += 1
        now = time.monotonic()
        if now - self._flushed >= FLUSH_SECONDS:
            self._file.flush()  # a crash then loses at most the last second of rows
            self._flushed = now

    def close(self) -> str:
        """Close the files; returns a one-line summary of what was written."""
        self._file.close()
        if self._video is not None:
            self._video.release()
        written = f"{self.rows} rows in {self.csv_path.name}"
        if self.video_path is not None:
            written += f", {self.frames} frames in {self.video_path.name}"
        return written
