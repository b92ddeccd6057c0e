"""Recording speed: a file's video holds every frame at the file's rate; a camera's (frames come
as fast as they are processed) is written in real time at a nominal rate, so a minute recorded
plays for a minute."""

from pathlib import Path

import cv2
import numpy as np

from gsmc_core.frames.recording import CAMERA_VIDEO_FPS, Recorder
from gsmc_core.frames.results import FrameResult
from gsmc_core.frames.sources import CameraSource, FrameSource
from gsmc_desktop.live.worker import LiveWorker, RecordRequest

CLASSES = ("neutral", "happiness")
GREYS = (0, 80, 160, 240)  # one grey per frame handed in, to tell them apart in the video


def _record(tmp_path: Path, timestamps: list[float], timed: bool) -> tuple[Recorder, list[int]]:
    recorder = Recorder(None, CLASSES, tmp_path / "video.mkv", 30.0, timed=timed)
    for i, (t, grey) in enumerate(zip(timestamps, GREYS, strict=False)):
        image = np.full((48, 64, 3), grey, np.uint8)
        recorder.write(i, t, FrameResult((), t, (64, 48), CLASSES), image)
    recorder.close()
    capture = cv2.VideoCapture(str(recorder.video_path))
    seen = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        seen.append(int(round(image.mean() / 80.0)) * 80)
    capture.release()
    return recorder, seen


def test_a_timed_recording_plays_in_real_time(tmp_path):
    # processed at ~4 fps with one frame too early: at 30 fps the video holds 0.5 s = 16 frames
    recorder, seen = _record(tmp_path, [0.0, 0.01, 0.1, 0.5], timed=True)
    assert recorder.video_frames == 16 and recorder.frames == 4
    # the frame that came before its 1/30 s was up is dropped; the others last until the next
    assert seen == [0] + [160] * 3 + [240] * 12
    assert "16 frames in video.mkv" in recorder.close()


def test_an_untimed_recording_holds_every_frame_once(tmp_path):
    recorder, seen = _record(tmp_path, [0.0, 0.01, 0.1, 0.5], timed=False)
    assert recorder.video_frames == 4
    assert seen == [0, 80, 160, 240]


class _Camera(CameraSource):
    def __init__(self) -> None:  # no device: only what the recorder is chosen by
        self.fps = None


class _File(FrameSource):
    fps = 25.0


def test_the_live_tab_records_a_camera_timed_and_a_file_frame_by_frame(tmp_path):
    worker = LiveWorker(camera_lister=lambda: [])
    model = type("Model", (), {"classes": CLASSES})()
    request = RecordRequest(tmp_path / "faces.csv", tmp_path / "faces.mkv")
    camera = worker._open_recorder(request, model, _Camera())
    assert camera.timed and camera.fps == CAMERA_VIDEO_FPS
    camera.close()
    video = worker._open_recorder(request, model, _File())
    assert not video.timed and video.fps == 25.0
    video.close()
