"""Evaluation: predictions over a split, accuracy, per-class accuracy, confusion matrix."""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from gsmc_core.checkpoint import Checkpoint
from gsmc_core.errors import UsageError
from gsmc_core.training.data.samples import ExpressionDataset, Split, collate_skipping
from gsmc_core.training.data.transforms import eval_transform
from gsmc_core.training.shifts import SHIFTS, Image


@dataclass
class SplitPredictions:
    logits: npt.NDArray[np.float32]  # N x C
    labels: npt.NDArray[np.int64]  # the labels the loader gave
    indices: npt.NDArray[np.int64]  # sample indices into the split
    skipped: int  # undecodable images


@torch.inference_mode()
def predict_loader(model: nn.Module, loader: DataLoader, device: torch.device,
                   tta: bool = False, on_batch: Callable[[int, int], None] | None = None) -> SplitPredictions:
    """Run ``model`` (returning logits, cams) over a loader of ``samples.Batch``; with ``tta``
    the logits are the mean of each image's and its mirror image's. ``on_batch(done, total)``
    is called after each batch (it may raise to stop)."""
    was_training = model.training
    model.eval()
    logits, labels, indices, skipped = [], [], [], 0
    try:
        for batch in loader:
            skipped += batch.skipped
            if len(batch.labels) == 0:
                continue
            images = batch.images.to(device, non_blocking=True)
            out, _ = model(images)
            if tta:
                out = (out + model(images.flip(-1))[0]) / 2
            logits.append(out.float().cpu())
            labels.append(batch.labels)
            indices.append(batch.indices)
            if on_batch is not None:
                on_batch(len(logits), len(loader))
    finally:  # a failing batch (or a stop) must not leave a training model in eval mode
        model.train(was_training)
    if not logits:
        return SplitPredictions(np.zeros((0, 0), np.float32), np.zeros(0, np.int64),
                                np.zeros(0, np.int64), skipped)
    return SplitPredictions(torch.cat(logits).numpy(), torch.cat(labels).numpy(),
                            torch.cat(indices).numpy(), skipped)


def classification_metrics(logits: npt.NDArray[np.float32], labels: npt.NDArray[np.int64],
                           classes: tuple[str, ...]) -> dict:
    """Accuracy, mean class accuracy, per-class accuracy, confusion matrix (rows: true class)."""
    n_classes = len(classes)
    pred = logits.argmax(1) if len(logits) else np.zeros(0, np.int64)
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(confusion, (labels, pred), 1)
    support = confusion.sum(1)
    per_class = {
        name: (float(confusion[i, i] / support[i]) if support[i] else None)
        for i, name in enumerate(classes)
    }
    present = [v for v in per_class.values() if v is not None]
    loss = (F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels)).item()
            if len(labels) else float("nan"))
    return {
        "accuracy": float((pred == labels).mean()) if len(labels) else float("nan"),
        "mean_class_accuracy": float(np.mean(present)) if present else float("nan"),
        "per_class": per_class,
        "confusion_matrix": confusion.tolist(),
        "classes": list(classes),
        "n": int(len(labels)),
        "loss": loss,
    }


def evaluate_checkpoint(ckpt: Checkpoint, split: Split, device: torch.device, batch_size: int = 128,
                        workers: int = 0, tta: bool = False,
                        shift: Callable[[Image], Image] | None = None,
                        on_batch: Callable[[int, int], None] | None = None) -> dict:
    """``classification_metrics`` of a checkpoint's model on a split (with the checkpoint's own
    preprocessing), plus ``skipped`` (undecodable images). The split's classes must match.
    ``tta``: average each face's logits with its mirror image's. ``shift``: applied to each
    face crop before the preprocessing (``shifts.SHIFTS``). ``on_batch``: as ``predict_loader``'s
    (it may raise to stop)."""
    if split.classes != ckpt.meta.classes:
        where = ckpt.path if ckpt.path is not None else "checkpoint"
        raise UsageError(f"{where}: classes {ckpt.meta.classes} differ from the dataset's {split.classes}")
    transform = eval_transform(ckpt.meta)
    if shift is not None:
        transform = v2.Compose([shift, *transform.transforms])
    loader = DataLoader(ExpressionDataset(split, transform), batch_size=batch_size,
                        num_workers=workers, collate_fn=collate_skipping)
    preds = predict_loader(ckpt.build_model().to(device), loader, device, tta, on_batch)
    metrics = classification_metrics(preds.logits, preds.labels, split.classes)
    metrics["skipped"] = preds.skipped
    return metrics


def robustness(ckpt: Checkpoint, split: Split, device: torch.device, clean_accuracy: float,
               batch_size: int = 128, workers: int = 0, tta: bool = False,
               on_shift: Callable[[str, dict], None] | None = None) -> dict:
    """Accuracy and mean class accuracy under each of ``shifts.SHIFTS``, the drop from the clean
    accuracy (``clean_accuracy``, as ``evaluate_checkpoint`` gave it), and the worst shift:
    ``{"clean_accuracy", "shifts": {name: {"accuracy", "mean_class_accuracy", "drop"}},
    "worst": {"shift", "accuracy", "drop"}}`` (fractions). ``on_shift(name, row)`` is called as
    each finishes."""
    rows = {}
    for name, shift in SHIFTS.items():
        metrics = evaluate_checkpoint(ckpt, split, device, batch_size, workers, tta, shift)
        rows[name] = {"accuracy": metrics["accuracy"],
                      "mean_class_accuracy": metrics["mean_class_accuracy"],
                      "drop": clean_accuracy - metrics["accuracy"]}
        if on_shift is not None:
            on_shift(name, rows[name])
    worst = max(rows, key=lambda name: rows[name]["drop"])
    return {"clean_accuracy": clean_accuracy, "shifts": rows,
            "worst": {"shift": worst, "accuracy": rows[worst]["accuracy"], "drop": rows[worst]["drop"]}}
