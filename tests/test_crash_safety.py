"""What survives a hard crash: the recording's CSV rows up to the last second and a playable
annotated video; the crash's traceback in the rotating log file."""

import csv
import os
import subprocess
import sys
import textwrap
import time

import cv2
import numpy as np
import pytest

from gsmc_core.frames.recording import Recorder
from gsmc_core.frames.results import FrameResult

CLASSES = ("neutral", "happiness")


def _result() -> FrameResult:
    return FrameResult(faces=(), timestamp=0.0, size=(64, 48), classes=CLASSES)


def test_recorder_flushes_the_csv_every_second(tmp_path, monkeypatch):
    # one row per frame (a frame without faces has none): what matters is when rows reach the disk
    monkeypatch.setattr("gsmc_core.frames.recording.stream_rows",
                        lambda i, t, result: iter([[i, f"{t:.3f}"]]))
    recorder = Recorder(tmp_path / "faces.csv", CLASSES)
    try:
        recorder.write(0, 0.0, _result(), None)
        time.sleep(1.05)
        recorder.write(1, 1.0, _result(), None)
        on_disk = list(csv.reader((tmp_path / "faces.csv").read_text().splitlines()))
        assert [row[0] for row in on_disk[1:]] == ["0", "1"]  # written out before close()
    finally:
        recorder.close()


def test_video_is_matroska_and_playable_after_kill(tmp_path):
    csv_path = tmp_path / "faces.csv"
    script = textwrap.dedent(f"""
        import os, numpy as np
        from pathlib import Path
        from gsmc_core.frames.results import FrameResult
        from gsmc_core.frames.recording import Recorder
        video = Path({str(tmp_path / "faces.mp4")!r})  # asked as .mp4: written as .mkv
        r = Recorder(Path({str(csv_path)!r}), ("neutral", "happiness"), video, 30)
        print(r.video_path, flush=True)
        for i in range(240):
            frame = np.full((360, 640, 3), i % 250, np.uint8)
            r.write(i, i / 30, FrameResult((), i / 30, (640, 360), ("neutral", "happiness")), frame)
        os.kill(os.getpid(), 9)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == -9, done.stderr
    video = tmp_path / "faces.mkv"
    assert done.stdout.strip() == str(video)
    capture = cv2.VideoCapture(str(video))
    frames = 0
    while capture.read()[0]:
        frames += 1
    capture.release()
    assert frames >= 120, f"only {frames} of 240 frames play after the kill"


CRASHES = {
    # a segfault, as a broken native library gives: reported by faulthandler
    "segfault": ("ctypes.string_at(0)", "Segmentation fault"),
    # what a C extension corrupting reference counts ends in (none_dealloc): the interpreter
    # writes it to descriptor 2 with faulthandler off
    "fatal": ('ctypes.pythonapi.Py_FatalError(b"none_dealloc: deallocating None")',
              "Fatal Python error: none_dealloc"),
}


def _crash_script(crash: str, rollover: bool) -> str:
    return textwrap.dedent(f"""
        import ctypes, logging, sys
        from gsmc_desktop import app as app_module
        qt = app_module.create_application(["gsmc-desktop"])
        path = app_module.install_exception_hook(qt)
        print(path, flush=True)
        print("python-level message", file=sys.stderr, flush=True)
        if {rollover}:
            handler = next(h for h in app_module.log.handlers if isinstance(h, app_module.CrashLogHandler))
            handler.doRollover()
        def deep_in_the_app():
            {CRASHES[crash][0]}
        deep_in_the_app()
    """)


@pytest.mark.slow
@pytest.mark.parametrize("crash", sorted(CRASHES))
def test_hard_crash_leaves_its_traceback_in_the_log(tmp_path, crash):
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state"), "QT_QPA_PLATFORM": "offscreen"}
    for rollover in (False, True):
        done = subprocess.run([sys.executable, "-c", _crash_script(crash, rollover)], capture_output=True,
                              text=True, timeout=120, env=env)
        assert done.returncode != 0
        log_file = done.stdout.strip().splitlines()[0]
        assert log_file == str(tmp_path / "state" / "GSMC" / "log" / "gsmc-desktop.log")
        text = open(log_file, encoding="utf-8", errors="replace").read()
        assert CRASHES[crash][1] in text and "deep_in_the_app" in text, text[-2000:]
        assert "python-level message" in done.stderr  # Python's stderr still reaches the terminal
        if rollover:
            assert os.path.exists(log_file + ".1")


def test_log_rotates(tmp_path, monkeypatch):
    from gsmc_desktop import app as app_module

    handler = app_module.CrashLogHandler(tmp_path / "x.log")
    try:
        record = np.full(1000, ord("a"), np.uint8).tobytes().decode()
        logger = app_module.logging.getLogger("rotation-test")
        logger.addHandler(handler)
        for _ in range(2 * app_module.LOG_MAX_BYTES // 1000 + 10):
            logger.warning(record)
        assert (tmp_path / "x.log.1").is_file()
        assert (tmp_path / "x.log").stat().st_size < app_module.LOG_MAX_BYTES
    finally:
        logger.removeHandler(handler)
        handler.close()


def test_native_messages_go_to_the_log_and_rotate(tmp_path):
    from gsmc_desktop import app as app_module

    log_file = tmp_path / "gsmc-desktop.log"
    handler = app_module.CrashLogHandler(log_file, route_stderr=True)
    try:
        os.write(2, b"a native library says hello\n")  # what Qt, FFmpeg or MediaPipe write
        assert "a native library says hello" in log_file.read_text()
        os.write(2, b"x" * app_module.LOG_MAX_BYTES)  # no log record sees these
        handler.rotate_if_large()
        assert (tmp_path / "gsmc-desktop.log.1").stat().st_size > app_module.LOG_MAX_BYTES
        os.write(2, b"after the rotation\n")
        assert log_file.read_text() == "after the rotation\n"  # descriptor 2 followed the new file
    finally:
        handler.close()
    os.write(2, b"")  # descriptor 2 is usable again after close
