"""Post-hoc corrections for class imbalance, both chosen on the validation split.

*Classifier re-fit* (optional; Kang et al., "Decoupling representation and classifier for
long-tailed recognition", ICLR 2020): the backbone stays as trained; the linear classifier is
trained again on the pooled features of the training images (and of their mirror images), with
the training targets (FERPlus vote shares where the split has them) and class weights
∝ prior^−power, so rare classes count more; the epoch with the best validation accuracy + mean
class accuracy is kept. Cheap: the features are computed once.

*Logit adjustment* (Menon et al., "Long-tail learning via logit adjustment", ICLR 2021):
logits − τ · log(prior), the prior being the classes' shares of the
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
from gsmc_core.training.data.batch_augment import normalize, to_float
from gsmc_core.training.data.preload import preload_split
from gsmc_core.training.data.samples import DataError, ExpressionDataset, Split, collate_skipping
from gsmc_core.training.data.transforms import eval_transform
from gsmc_core.training.evaluate import classification_metrics, predict_loader

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


@dataclass(frozen=True)
class Features:
    """Pooled last-stage features of a split's readable images (and of their mirror images)."""

    plain: torch.Tensor  # N x K
    mirrored: torch.Tensor  # N x K
    labels: torch.Tensor  # N
    targets: torch.Tensor  # N x C: vote shares where the split has them, else one-hot


def pooled_features(ckpt: Checkpoint, split: Split, device: torch.device, batch_size: int = 256) -> Features:
    data = preload_split(split, ckpt.meta)
    model = ckpt.build_model().to(device).eval()
    plain, mirrored = [], []
    with torch.no_grad():
        for i in range(0, len(data.labels), batch_size):
            x = normalize(to_float(data.images[i : i + batch_size]), ckpt.meta).to(device)
            plain.append(model.features(x).mean(dim=(2, 3)).float().cpu())
            mirrored.append(model.features(x.flip(3)).mean(dim=(2, 3)).float().cpu())
    soft = split.soft_targets()
    if soft is not None:
        targets = soft[data.indices]
    else:
        targets = torch.nn.functional.one_hot(data.labels, len(split.classes)).float()
    return Features(torch.cat(plain), torch.cat(mirrored), data.labels, targets)


@dataclass(frozen=True)
class Refit:
    weight: torch.Tensor
    bias: torch.Tensor
    epoch: int  # the chosen epoch, from 1
    table: list[dict]  # epoch, validation accuracy and mean class accuracy


def refit_classifier(weight: torch.Tensor, bias: torch.Tensor, train: Features, val: Features,
                     classes: tuple[str, ...], power: float = 0.25, epochs: int = 30,
                     lr: float = 1e-3, seed: int = 0) -> Refit:
    """Train the linear classifier again from ``weight``/``bias`` on fixed features (see the
    module docstring); the epoch with the best validation accuracy + mean class accuracy."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.cat([train.plain, train.mirrored])
    y = torch.cat([train.targets, train.targets])
    counts = torch.bincount(train.labels, minlength=len(classes)).float().clamp(min=1)
    prior = counts / counts.sum()
    class_weight = prior ** -power
    class_weight = class_weight / (class_weight * prior).sum()
    w = weight.detach().float().clone().requires_grad_()
    b = bias.detach().float().clone().requires_grad_()
    opt = torch.optim.Adam([w, b], lr=lr)
    table: list[dict] = []
    best: tuple[float, int, torch.Tensor, torch.Tensor] | None = None
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), 256):
            j = order[i : i + 256]
            log_p = torch.log_softmax(x[j] @ w.T + b, dim=1)
            loss = -(y[j] * log_p * class_weight).sum(dim=1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            logits = (val.plain @ w.T + b).numpy()
        m = classification_metrics(logits, val.labels.numpy(), classes)
        table.append({"epoch": epoch, "accuracy": m["accuracy"],
                      "mean_class_accuracy": m["mean_class_accuracy"]})
        score = m["accuracy"] + m["mean_class_accuracy"]
        if best is None or score > best[0]:
            best = (score, epoch, w.detach().clone(), b.detach().clone())
    assert best is not None
    return Refit(best[2].to(weight.dtype), best[3].to(bias.dtype), best[1], table)


def calibrated_metrics(accuracy: float, mean_class_accuracy: float) -> dict:
    """The validation figures of a calibrated checkpoint, beside those its training recorded
    (``val_acc`` stays the training run's: the About dialog shows both)."""
    return {"val_acc_calibrated": float(accuracy), "val_mca_calibrated": float(mean_class_accuracy)}


ADJUSTMENT_KEYS = ("logit_adjustment_tau", "logit_adjustment_offsets")


def adjusted_checkpoint(ckpt: Checkpoint, adjustment: Adjustment) -> Checkpoint:
    """A copy of ``ckpt`` whose classifier bias includes the adjustment (τ and the offsets
    recorded in metrics, so that a later calibration can take them out again)."""
    state = dict(ckpt.state_dict)
    bias = state["fc.bias"]
    state["fc.bias"] = bias + torch.from_numpy(adjustment.offsets).to(bias.dtype)
    chosen = next(row for row in adjustment.table if row["tau"] == adjustment.tau)
    metrics = {**ckpt.metrics, "logit_adjustment_tau": adjustment.tau,
               "logit_adjustment_offsets": [float(v) for v in adjustment.offsets],
               **calibrated_metrics(chosen["accuracy"], chosen["mean_class_accuracy"])}
    return dataclasses.replace(ckpt, state_dict=state, metrics=metrics, training_state=None)


def unadjusted_checkpoint(ckpt: Checkpoint, train: Split) -> Checkpoint:
    """``ckpt`` without the logit adjustment an earlier calibration put in its bias, so that a
    new one replaces it instead of adding to it. A checkpoint calibrated before the offsets were
    recorded gets −τ · log(prior) of ``train``, its own training split (the caller's check)."""
    if "logit_adjustment_tau" not in ckpt.metrics:
        return ckpt
    recorded = ckpt.metrics.get("logit_adjustment_offsets")
    if recorded is None:
        recorded = -ckpt.metrics["logit_adjustment_tau"] * np.log(class_prior(train))
    state = dict(ckpt.state_dict)
    bias = state["fc.bias"]
    state["fc.bias"] = bias - torch.as_tensor(np.asarray(recorded, np.float32)).to(bias.dtype)
    metrics = {k: v for k, v in ckpt.metrics.items()
               if k not in (*ADJUSTMENT_KEYS, "val_acc_calibrated", "val_mca_calibrated")}
    return dataclasses.replace(ckpt, state_dict=state, metrics=metrics)


def refitted_checkpoint(ckpt: Checkpoint, train: Split, val: Split, device: torch.device,
                        power: float = 0.25, epochs: int = 30) -> tuple[Checkpoint, Refit]:
    """A copy of ``ckpt`` with its classifier re-fitted (``refit_classifier``)."""
    refit = refit_classifier(ckpt.state_dict["fc.weight"], ckpt.state_dict["fc.bias"],
                             pooled_features(ckpt, train, device), pooled_features(ckpt, val, device),
                             val.classes, power, epochs)
    state = {**ckpt.state_dict, "fc.weight": refit.weight, "fc.bias": refit.bias}
    refit_info = {"power": power, "epochs": epochs, "chosen_epoch": refit.epoch}
    chosen = refit.table[refit.epoch - 1]
    metrics = {**ckpt.metrics, "classifier_refit": refit_info,
               **calibrated_metrics(chosen["accuracy"], chosen["mean_class_accuracy"])}
    return dataclasses.replace(ckpt, state_dict=state, metrics=metrics, training_state=None), refit


def calibrate(ckpt: Checkpoint, train: Split, val: Split, device: torch.device,
              max_drop: float = 0.01) -> tuple[Checkpoint, Adjustment]:
    """Choose τ on ``val`` with the prior of ``train``; the adjusted checkpoint and the choice."""
    loader = DataLoader(ExpressionDataset(val, eval_transform(ckpt.meta)), batch_size=128,
                        collate_fn=collate_skipping)
    preds = predict_loader(ckpt.build_model().to(device), loader, device)
    if len(preds.labels) == 0:
        raise DataError("no validation image could be read")
    adjustment = choose_tau(preds.logits, preds.labels, class_prior(train), val.classes, max_drop)
    return adjusted_checkpoint(ckpt, adjustment), adjustment

