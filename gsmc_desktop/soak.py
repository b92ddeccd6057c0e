"""`gsmc-desktop --soak DIR`: play a long real video through the real main window with
recording on, and check that the app is still running at the end and the recording is whole.

The window runs as the user sees it (offscreen where there is no display); the default video
is the real talking head shipped in assets/videos, looped forwards and backwards to
``seconds`` at 640x360. Every 5 s the process's memory, the reference counts of None, True and
False (which a broken Qt binding drains until the app aborts) and the frame rate are sampled.
The summary (JSON, also written to DIR/soak.json) says whether the run reached the end of the
video, whether the annotated video holds every frame and whether the CSV has one row per face
per processed frame. Exit status 0 when all hold.
"""

import csv
import json
import sys
import time
from collections import Counter
from pathlib import Path

import cv2

SAMPLE_SECONDS = 5.0
VIDEO_FPS = 30.0


def make_talking_head_video(path: Path, seconds: float) -> Path:
    """``seconds`` of the shipped real clip at 640x360 and 30 fps (mp4v in .mp4)."""
    from gsmc_core.frames.workloads import clip_frames, read_clip
    from gsmc_core.resources import asset_path

    clip = read_clip(str(asset_path("videos", "carphone_qcif.mp4")))
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), VIDEO_FPS, (640, 360))
    if not writer.isOpened():
        raise OSError(f"{path}: cannot write a video here")
    try:
        for frame in clip_frames(clip, faces=1, count=round(seconds * VIDEO_FPS), size=(640, 360)):
            writer.write(frame)
    finally:
        writer.release()
    return path


def rss_mb() -> float | None:
    """Resident memory of this process in MB (Linux /proc; None elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def count_frames(path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    frames = 0
    while capture.grab():
        frames += 1
    capture.release()
    return frames


def check_recording(csv_path: Path, video_path: Path, source_frames: int) -> dict:
    """What the recording holds against the source: frames, rows, faces per frame (a recording
    that never opened holds nothing)."""
    rows = []
    if csv_path.is_file():
        with open(csv_path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    per_frame = Counter(int(r["frame"]) for r in rows)
    ids_per_frame = Counter((int(r["frame"]), r["face_id"]) for r in rows)
    recorded = count_frames(video_path) if video_path.is_file() else 0
    return {
        "source_frames": source_frames,
        "video_frames": recorded,
        "csv_rows": len(rows),
        "frames_with_faces": len(per_frame),
        "faces_per_frame_max": max(per_frame.values(), default=0),
        "duplicate_face_rows": sum(1 for n in ids_per_frame.values() if n > 1),
        "frames_out_of_range": sum(1 for k in per_frame if not 0 <= k < source_frames),
    }


def run_soak(out_dir: Path, video: Path | None = None, seconds: float = 190.0,
             checkpoint: Path | None = None) -> int:
    from PySide6.QtCore import QTimer

    from gsmc_core.frames.sources import VideoFileSource
    from gsmc_desktop.app import create_application, install_exception_hook
    from gsmc_desktop.main_window import MainWindow

    out_dir.mkdir(parents=True, exist_ok=True)
    app = create_application(sys.argv[:1])
    app.setApplicationName("GSMC soak")  # its own QSettings: the user's are left alone
    log_file = install_exception_hook(app)
    if video is None:
        print(f"writing {seconds:.0f} s of the real talking-head clip to {out_dir}…", file=sys.stderr)
        video = make_talking_head_video(out_dir / "talking_head.mp4", seconds)
    source = VideoFileSource(video)
    source_frames, source_fps = source.frame_count, source.fps
    source.close()
    csv_path, video_path = out_dir / "soak.csv", out_dir / "soak.mkv"
    summary: dict = {"video": str(video), "source_fps": source_fps, "log_file": str(log_file),
                     "qt_platform": app.platformName(), "samples": []}
    window = MainWindow(checkpoint=checkpoint)
    window.resize(1280, 800)
    window.show()
    live = window.live
    started = time.monotonic()
    # a stream that never ends (or never starts) must not hold a CI job: give up well after the
    # video's own length
    limit_s = 3 * (source_frames / (source_fps or VIDEO_FPS)) + 120

    def sample() -> None:
        summary["samples"].append({
            "t_s": round(time.monotonic() - started, 1),
            "rss_mb": rss_mb(),
            "refs_none": sys.getrefcount(None),
            "refs_true": sys.getrefcount(True),
            "refs_false": sys.getrefcount(False),
            "frames_shown": live.frames_shown,
            "frame_index": live.last_frame.index if live.last_frame else None,
            "fps": round(live.last_frame.fps, 1) if live.last_frame else None,
        })
        s = summary["samples"][-1]
        print(f"{s['t_s']:7.1f} s  frame {s['frame_index']}  {s['fps']} fps  rss {s['rss_mb']} MB  "
              f"refs None {s['refs_none']}", file=sys.stderr, flush=True)

    def finished(reason: str) -> None:
        summary.setdefault("end", reason)
        app.quit()

    def reached_end(reason: str) -> None:  # the run stays, paused on the last frame: stop it
        summary["end"] = reason
        live.stop()

    def give_up() -> None:
        summary["end"] = f"timeout: still running after {limit_s:.0f} s"
        app.quit()

    timer = QTimer()
    timer.timeout.connect(sample)
    timer.start(int(SAMPLE_SECONDS * 1000))
    QTimer.singleShot(int(limit_s * 1000), give_up)
    live.finished.connect(finished)
    live.reached_end.connect(reached_end)
    live.set_video(video)
    live.start()
    if not live.is_running():
        print(f"gsmc-desktop --soak: the stream did not start: {live.view.message()}", file=sys.stderr)
        window.shutdown()
        return 1
    live.start_recording(csv_path, video_path)
    sample()
    app.exec()
    timer.stop()
    sample()
    summary["wall_s"] = round(time.monotonic() - started, 1)
    window.shutdown()
    window.close()
    summary["recording"] = check_recording(csv_path, video_path, source_frames)
    rec, first, last = summary["recording"], summary["samples"][0], summary["samples"][-1]
    summary["rss_growth_mb"] = (round(last["rss_mb"] - summary["samples"][1]["rss_mb"], 1)
                                if last["rss_mb"] is not None and len(summary["samples"]) > 2 else None)
    summary["refs_none_change"] = last["refs_none"] - first["refs_none"]
    summary["checks"] = {
        "reached_end_of_video": summary.get("end", "").startswith("end of"),
        "every_frame_recorded": rec["video_frames"] == source_frames,
        "faces_in_99pc_of_frames": rec["frames_with_faces"] >= 0.99 * source_frames,
        "one_row_per_face_per_frame": rec["duplicate_face_rows"] == 0 and rec["frames_out_of_range"] == 0,
    }
    summary["ok"] = all(summary["checks"].values())
    (out_dir / "soak.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k != "samples"}, indent=2))
    return 0 if summary["ok"] else 1
