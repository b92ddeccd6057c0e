"""Noisy-label audit: training samples whose label the trained model confidently disputes.

The model (the EMA teacher when the checkpoint holds one, or the one asked for) scores every
training sample without augmentation; ``label_issues`` ranks them and decides the cut: the
audit score (another class predicted with probability >= ``threshold``, ranked by how much more
probable it is than the given one) or confident learning (self-confidence or normalised margin,
cut by the estimated noise). These are the run's own, in-sample predictions. When the run
trained on noisy labels (its config records the noise), the given labels are the noisy ones and
the mislabelled samples are known, so the audit reports precision and recall against them.
"""

import csv
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from gsmc_core.atomic import write_atomic
from gsmc_core.checkpoint import Checkpoint, load_checkpoint
from gsmc_core.devices import resolve_device
from gsmc_core.errors import UsageError
from gsmc_core.review.label_issues import precision_recall, rank_suspects
from gsmc_core.training.data.noise import given_labels
from gsmc_core.training.data.readers import read_split
from gsmc_core.training.data.samples import ExpressionDataset, Split, collate_skipping
from gsmc_core.training.data.transforms import eval_transform
from gsmc_core.training.evaluate import predict_loader


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
    labels_file: Path | None = None  # the dataset's label file the scores are for (an input)


def same_folder(a: str | Path, b: str | Path) -> bool:
    """Whether two spellings name the same existing folder (relative or absolute, links)."""
    try:
        return bool(a) and bool(b) and os.path.samefile(a, b)
    except OSError:
        return False


def _audit_model(ckpt: Checkpoint, model: str = "auto") -> torch.nn.Module:
    """The network that scores: the EMA teacher when the run has one ("auto" or "teacher"),
    the student ("student"), or the checkpoint's exported weights ("exported")."""
    net = ckpt.build_model()
    state = ckpt.training_state or {}
    if model in ("auto", "teacher") and state.get("teacher"):
        net.load_state_dict({k.removeprefix("module."): v for k, v in state["teacher"].items()
                             if k.startswith("module.")})
    elif model == "student" and state.get("student"):
        net.load_state_dict(state["student"])
    elif model in ("teacher", "student"):
        raise UsageError(f"the checkpoint holds no {model} (a run's last.pt of a GSMC run does)")
    return net


@dataclass
class TrainingScores:
    """A model's probabilities on every training sample of a run, with the labels it trained on
    and, when the run's noise is known, which of them are wrong."""

    split: Split  # with the given (possibly noisy) labels
    probs: np.ndarray  # N x C, rows in ``indices`` order
    given: np.ndarray  # N
    indices: np.ndarray  # N sample indices into ``split``
    flips: set[int] | None  # indices whose given label differs from the dataset's own
    note: str | None


def score_training_set(checkpoint: str | Path, dataset: str, data_root: str | Path,
                       device: str = "auto", batch_size: int = 128, workers: int = 0,
                       model: str = "auto", tta: bool = False,
                       on_batch: Callable[[int, int], None] | None = None) -> TrainingScores:
    """The checkpoint's model run over the run's own training samples (in-sample); with ``tta``
    each face's logits are averaged with its mirror image's. ``on_batch(done, total)`` reports
    progress (and may raise to stop)."""
    ckpt = load_checkpoint(checkpoint)
    cfg = ckpt.train_config
    same_data = cfg.get("dataset") == dataset and same_folder(cfg.get("data_root", ""), data_root)
    split = read_split(dataset, data_root, "train", len(ckpt.meta.classes),
                       cfg.get("val_fraction", 0.1), cfg.get("seed", 0), cfg.get("holdout", "shuffle"))
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
    preds = predict_loader(_audit_model(ckpt, model).to(dev), loader, dev, tta=tta, on_batch=on_batch)
    probs = torch.softmax(torch.from_numpy(preds.logits), 1).numpy()
    return TrainingScores(split, probs, preds.labels, preds.indices, flips, note)


def audit(checkpoint: str | Path, dataset: str, data_root: str | Path, threshold: float = 0.5,
          device: str = "auto", batch_size: int = 128, workers: int = 0, score: str = "audit",
          model: str = "auto", tta: bool = False) -> AuditReport:
    """Score every training sample of the run's dataset with the checkpoint's model and flag
    the likely mislabelled ones by ``score`` (``label_issues.SCORES``)."""
    return report_from_scores(score_training_set(checkpoint, dataset, data_root, device, batch_size,
                                                 workers, model, tta), score, threshold)


def report_from_scores(s: TrainingScores, score: str = "audit", threshold: float = 0.5) -> AuditReport:
    """The flagged samples of ``s`` by ``score``, and precision/recall when the noise is known."""
    suspects = rank_suspects(s.probs, s.given, score, threshold)
    classes = s.split.classes
    flagged = [
        FlaggedSample(
            index=int(s.indices[r]), key=s.split.samples[s.indices[r]].key,
            given=classes[s.given[r]], predicted=classes[suspects.predicted[r]],
            p_given=float(s.probs[r, s.given[r]]), p_predicted=float(s.probs[r, suspects.predicted[r]]),
            injected_flip=None if s.flips is None else int(s.indices[r]) in s.flips,
        )
        for r in suspects.order[: suspects.cut]
    ]
    report = AuditReport(n=len(s.probs), flagged=flagged, note=s.note, labels_file=s.split.source)
    if s.flips is not None:
        wrong = np.array([int(i) in s.flips for i in s.indices])
        figures = precision_recall(suspects, wrong, ks=tuple(k for k in (100, 500, 1000)
                                                             if score != "audit" or k <= suspects.cut))
        report.known_flips = len(s.flips)
        report.precision = figures["p_at_cut"]
        report.recall = figures["recall_at_cut"]
        report.precision_at_k = {int(k[1:]): v for k, v in figures.items()
                                 if k.startswith("p") and k[1:].isdigit()}
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
