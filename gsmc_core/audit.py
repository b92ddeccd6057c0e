"""Noisy-label audit: training samples whose label the trained model confidently disputes.

The model (the EMA teacher when the checkpoint holds one) scores every training sample without
augmentation. A sample is flagged when the model predicts another class than its given label
with probability >= ``threshold``; flagged samples are ranked by how much more probable the
predicted class is than the given one. When the run injected noise (its config records rate and
seed, or a noise file), the given labels are the noisy ones and the flips are known, so the
audit reports precision and recall of the flagged set against them.
"""

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from gsmc_core.atomic import write_atomic
from gsmc_core.checkpoint import Checkpoint, load_checkpoint
from gsmc_core.data.noise import given_labels
from gsmc_core.data.readers import read_split
from gsmc_core.data.samples import ExpressionDataset, collate_skipping
from gsmc_core.data.transforms import eval_transform
from gsmc_core.devices import resolve_device
from gsmc_core.evaluate import predict_loader


@dataclass
class FlaggedSample:
    index: int
    key: str
    given: str
    predicted: str
    p_given: float
    p_predicted: float
    injected_flip: bool | None  # None when the flips are unknown


@dataclass
class AuditReport:
    n: int
    flagged: list[FlaggedSample]
    known_flips: int | None = None
    precision: float | None = None
    recall: float | None = None
    precision_at_k: dict[int, float] = field(default_factory=dict)
    note: str | None = None  # why the run's noisy labels could not be rebuilt


def same_folder(a: str | Path, b: str | Path) -> bool:
    """Whether two spellings name the same existing folder (relative or absolute, links)."""
    try:
        return bool(a) and bool(b) and os.path.samefile(a, b)
    except OSError:
        return False


def _audit_model(ckpt: Checkpoint) -> torch.nn.Module:
    model = ckpt.build_model()
    state = ckpt.training_state
    if state and state.get("teacher"):
        teacher = {k.removeprefix("module."): v for k, v in state["teacher"].items()
                   if k.startswith("module.")}
        model.load_state_dict(teacher)
    return model


def audit(checkpoint: str | Path, dataset: str, data_root: str | Path, threshold: float = 0.5,
          device: str = "auto", batch_size: int = 128, workers: int = 0) -> AuditReport:
    ckpt = load_checkpoint(checkpoint)
    cfg = ckpt.train_config
    same_data = cfg.get("dataset") == dataset and same_folder(cfg.get("data_root", ""), data_root)
    split = read_split(dataset, data_root, "train", len(ckpt.meta.classes),
                       cfg.get("val_fraction", 0.1), cfg.get("seed", 0))
    if same_data:  # the exact training set of the run, with the labels it trained on
        split = split.subset(cfg.get("limit_train"), cfg.get("seed", 0))
    clean = split.labels()
    given, flips, note = clean, None, None
    noisy_run = (cfg.get("noise_rate", 0) > 0 or cfg.get("noise_file")
                 or cfg.get("noise_kind") == "annotator")
    if same_data and noisy_run:
        given = given_labels(split, cfg.get("noise_kind", "symmetric"), cfg.get("noise_rate", 0),
                             cfg.get("noise_seed", 0), cfg.get("noise_file"))
        flips = {i for i, (a, b) in enumerate(zip(clean, given, strict=True)) if a != b}
    elif noisy_run:
        note = (f"the run trained on noisy labels of {cfg.get('dataset')} at "
                f"{cfg.get('data_root')!r}, not on this dataset folder, so its noise cannot be "
                "rebuilt: the dataset's own labels are audited")
    split = split.with_labels(given)
    dev = resolve_device(device)
    loader = DataLoader(ExpressionDataset(split, eval_transform(ckpt.meta)), batch_size=batch_size,
                        num_workers=workers, collate_fn=collate_skipping)
    preds = predict_loader(_audit_model(ckpt).to(dev), loader, dev)
    probs = torch.softmax(torch.from_numpy(preds.logits), 1).numpy()
    predicted = probs.argmax(1)
    p_given = probs[np.arange(len(probs)), preds.labels]
    p_pred = probs[np.arange(len(probs)), predicted]
    mask = (predicted != preds.labels) & (p_pred >= threshold)
    order = np.argsort(-(p_pred - p_given)[mask], kind="stable")
    rows = np.flatnonzero(mask)[order]
    classes = split.classes
    flagged = [
        FlaggedSample(
            index=int(preds.indices[r]), key=split.samples[preds.indices[r]].key,
            given=classes[preds.labels[r]], predicted=classes[predicted[r]],
            p_given=float(p_given[r]), p_predicted=float(p_pred[r]),
            injected_flip=None if flips is None else int(preds.indices[r]) in flips,
        )
        for r in rows
    ]
    report = AuditReport(n=len(probs), flagged=flagged, note=note)
    if flips is not None:
        hits = sum(f.injected_flip for f in flagged)
        report.known_flips = len(flips)
        report.precision = hits / len(flagged) if flagged else 0.0
        report.recall = hits / len(flips) if flips else 0.0
        for k in (100, 500, 1000):
            if len(flagged) >= k:
                report.precision_at_k[k] = sum(f.injected_flip for f in flagged[:k]) / k
    return report


def write_audit_csv(report: AuditReport, path: str | Path) -> None:
    def write(f) -> None:
        w = csv.writer(f)
        w.writerow(["rank", "index", "key", "given", "predicted", "p_given", "p_predicted",
                    "injected_flip"])
        for rank, s in enumerate(report.flagged, start=1):
            w.writerow([rank, s.index, s.key, s.given, s.predicted, f"{s.p_given:.4f}",
                        f"{s.p_predicted:.4f}", "" if s.injected_flip is None else int(s.injected_flip)])

    write_atomic(path, write)
