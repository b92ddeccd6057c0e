"""What reusing still faces (FramePipeline(reuse=True), the Live tab's default) saves and what it
costs, on real footage: the same frames through the pipeline with and without reuse.

Per clip: the share of faces whose network output was kept; how often the label on screen differs
from the one a full run shows; and, for every frame where the full run's label changes (an
expression change), how many frames the reusing run takes to show it; and, with the frames
arriving as from a 30 fps camera, the CPU seconds per second of video with and without reuse
(what a laptop's battery pays; less sensitive to a busy machine than fps, but best measured
on an idle one).

    PYTHONPATH=. .venv/bin/python scripts/reuse_study.py --out docs/results/reuse.json
"""

import argparse
import json
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from gsmc_core.frames.bench import run_realtime
from gsmc_core.frames.detection import FaceDetector
from gsmc_core.frames.pipeline import FramePipeline
from gsmc_core.frames.predictor import Predictor
from gsmc_core.frames.still_faces import StillFaces
from gsmc_core.frames.workloads import clip_frames, read_clip
from gsmc_core.resources import DEFAULT_CHECKPOINT, asset_path

REPO = Path(__file__).resolve().parents[1]


def webcam_at_rest(count: int, seed: int = 0) -> list[np.ndarray]:
    """A person sitting still before a webcam: the shipped portrait's head filling a 640x360
    frame's height, with a sensor's noise (sigma 2 grey levels) on every frame."""
    portrait = cv2.imread(str(asset_path("images", "astronaut.jpg")))
    h, w = portrait.shape[:2]
    head = portrait[round(0.06 * h):round(0.42 * h), round(0.27 * w):round(0.63 * w)]
    frame = np.full((360, 640, 3), 80, np.uint8)
    frame[10:350, 150:490] = cv2.resize(head, (340, 340), interpolation=cv2.INTER_AREA)
    rng = np.random.default_rng(seed)
    return [np.clip(frame + rng.normal(0, 2, frame.shape), 0, 255).astype(np.uint8) for _ in range(count)]


def labels_by_face(pipeline: FramePipeline, frames: list[np.ndarray]) -> tuple[list[dict], int, int]:
    """Per frame {face id: (raw label index, probabilities)}, faces seen, faces kept."""
    out, seen, kept = [], 0, 0
    for k, frame in enumerate(frames):
        result = pipeline.process(frame, timestamp=k / 30)
        out.append({f.id: (int(f.probabilities.argmax()), f.probabilities) for f in result.faces})
        seen += len(result.faces)
        kept += sum(f.reused for f in result.faces)
    return out, seen, kept


def lasting(full: list[dict], k: int, face_id: int, label: int, frames: int = 3) -> bool:
    """The full run shows ``label`` for the face on frames k .. k + frames - 1: an expression
    change, not a one- or two-frame flicker of the network's winner."""
    return all(k + d < len(full) and full[k + d].get(face_id, (None,))[0] == label for d in range(frames))


def compare(full: list[dict], reused: list[dict]) -> dict:
    """Agreement of the labels, the probability error, and the delay of each label change (all
    of them, and those that last three frames or more)."""
    same = total = 0
    errors: list[float] = []
    delays: Counter = Counter()
    lasting_delays: Counter = Counter()
    for k, faces in enumerate(full):
        for face_id, (label, probs) in faces.items():
            if face_id not in reused[k]:
                continue
            total += 1
            same += reused[k][face_id][0] == label
            errors.append(float(np.abs(reused[k][face_id][1] - probs).max()))
            if k == 0 or face_id not in full[k - 1] or full[k - 1][face_id][0] == label:
                continue
            delay = next((d for d in range(len(full) - k)  # frames until the reusing run shows it
                          if face_id in reused[k + d] and reused[k + d][face_id][0] == label), None)
            key = "never" if delay is None else min(delay, 3)
            delays[key] += 1
            if lasting(full, k, face_id, label):
                lasting_delays[key] += 1
    return {
        "label_agreement": round(same / max(1, total), 4),
        "prob_error_p95": round(float(np.percentile(errors, 95)), 4) if errors else None,
        "prob_error_max": round(max(errors), 4) if errors else None,
        "label_changes": sum(delays.values()),
        "shown_after_frames": _histogram(delays),
        "lasting_changes": sum(lasting_delays.values()),
        "lasting_shown_after_frames": _histogram(lasting_delays),
    }


def _histogram(delays: Counter) -> dict[str, int]:
    """Frames until shown: "0" (the same frame), "1", "2", "3+" or "never"."""
    names = {0: "0", 1: "1", 2: "2", 3: "3+", "never": "never"}
    return {names[key]: delays[key] for key in names if delays[key]}


def study(predictor: Predictor, clips: dict[str, list[np.ndarray]], tolerance: float,
          timing: bool) -> dict:
    report = {}
    with FaceDetector("short") as detector:
        for name, frames in clips.items():
            full, seen, _ = labels_by_face(FramePipeline(predictor, detector), frames)
            pipeline = FramePipeline(predictor, detector, reuse=True)
            pipeline.still = StillFaces(tolerance=tolerance)
            reused, _, kept = labels_by_face(pipeline, frames)
            report[name] = {"frames": len(frames), "faces": seen,
                            "kept_fraction": round(kept / max(1, seen), 4), **compare(full, reused)}
            if timing:
                for label, reuse in (("cpu_s_per_s_full", False), ("cpu_s_per_s_reuse", True)):
                    paced = FramePipeline(predictor, detector, reuse=reuse)
                    if reuse:
                        paced.still = StillFaces(tolerance=tolerance)
                    report[name][label] = run_realtime(paced, frames)["cpu_seconds_per_second"]
            print(name, json.dumps(report[name]), flush=True)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=238, help="frames per clip (carphone: 238 "
                        "is once forwards and back)")
    parser.add_argument("--tolerances", type=float, nargs="+", default=[0.5, 1.0, 2.0, 4.0],
                        help="grey levels; the CPU time is measured at the default one")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    predictor = Predictor.from_checkpoint(DEFAULT_CHECKPOINT, device="cpu", threads=1)
    carphone = read_clip(str(asset_path("videos", "carphone_qcif.mp4")))
    clips = {
        "carphone, 1 face (real, talking, moving car)": list(clip_frames(carphone, 1, args.frames)),
        "carphone, 4 faces": list(clip_frames(carphone, 4, args.frames)),
        "webcam at rest (portrait + sensor noise)": webcam_at_rest(args.frames),
    }
    results = {"model": f"{DEFAULT_CHECKPOINT.name} ({predictor.backend} {predictor.precision})",
               "defaults": {"tolerance": StillFaces().tolerance, "min_iou": StillFaces().min_iou,
                            "max_age": StillFaces().max_age}}
    for tolerance in args.tolerances:
        print(f"tolerance {tolerance:g} grey levels", flush=True)
        results[f"tolerance {tolerance:g}"] = study(predictor, clips, tolerance,
                                                    timing=tolerance == StillFaces().tolerance)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
