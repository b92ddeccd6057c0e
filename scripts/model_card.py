"""Figures and numbers for gsmc_core/assets/model_card/model-card.md from a trained checkpoint.

    python scripts/model_card.py --checkpoint gsmc_core/assets/models/gsmc_default.pt \
        --data-root ../shared/data/ferplus --out gsmc_core/assets/model_card

Writes metrics.json (the `gsmc eval` figures on FERPlus test), confusion_matrix.png and
cam_examples.png (test faces with the CAM of the predicted class).
"""

import argparse
import json
from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from gsmc_core.checkpoint import load_checkpoint  # noqa: E402
from gsmc_core.data.readers import read_split  # noqa: E402
from gsmc_core.data.samples import load_image  # noqa: E402
from gsmc_core.evaluate import evaluate_checkpoint  # noqa: E402
from gsmc_core.predictor import Predictor  # noqa: E402
from gsmc_core.render import overlay_heatmap  # noqa: E402


def confusion_figure(metrics: dict, path: Path) -> None:
    cm = np.array(metrics["confusion_matrix"], dtype=float)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    classes = metrics["classes"]
    fig, ax = plt.subplots(figsize=(7, 6))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true (FERPlus majority label)")
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=8,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_title(f"FERPlus test: accuracy {metrics['accuracy']:.1%}, "
                 f"mean class accuracy {metrics['mean_class_accuracy']:.1%}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def cam_figure(predictor: Predictor, data_root: str, path: Path, per_class: int = 2) -> None:
    test = read_split("ferplus", data_root, "test", len(predictor.classes))
    rng = np.random.default_rng(0)
    chosen = []
    for c in range(len(test.classes)):
        idx = [i for i, s in enumerate(test.samples) if s.label == c]
        chosen += list(rng.choice(idx, size=min(per_class, len(idx)), replace=False))
    cols = 8
    rows = int(np.ceil(len(chosen) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.6, rows * 2.3))
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, chosen, strict=False):
        sample = test.samples[i]
        face = cv2.resize(load_image(sample), (96, 96), interpolation=cv2.INTER_LINEAR)
        pred = predictor.predict([face])[0]
        ax.imshow(overlay_heatmap(face, pred.heatmap, 0.45))
        truth = test.classes[sample.label]
        colour = "green" if pred.label == truth else "red"
        ax.set_title(f"{truth}\n→ {pred.label} {pred.confidence:.0%}", fontsize=8, color=colour)
    fig.suptitle("FERPlus test faces: CAM of the predicted class (title: true → predicted)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--out", default="gsmc_core/assets/model_card")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = load_checkpoint(args.checkpoint)
    test = read_split("ferplus", args.data_root, "test", len(ckpt.meta.classes))
    metrics = evaluate_checkpoint(ckpt, test, torch.device("cpu"))
    metrics.pop("loss")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    confusion_figure(metrics, out / "confusion_matrix.png")
    cam_figure(Predictor.from_checkpoint(args.checkpoint, device="cpu"), args.data_root,
               out / "cam_examples.png")
    print(json.dumps({k: metrics[k] for k in ("accuracy", "mean_class_accuracy", "n")}))


if __name__ == "__main__":
    main()
