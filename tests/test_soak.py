"""`gsmc-desktop --soak`: the machinery that plays a real video through the real window with
recording on, and the checks it applies to the recording."""

import csv
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from gsmc_desktop.soak import check_recording, make_talking_head_video


@pytest.mark.slow
def test_short_soak_runs_to_the_end_with_a_whole_recording(tmp_path):
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_CONFIG_HOME": str(tmp_path / "config"),
           "XDG_STATE_HOME": str(tmp_path / "state")}
    done = subprocess.run([sys.executable, "-m", "gsmc_desktop", "--soak", str(tmp_path / "soak"),
                           "--soak-seconds", "4"], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "soak" / "soak.json").read_text())
    assert summary["ok"] and all(summary["checks"].values())
    assert summary["recording"]["source_frames"] == 120 == summary["recording"]["video_frames"]
    assert summary["recording"]["csv_rows"] == 120  # the talking head is in every frame, once
    assert summary["end"] == "end of talking_head.mp4"


def test_check_recording_sees_missing_frames_and_duplicate_rows(tmp_path):
    video = make_talking_head_video(tmp_path / "clip.mp4", seconds=0.5)  # 15 frames
    header = ["frame", "time_s", "face_id", "x", "y", "w", "h", "score", "expression"]
    rows = [[k, k / 30, 1, 0, 0, 10, 10, 0.9, "neutral"] for k in range(15)]
    rows.append([3, 0.1, 1, 0, 0, 10, 10, 0.9, "neutral"])  # face 1 twice in frame 3
    rows.append([40, 1.3, 1, 0, 0, 10, 10, 0.9, "neutral"])  # a frame the source does not have
    with open(tmp_path / "faces.csv", "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    report = check_recording(tmp_path / "faces.csv", video, source_frames=20)
    assert report["video_frames"] == 15 and report["source_frames"] == 20
    assert report["duplicate_face_rows"] == 1 and report["frames_out_of_range"] == 1
    assert report["csv_rows"] == 17 and report["frames_with_faces"] == 16
    frame = cv2.VideoCapture(str(video)).read()[1]
    assert frame.shape == (360, 640, 3) and float(np.std(frame)) > 10  # a real picture, not blank
