"""The rate the Live tab's status bar shows: the real clip (640x360) played at speed "max" with
the default model, offscreen, for a number of seconds; prints the status-bar rate each second
and the frames that reached the screen per second overall (docs/performance.md).

    QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/live_rate.py [--seconds 15] [--busy-core]
"""

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

import cv2
from PySide6.QtWidgets import QApplication

from gsmc_core.frames.workloads import busy_core, clip_frames, read_clip
from gsmc_core.resources import DEFAULT_CHECKPOINT, asset_path
from gsmc_desktop.live.tab import LiveTab
from gsmc_desktop.model_handle import load_model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--busy-core", action="store_true", help="with one core kept busy")
    args = parser.parse_args()
    app = QApplication.instance() or QApplication(sys.argv[:1])
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp, "clip.mp4")
        writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 30, (640, 360))
        for frame in clip_frames(read_clip(str(asset_path("videos", "carphone_qcif.mp4"))), 1, 2000):
            writer.write(frame)
        writer.release()
        tab = LiveTab(camera_lister=lambda: [])
        rates: list[str] = []
        tab.rate_changed.connect(rates.append)
        tab.set_model(load_model(DEFAULT_CHECKPOINT, "cpu"))
        tab.speed_combo.setCurrentIndex(tab.speed_combo.findData(0.0))  # "max"
        tab.set_video(clip)
        tab.start()
        with busy_core() if args.busy_core else contextlib.nullcontext():
            while tab.frames_shown < 10:  # the model is ready and frames flow
                app.processEvents()
                time.sleep(0.005)
            start, shown, next_print = time.monotonic(), tab.frames_shown, time.monotonic() + 1
            while time.monotonic() - start < args.seconds:
                app.processEvents()
                time.sleep(0.002)
                if time.monotonic() >= next_print and rates:
                    print(f"status bar: {rates[-1]}", flush=True)
                    next_print += 1
            elapsed = time.monotonic() - start
            print(f"{(tab.frames_shown - shown) / elapsed:.1f} frames reached the screen per second "
                  f"over {elapsed:.0f} s ({'one core busy' if args.busy_core else 'idle'}); "
                  f"runtime {tab.last_frame.runtime}")
        tab.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
