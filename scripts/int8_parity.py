"""int8 against fp32 for a model: the full FERPlus test set and a real video (issue 29).

    python scripts/int8_parity.py --data-root ../shared/data/ferplus [--checkpoint CKPT]

Prints (and with --json writes) test accuracy of each, the share of faces whose predicted class
is the same, and the per-face correlation of the predicted class's CAM (mean and the worst),
then the same agreement on the faces of the shipped real clip (assets/videos, every frame
through the app's pipeline with each predictor). The model needs an int8 graph (the shipped one
has one; `gsmc quantize` makes one).
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from gsmc_core.checkpoint import load_checkpoint
from gsmc_core.frames.detection import FaceDetector
from gsmc_core.frames.pipeline import FramePipeline
from gsmc_core.frames.predictor import Predictor
from gsmc_core.frames.workloads import clip_frames, read_clip
from gsmc_core.resources import DEFAULT_CHECKPOINT, asset_path
from gsmc_core.training.data.preload import MemoryLoader, preload_split
from gsmc_core.training.data.readers import read_split

FRAMES = 300  # the real clip at 640x360, forwards then backwards


def correlations(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    return np.array([np.corrcoef(x, y)[0, 1] for x, y in zip(a, b, strict=True)])


def test_set(predictors: dict[str, Predictor], ckpt, data_root: str) -> dict:
    split = read_split("ferplus", data_root, "test", len(ckpt.meta.classes))
    out: dict[str, list] = {"labels": []}
    for batch in MemoryLoader(preload_split(split, ckpt.meta), ckpt.meta, 128):
        out["labels"].append(batch.labels.numpy())
        for name, predictor in predictors.items():
            logits, cams = predictor.runtime.run(batch.images.numpy())
            out.setdefault(f"{name}_logits", []).append(logits)
            out.setdefault(f"{name}_cams", []).append(cams)
    labels = np.concatenate(out["labels"])
    logits = {n: np.concatenate(out[f"{n}_logits"]) for n in predictors}
    cams = {n: np.concatenate(out[f"{n}_cams"]) for n in predictors}
    predicted = logits["fp32"].argmax(1)
    rows = np.arange(len(predicted))
    corr = correlations(cams["fp32"][rows, predicted], cams["int8"][rows, predicted])
    probs = np.exp(logits["fp32"] - logits["fp32"].max(1, keepdims=True))
    top = np.sort(probs / probs.sum(1, keepdims=True), 1)[:, ::-1]
    margin = (top[:, 0] - top[:, 1])[logits["int8"].argmax(1) != predicted]
    return {"faces": len(labels),
            "accuracy": {n: round(100 * float((logits[n].argmax(1) == labels).mean()), 2)
                         for n in predictors},
            "same_prediction_pct": round(100 * float((logits["int8"].argmax(1) == predicted).mean()), 2),
            "fp32_margin_where_they_differ_median": round(float(np.median(margin)), 3),
            "cam_correlation_mean": round(float(corr.mean()), 4),
            "cam_correlation_worst": round(float(corr.min()), 4)}


def video(predictors: dict[str, Predictor]) -> dict:
    """The shipped clip as `gsmc bench` plays it (640x360) through the app's pipeline (detector,
    framing, crops) with each predictor; faces compared frame by frame."""
    clip = asset_path("videos", "carphone_qcif.mp4")
    same = total = 0
    corr, margins = [], []
    with FaceDetector("short") as detector:
        pipelines = {n: FramePipeline(p, detector) for n, p in predictors.items()}
        for frame in clip_frames(read_clip(str(clip)), 1, FRAMES):  # as `gsmc bench` plays it
            fp32 = pipelines["fp32"].process(frame).faces
            # the heatmap of the class fp32 predicts in both (the clip has one face a frame)
            pipelines["int8"].cam_class = fp32[0].index if len(fp32) == 1 else None
            int8 = pipelines["int8"].process(frame).faces
            for a, b in zip(fp32, int8, strict=True):  # the same detections, in the same order
                total += 1
                same += a.label == b.label  # b.label is int8's own prediction
                if a.label != b.label:
                    top = np.sort(a.probabilities)[::-1]
                    margins.append(round(float(top[0] - top[1]), 3))
                corr.append(np.corrcoef(a.heatmap.ravel(), b.heatmap.ravel())[0, 1])
    corr = np.array(corr)
    return {"clip": clip.name, "faces": total, "same_prediction_pct": round(100 * same / max(total, 1), 2),
            "fp32_margin_where_they_differ": margins,  # fp32's top-1 minus top-2 probability
            "cam_correlation_mean": round(float(corr.mean()), 4),
            "cam_correlation_worst": round(float(corr.min()), 4)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", required=True)
    p.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    ckpt = load_checkpoint(args.checkpoint)
    predictors = {n: Predictor.for_checkpoint(ckpt, device="cpu", precision=n) for n in ("fp32", "int8")}
    report = {"checkpoint": str(args.checkpoint), "ferplus_test": test_set(predictors, ckpt, args.data_root),
              "video": video(predictors)}
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
