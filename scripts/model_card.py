"""Figures and numbers for assets/model_card/model-card.md from a trained checkpoint.

    python scripts/model_card.py --checkpoint assets/models/gsmc_default.pt \
        --data-root ../shared/data/ferplus --out assets/model_card

Writes metrics.json (the `gsmc eval` figures on FERPlus test, plain and with flip TTA, and on
the test faces without a pixel-identical twin among the FERPlus training faces, and under each
shift of `gsmc eval --shifts`), confusion_matrix.png,
cam_examples.png (test faces with the CAM of the predicted class), real_faces.png (the model on
real photos and video frames through the app's pipeline) and, with --run, curves.png.
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
from gsmc_core.frames.detection import FaceDetector  # noqa: E402
from gsmc_core.frames.pipeline import FramePipeline  # noqa: E402
from gsmc_core.frames.predictor import Predictor  # noqa: E402
from gsmc_core.frames.render import RenderOptions, draw_frame, overlay_heatmap  # noqa: E402
from gsmc_core.frames.sources import VideoFileSource, read_image  # noqa: E402
from gsmc_core.resources import asset_path  # noqa: E402
from gsmc_core.training.data.readers import read_split  # noqa: E402
from gsmc_core.training.data.samples import load_image  # noqa: E402
from gsmc_core.training.evaluate import evaluate_checkpoint, robustness  # noqa: E402
from gsmc_core.training.run_folder import RunFolder  # noqa: E402
from gsmc_core.training.shifts import without_twins  # noqa: E402


def real_faces_figure(predictor: Predictor, images: list[tuple[str, np.ndarray]], path: Path) -> list[dict]:
    """Each image (BGR) through the app's pipeline (full-range detector), drawn with the heatmap
    of the predicted class; returns what was found."""
    found = []
    fig, axes = plt.subplots(1, len(images), figsize=(4.2 * len(images), 4.6))
    with FaceDetector("full", tiles="auto") as detector:
        pipeline = FramePipeline(predictor, detector)
        for ax, (name, image) in zip(np.atleast_1d(axes), images, strict=True):
            pipeline.reset(restart_ids=True)
            result = pipeline.process(image)
            drawn = draw_frame(image, result, RenderOptions(alpha=0.45))
            ax.imshow(cv2.cvtColor(drawn, cv2.COLOR_BGR2RGB))
            ax.axis("off")
            faces = [f"{f.label} {f.confidence:.0%}" for f in result.faces]
            ax.set_title(f"{name}\n{', '.join(faces) or 'no face found'}", fontsize=9)
            found.append({"image": name, "faces": [
                {"label": f.label, "confidence": round(float(f.confidence), 3),
                 "top3": sorted(zip(result.classes, map(float, f.probabilities), strict=True),
                                key=lambda cp: -cp[1])[:3]} for f in result.faces]})
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return found


def real_images(data_root: str) -> list[tuple[str, np.ndarray]]:
    """The shipped portrait, three frames of the shipped real video, and two FERPlus test faces
    seen the way a webcam would show them (upscaled to 240 px, JPEG-compressed, on a grey frame)."""
    images = [("astronaut.jpg (NASA portrait)", read_image(asset_path("images", "astronaut.jpg")))]
    with VideoFileSource(asset_path("videos", "carphone_qcif.mp4")) as video:
        frames = {f.index: f.image for f in video if f.index in (0, 60, 110)}
    for index, frame in frames.items():
        images.append((f"carphone frame {index}", cv2.resize(frame, (528, 432))))
    test = read_split("ferplus", data_root, "test", 8)
    for wanted in ("anger", "sadness"):
        sample = next(s for s in test.samples if test.classes[s.label] == wanted)
        face = cv2.resize(cv2.imread(str(sample.path)), (240, 240), interpolation=cv2.INTER_CUBIC)
        ok, jpeg = cv2.imencode(".jpg", face, [cv2.IMWRITE_JPEG_QUALITY, 70])
        canvas = np.full((420, 420, 3), 128, np.uint8)
        canvas[90:330, 90:330] = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)
        images.append((f"FERPlus {sample.key} ({wanted}), webcam-like", canvas))
    return images


def curves_figure(run_dir: Path, path: Path) -> None:
    rows = RunFolder(run_dir).history()
    epochs = [int(r["epoch"]) for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    def plot(ax, key: str, label: str) -> None:
        # a CE run has no KL, flip CAM or teacher columns; at weight 0 they are not computed (0)
        points = [(e, float(r[key])) for e, r in zip(epochs, rows, strict=True) if r.get(key)]
        if any(value != 0 for _, value in points):
            ax.plot(*zip(*points, strict=True), marker="o", label=label)

    for key, label in (("loss", "total"), ("ce", "cross-entropy (soft)"), ("kl", "KL"), ("ac", "flip CAM"),
                       ("kd", "KL to the trained teachers")):
        plot(left, key, label)
    left.set_xlabel("epoch")
    left.set_title("training losses (epoch means)")
    left.legend(fontsize=8)
    for key, label in (("train_acc", "train (augmented)"), ("val_acc", "validation, student"),
                       ("val_acc_teacher", "validation, teacher")):
        plot(right, key, label)
    right.set_xlabel("epoch")
    right.set_title("accuracy")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


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
    parser.add_argument("--out", default="assets/model_card")
    parser.add_argument("--run", type=Path, help="the training run folder, for curves.png")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = load_checkpoint(args.checkpoint)
    test = read_split("ferplus", args.data_root, "test", len(ckpt.meta.classes))
    metrics = evaluate_checkpoint(ckpt, test, torch.device("cpu"))
    metrics.pop("loss")
    tta = evaluate_checkpoint(ckpt, test, torch.device("cpu"), tta=True)
    train = read_split("ferplus", args.data_root, "train", len(ckpt.meta.classes))
    unique, _ = without_twins(test, train)
    unique_metrics = evaluate_checkpoint(ckpt, unique, torch.device("cpu"))
    shifted = robustness(ckpt, test, torch.device("cpu"), metrics["accuracy"])
    predictor = Predictor.from_checkpoint(args.checkpoint, device="cpu")
    summary = {
        **metrics,
        "tta": {k: tta[k] for k in ("accuracy", "mean_class_accuracy", "per_class", "n")},
        "without_train_twins": {k: unique_metrics[k] for k in ("accuracy", "mean_class_accuracy", "n")},
        "robustness": shifted,
        "real_faces": real_faces_figure(predictor, real_images(args.data_root), out / "real_faces.png"),
    }
    (out / "metrics.json").write_text(json.dumps(summary, indent=2))
    confusion_figure(metrics, out / "confusion_matrix.png")
    cam_figure(predictor, args.data_root, out / "cam_examples.png")
    if args.run is not None:
        curves_figure(args.run, out / "curves.png")
    print(json.dumps({"accuracy": metrics["accuracy"], "mean_class_accuracy": metrics["mean_class_accuracy"],
                      "per_class": metrics["per_class"], "tta_accuracy": tta["accuracy"],
                      "tta_mean_class_accuracy": tta["mean_class_accuracy"],
                      "without_train_twins": summary["without_train_twins"]}, indent=1))


if __name__ == "__main__":
    main()
