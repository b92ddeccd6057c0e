"""One schema for every per-face file (face_table), and the CLI's recordings survive a kill."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import cv2
import pytest
from conftest import shared_path

from gsmc_core.cli import main
from gsmc_core.frames.bench import synthetic_frames
from gsmc_core.frames.face_table import FACE_COLUMNS, IMAGE_EXTRAS, IMAGE_KEYS, STREAM_KEYS, stream_header
from gsmc_core.labels import CANONICAL_CLASSES

PROBABILITIES = [f"p_{c}" for c in CANONICAL_CLASSES]


def test_predict_writes_the_image_table_and_its_json_says_the_same(tmp_path, capsys, random_checkpoint):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    table = tmp_path / "faces.csv"
    photo = shared_path("images", "astronaut.png")
    code = main(["predict", str(photo), str(broken), "--csv", str(table), "--json",
                 "--checkpoint", str(random_checkpoint)])
    assert code == 1  # one image could not be read
    entries = json.loads(capsys.readouterr().out)
    with open(table, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == [*IMAGE_KEYS, *FACE_COLUMNS, *PROBABILITIES, *IMAGE_EXTRAS]
    face_row, error_row = rows
    face = entries[0]["faces"][0]
    assert entries[0]["model"] == face_row["model"] == random_checkpoint.name
    assert int(face_row["face"]) == face["id"] == 1
    assert [int(face_row[k]) for k in ("x", "y", "w", "h")] == face["box"]
    assert float(face_row["score"]) == face["score"] and face_row["expression"] == face["expression"]
    assert [float(face_row[p]) for p in PROBABILITIES] == list(face["probabilities"].values())
    assert error_row["image"] == str(broken) and error_row["face"] == "" and error_row["x"] == ""
    assert entries[1]["error"] and error_row["error"] == entries[1]["error"]


def test_video_table_has_the_stream_columns():
    assert stream_header(CANONICAL_CLASSES) == [*STREAM_KEYS, *FACE_COLUMNS, *PROBABILITIES]


@pytest.mark.slow
def test_a_killed_gsmc_video_leaves_its_rows_and_a_playable_mkv(tmp_path, astronaut_rgb, random_checkpoint):
    """As the app's recordings: the table flushed every second, the .mkv readable to the last
    cluster; the targets themselves are not created by a run that did not finish."""
    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (320, 240))
    for frame in synthetic_frames(cv2.cvtColor(astronaut_rgb, cv2.COLOR_RGB2BGR), faces=1, count=1200,
                                  size=(320, 240)):
        writer.write(frame)
    writer.release()
    table, video = tmp_path / "faces.csv", tmp_path / "annotated.mkv"
    partial_table, partial_video = tmp_path / ".faces.partial.csv", tmp_path / ".annotated.partial.mkv"
    proc = subprocess.Popen([sys.executable, "-m", "gsmc_core.cli", "video", str(clip), "--csv", str(table),
                             "--out", str(video), "--checkpoint", str(random_checkpoint)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if partial_table.exists() and partial_table.read_text().count("\n") > 200:
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the run ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert not table.exists() and not video.exists()
    with open(partial_table, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) >= 200 and [int(r["frame"]) for r in rows[:200]] == list(range(200))
    capture = cv2.VideoCapture(str(partial_video))
    frames = 0
    while capture.read()[0]:
        frames += 1
    capture.release()
    assert frames >= 10
