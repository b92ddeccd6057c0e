"""Post-hoc logit adjustment for class imbalance (Menon et al., "Long-tail learning via logit
adjustment", ICLR 2021): logits − τ · log(prior), the prior being the classes' shares of the
training labels. A frequent class (FERPlus: neutral, 10k faces) then needs more evidence to win,
a rare one (disgust, contempt: ~120) less. τ is chosen on the validation split: the highest
mean class accuracy whose accuracy is at most ``max_drop`` below the unadjusted model's. The
shift goes into the classifier's bias, so a checkpoint carries it and the CAMs (which come
from the classifier weights alone) are unchanged.
"""

import dataclasses
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch.utils.data import DataLoader

from gsmc_core.checkpoint import Checkpoint
from gsmc_core.data.samples import ExpressionDataset, Split, collate_skipping
from gsmc_core.data.transforms import eval_transform
from gsmc_core.evaluate import classification_metrics, predict_loader

TAUS = tuple(round(float(t), 2) for t in np.arange(0.0, 2.01, 0.05))


@dataclass(frozen=True)
class Adjustment:
    tau: float
    offsets: npt.NDArray[np.float32]  # added to the classifier bias
    table: list[dict]  # τ, validation accuracy and mean class accuracy, for every τ tried


def class_prior(split: Split) -> npt.NDArray[np.float64]:
    counts = np.bincount(split.labels(), minlength=len(split.classes)).astype(np.float64)
    return np.maximum(counts, 1) / max(counts.sum(), 1)


def choose_tau(logits: npt.NDArray[np.float32], labels: npt.NDArray[np.int64],
               prior: npt.NDArray[np.float64], classes: tuple[str, ...],
               max_drop: float = 0.01) -> Adjustment:
    log_prior = np.log(prior).astype(np.float32)
    table = []
    for tau in TAUS:
        m = classification_metrics(logits - tau * log_prior, labels, classes)
        table.append({"tau": tau, "accuracy": m["accuracy"], "mean_class_accuracy": m["mean_class_accuracy"]})
    floor = table[0]["accuracy"] - max_drop
    best = max((row for row in table if row["accuracy"] >= floor),
               key=lambda row: (row["mean_class_accuracy"], -row["tau"]))
    return Adjustment(best["tau"], (-best["tau"] * log_prior).astype(np.float32), table)


def adjusted_checkpoint(ckpt: Checkpoint, adjustment: Adjustment) -> Checkpoint:
    """A copy of ``ckpt`` whose classifier bias includes the adjustment (recorded in metrics)."""
    state = dict(ckpt.state_dict)
    bias = state["fc.bias"]
    state["fc.bias"] = bias + torch.from_numpy(adjustment.offsets).to(bias.dtype)
    metrics = {**ckpt.metrics, "logit_adjustment_tau": adjustment.tau}
    return dataclasses.replace(ckpt, state_dict=state, metrics=metrics, training_state=None)


def calibrate(ckpt: Checkpoint, train: Split, val: Split, device: torch.device,
              max_drop: float = 0.01) -> tuple[Checkpoint, Adjustment]:
    """Choose τ on ``val`` with the prior of ``train``; the adjusted checkpoint and the choice."""
    if "fc.bias" not in ckpt.state_dict:
        raise ValueError("the checkpoint has no classifier bias to adjust")
    loader = DataLoader(ExpressionDataset(val, eval_transform(ckpt.meta)), batch_size=128,
                        collate_fn=collate_skipping)
    preds = predict_loader(ckpt.build_model().to(device), loader, device)
    if len(preds.labels) == 0:
        raise ValueError("no validation image could be read")
    adjustment = choose_tau(preds.logits, preds.labels, class_prior(train), val.classes, max_drop)
    return adjusted_checkpoint(ckpt, adjustment), adjustment

