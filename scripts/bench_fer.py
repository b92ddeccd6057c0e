"""The `fer` package's pipeline (OpenCV face detector + its Keras CNN) on the frames `gsmc bench`
uses, idle and with one core kept busy, for docs/performance.md.

Run it with a Python that has fer installed (it is not a GSMC dependency):
    python -m venv /tmp/fer && /tmp/fer/bin/pip install fer tensorflow-cpu
    /tmp/fer/bin/python scripts/bench_fer.py [--faces 4] [--frames 150]
"""

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gsmc_core.frames.workloads import busy_core, clip_frames, read_clip  # noqa: E402

WARMUP = 5


def measure(detector, frames: list) -> dict:
    times, faces = [], []
    for i, frame in enumerate(frames):
        t = time.perf_counter()
        found = detector.detect_emotions(frame)
        if i >= WARMUP:
            times.append(time.perf_counter() - t)
            faces.append(len(found))
    return {"fps": round(len(times) / sum(times), 2), "faces_per_frame": round(sum(faces) / len(faces), 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=1)
    parser.add_argument("--frames", type=int, default=150)
    args = parser.parse_args()
    from fer.fer import FER  # only in the venv this script is run with (fer 25 moved it here)

    clip = read_clip(str(REPO / "assets" / "videos" / "carphone_qcif.mp4"))
    frames = list(clip_frames(clip, args.faces, args.frames + WARMUP))
    detector = FER(mtcnn=False)
    report = {"package": "fer", "faces": args.faces, "idle": measure(detector, frames)}
    with busy_core():
        report["busy_core"] = measure(detector, frames)
    report["busy_over_idle"] = round(report["busy_core"]["fps"] / report["idle"]["fps"], 3)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
