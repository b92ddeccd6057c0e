"""Out-of-sample probabilities of every training face by k-fold cross-validation.

A run's own predictions on its training faces are in-sample: a model that has memorised a wrong
label agrees with it. Confident learning wants out-of-sample probabilities: k runs, each trained
with the run's recipe on all but one fold (``TrainConfig.folds``/``fold``), each scoring the fold
it never saw with its best (validation-chosen) model. Every fold is a normal run folder, so an
interrupted cross-validation resumes where it stopped; a fold's scores are kept in
``heldout.npz`` beside its run.
"""

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from gsmc_core.atomic import write_atomic
from gsmc_core.checkpoint import load_checkpoint
from gsmc_core.devices import resolve_device
from gsmc_core.review.audit import TrainingScores
from gsmc_core.training.config import TrainConfig, TrainingError, config_for_resume
from gsmc_core.training.data.preload import MemoryLoader, preload_split
from gsmc_core.training.data.samples import Split
from gsmc_core.training.evaluate import predict_loader
from gsmc_core.training.events import Event
from gsmc_core.training.loop import fold_of, train, training_split
from gsmc_core.training.run_folder import RunFolder

HELDOUT = "heldout.npz"


def fold_config(base: TrainConfig, folds: int, fold: int, out: Path) -> TrainConfig:
    run = out / f"fold{fold}"
    return dataclasses.replace(base, folds=folds, fold=fold, out=str(run),
                               resume=RunFolder(run).last.exists())


# what may differ between the job that scored a fold and the one that reuses it
_RUN_ONLY = ("device", "workers", "threads", "data_root", "out", "resume")


def _check_done_fold(config: TrainConfig, data: str) -> None:
    """A fold scored before is reused only when its recipe is this job's (its epochs too) and
    it scored these faces and labels (``data``: the training split's fingerprint): a fold of
    another cross-validation, or of another dataset, in the same --out is refused, not counted
    (its probabilities would go to other faces)."""
    run = Path(config.out)
    with np.load(run / HELDOUT) as held:
        scored_on = str(held["data"]) if "data" in held.files else ""  # older folds: not recorded
    if scored_on and scored_on != data:
        raise TrainingError(f"{run} was scored on other faces or labels than {config.data_root} holds "
                            f"now (another dataset, or this one changed): delete {run.parent} to "
                            "cross-validate again, or choose another --out")
    try:
        own = config_for_resume(run, {}).resolved()
    except TrainingError as exc:
        raise TrainingError(f"{run / HELDOUT} is there without the run's settings ({exc}); "
                            f"delete {run} to train that fold again") from exc
    wanted = config.resolved()
    differ = [f"{f.name} {getattr(own, f.name)!r}, here {getattr(wanted, f.name)!r}"
              for f in dataclasses.fields(own)
              if f.name not in _RUN_ONLY and getattr(own, f.name) != getattr(wanted, f.name)]
    if differ:
        raise TrainingError(f"{run} was scored by another cross-validation ({'; '.join(differ)}): "
                            "choose another --out, or delete that folder to train the fold again")


def _score_heldout(config: TrainConfig, train_split: Split, fold: np.ndarray, data: str) -> None:
    run = Path(config.out)
    ckpt = load_checkpoint(RunFolder(run).best)
    held = np.flatnonzero(fold == config.fold)
    part = dataclasses.replace(train_split, samples=[train_split.samples[i] for i in held])
    loader = MemoryLoader(preload_split(part, ckpt.meta), ckpt.meta, 256)
    device = resolve_device(config.device)
    preds = predict_loader(ckpt.build_model().to(device), loader, device)
    probs = torch.softmax(torch.from_numpy(preds.logits), 1).numpy()
    write_heldout(run / HELDOUT, held[preds.indices], probs, data)


def write_heldout(path: Path, indices: np.ndarray, probs: np.ndarray, data: str = "") -> None:
    """A fold's held-out scores, complete or not at all: an existing file marks the fold done.
    ``data``: the fingerprint of the training split the indices point into."""
    write_atomic(path, lambda f: np.savez(f, indices=indices, probs=probs, data=np.array(data)),
                 binary=True)


def cross_validated_scores(base: TrainConfig, folds: int, out: str | Path,
                           on_event: Callable[[Event], None] | None = None,
                           should_stop: Callable[[], bool] | None = None) -> TrainingScores | None:
    """Train the ``folds`` runs in ``out`` (resuming those begun, skipping those done) and
    return every training face's out-of-sample probabilities; None when stopped."""
    out = Path(out)
    base = base.resolved()
    train_split, clean = training_split(base)
    fold = fold_of(len(train_split.samples), folds, base.seed)
    data = train_split.fingerprint()
    for k in range(folds):
        config = fold_config(base, folds, k, out)
        if (Path(config.out) / HELDOUT).exists():
            _check_done_fold(config, data)
            continue
        result = train(config, on_event, should_stop)
        if result.stopped:
            return None
        _score_heldout(config, train_split, fold, data)
    probs = np.zeros((len(train_split.samples), len(train_split.classes)), np.float32)
    scored = np.zeros(len(train_split.samples), bool)
    for k in range(folds):
        with np.load(out / f"fold{k}" / HELDOUT) as held:
            probs[held["indices"]] = held["probs"]
            scored[held["indices"]] = True
    indices = np.flatnonzero(scored)  # faces that could not be read are left out
    given = np.array(train_split.labels())[indices]
    flips = {int(i) for i in indices if clean[i] != train_split.samples[i].label}
    noisy = base.label_noise
    return TrainingScores(train_split, probs[indices], given, indices, flips if noisy else None, None)
