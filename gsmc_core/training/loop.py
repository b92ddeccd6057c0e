"""The trainer shared by the CLI, the desktop app and torchrun: GSMC, EAC and CE.

Its settings are ``train_config.TrainConfig``, the methods' losses ``methods``, its events and
result ``train_events``, its torchrun layout and resumable random state ``distributed``.

Shape of torchvision's reference script: ``train_one_epoch`` and ``evaluate`` return metric dicts;
the run folder holds the resolved config, ``metrics.csv``, ``last.pt`` and ``best.pt`` (selected on
the validation split, among the models the method offers: the student, and GSMC's teacher).
Progress goes out as frozen dataclass events through ``on_event``; a ``should_stop`` callable is
polled after every batch. Under torchrun the same code runs with DistributedDataParallel and only
rank 0 writes.
"""

import csv
import dataclasses
import itertools
import math
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from gsmc_core.atomic import write_atomic
from gsmc_core.checkpoint import (
    Checkpoint,
    CheckpointError,
    FaceCrop,
    ModelMeta,
    load_checkpoint,
    save_checkpoint,
)
from gsmc_core.devices import resolve_device, use_bf16
from gsmc_core.model import GSMCNet, mirror_exact, mirror_exact_sizes_near
from gsmc_core.outputs import same_file
from gsmc_core.training.config import (
    DATASET_FACE_MARGIN,
    RESUMABLE_SETTINGS,
    TrainConfig,
    TrainingError,
    config_for_resume,
    teacher_paths,
)
from gsmc_core.training.data.noise import given_labels, noise_file_names_any, write_label_table
from gsmc_core.training.data.preload import MemoryLoader, preload_split
from gsmc_core.training.data.readers import read_split
from gsmc_core.training.data.samples import (
    Batch,
    DataError,
    EpochSampler,
    ExpressionDataset,
    Split,
    Unreadable,
    collate_skipping,
    load_image,
)
from gsmc_core.training.data.transforms import eval_transform
from gsmc_core.training.distributed import Distributed, rng_state, set_rng_state, weights_digest
from gsmc_core.training.evaluate import classification_metrics, predict_loader
from gsmc_core.training.events import BatchEvent, EpochEvent, Event, LogEvent, TrainResult
from gsmc_core.training.methods import CrossEntropy, make_method
from gsmc_core.training.run_folder import METRIC_COLUMNS, RunFolder
from gsmc_core.training.run_lock import RunFolderBusy, RunLock, close_inherited_locks


@dataclasses.dataclass
class EpochProgress:
    """How far an epoch has got: the batches done and the running sums of its metrics. A stop
    saves it in last.pt, so that ``--resume`` goes on at the next batch as if never stopped."""

    world_size: int = 1  # the processes whose shares of the epoch's order ``batch`` counts in
    batch: int = 0  # batches done (trained, or skipped as empty)
    steps: int = 0  # optimiser steps taken
    seen: int = 0
    correct: int = 0
    skipped: int = 0
    seconds: float = 0.0
    sums: dict[str, float] = dataclasses.field(default_factory=dict)  # metric x batch size
    unreadable: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # key, reason

    def totals(self, world: Distributed, device: torch.device) -> "EpochProgress":
        """The counts of every rank together (a collective call under torchrun)."""
        if not world.enabled:
            return self
        names = sorted(self.sums)
        counts = torch.tensor([self.seen, self.correct, self.skipped, *(self.sums[n] for n in names)],
                              dtype=torch.float64, device=device)
        dist.all_reduce(counts)
        seen, correct, skipped, *sums = counts.tolist()
        return dataclasses.replace(self, seen=int(seen), correct=int(correct), skipped=int(skipped),
                                   sums=dict(zip(names, sums, strict=True)))


def resumed_progress(saved: dict[str, Any] | None, world: Distributed) -> EpochProgress | None:
    """This process's part of the progress a stop saved in the middle of an epoch (rank 0 saved
    every rank's counts; the others go on with the same sums, at zero). None when there is none,
    or when another number of processes trained it: the batches are shares of the epoch's order
    for that many, so those done cannot be told apart and the epoch starts again."""
    if not saved or saved.get("world_size") != world.world_size:
        return None
    partial = EpochProgress(**saved)
    if world.rank == 0:
        return partial
    return EpochProgress(world.world_size, partial.batch, partial.steps, seconds=partial.seconds,
                         sums=dict.fromkeys(partial.sums, 0.0))


def train_one_epoch(
    model: torch.nn.Module,
    method: CrossEntropy,
    optimizer: torch.optim.Optimizer,
    loader: DataLoader | MemoryLoader,
    device: torch.device,
    epoch: int,
    epochs: int,
    world: Distributed,
    on_event: Callable[[Event], None],
    should_stop: Callable[[], bool],
    bf16: bool = False,
    soft_targets: torch.Tensor | None = None,
    progress: EpochProgress | None = None,
) -> dict[str, Any] | None:
    """One pass of ``model`` (the DDP wrapper under torchrun) over ``loader`` with ``method``'s
    loss; the epoch's metrics, or None if ``should_stop`` ended it early. ``epoch`` counts from 0,
    ``epochs`` is the run's total (for the ETA). ``bf16``: under bfloat16 autocast.
    ``soft_targets`` (N x C, by sample index): train on them instead of the labels.
    ``progress``: updated batch by batch; one a stop saved continues the epoch where it ended.
    Raises TrainingError on a non-finite loss."""
    p = progress if progress is not None else EpochProgress()
    loader.sampler.set_epoch(epoch)  # the order, and the epoch each sample's augmentation uses
    model.train()
    student = model.module if isinstance(model, DistributedDataParallel) else model
    start = time.perf_counter() - p.seconds
    seen_here, resumed_at = 0, time.perf_counter()  # the rate of this process since it began
    batches = len(loader)
    rest = (loader.batches_from(p.batch) if isinstance(loader, MemoryLoader)
            else itertools.islice(loader, p.batch, None))
    for i, batch in enumerate(rest, start=p.batch + 1):
        batch: Batch
        p.batch = i
        p.skipped += batch.skipped
        p.unreadable.extend((u.key, u.reason) for u in batch.failed)
        # an empty batch (every image failed to decode) is skipped by all ranks together: the
        # others would wait for this one in the gradient all-reduce forever
        if _any_rank(len(batch.labels) == 0, world, device):
            continue
        images = batch.images.to(device, non_blocking=True)
        labels = batch.labels.to(device, non_blocking=True)
        soft = None if soft_targets is None else soft_targets[batch.indices].to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss, terms, logits = method.losses(model, images, labels, soft)
        values = torch.stack([loss.detach().float(), *[t.detach().float() for t in terms.values()]])
        if world.enabled:
            dist.all_reduce(values)
            values /= world.world_size
        if not torch.isfinite(values).all():
            names = ["loss", *terms]
            bad = [n for n, v in zip(names, values.tolist(), strict=True) if not math.isfinite(v)]
            raise TrainingError(f"loss became non-finite ({', '.join(bad)}) at epoch {epoch + 1}, "
                                f"batch {i}; stopped")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        method.after_step(student)
        p.steps += 1
        for name, v in zip(["loss", *terms], values.tolist(), strict=True):
            p.sums[name] = p.sums.get(name, 0.0) + v * len(labels)
        p.correct += int((logits.argmax(1) == labels).sum())
        p.seen += len(labels)
        seen_here += len(labels)
        elapsed = time.perf_counter() - start
        on_event(BatchEvent(
            epoch=epoch + 1, epochs=epochs, batch=i, batches=batches,
            losses={k: v / p.seen for k, v in p.sums.items()},
            lr=optimizer.param_groups[0]["lr"],
            images_per_s=seen_here * world.world_size / (time.perf_counter() - resumed_at),
            eta_s=elapsed / i * (batches - i) + elapsed / i * batches * (epochs - epoch - 1),
        ))
        if _any_rank(should_stop(), world, device):  # all ranks stop at the same batch
            p.seconds = time.perf_counter() - start
            return None
    p.seconds = time.perf_counter() - start
    total = p.totals(world, device)  # rank 0 writes metrics.csv: every rank's images
    if p.steps == 0:
        first = "; ".join(reason for _, reason in p.unreadable[:3]) or "the split is empty"
        raise TrainingError(f"epoch {epoch + 1}: none of the {total.skipped} training images could "
                            f"be read, so nothing was trained or saved (first: {first})")
    return {
        **{k: v / max(total.seen, 1) for k, v in total.sums.items()},
        "train_acc": total.correct / max(total.seen, 1),
        "lr": optimizer.param_groups[0]["lr"],
        "seconds": p.seconds,
        "images_per_s": total.seen / p.seconds,
        "skipped": total.skipped,
        "steps": p.steps,
        "unreadable": [Unreadable(key, reason) for key, reason in _every_ranks(p.unreadable, world)],
    }


def _every_ranks(unreadable: list[tuple[str, str]], world: Distributed) -> list[tuple[str, str]]:
    """The unreadable images of all ranks (each met those of its own shard; preloaded, every
    rank knows them all), each once, in key order under torchrun."""
    if not world.enabled:
        return unreadable
    gathered: list[list[tuple[str, str]] | None] = [None] * world.world_size
    dist.all_gather_object(gathered, unreadable)
    return sorted(dict(item for part in gathered for item in part or []).items())


def training_split(cfg: TrainConfig) -> tuple[Split, list[int]]:
    """A run's training samples with the labels it trains on (its noise applied), and their
    dataset labels."""
    return as_trained(read_split(cfg.dataset, cfg.data_root, "train", cfg.num_classes,
                                 cfg.val_fraction, cfg.seed, cfg.holdout), cfg)


def as_trained(train: Split, cfg: TrainConfig) -> tuple[Split, list[int]]:
    """A dataset's training split as a run with ``cfg`` trains on it (its subset, its noise
    applied), and the subset's dataset labels."""
    train = train.subset(cfg.limit_train, cfg.seed)
    clean = train.labels()
    noisy = given_labels(train, cfg.noise_kind, cfg.noise_rate, cfg.noise_seed, cfg.noise_file)
    return train.with_labels(noisy), clean


def fold_of(n: int, folds: int, seed: int) -> np.ndarray:
    """The fold (0..folds-1) of each of ``n`` samples: seeded, the folds within one of equal."""
    order = np.random.default_rng(seed + 7919).permutation(n)
    fold = np.empty(n, np.int64)
    fold[order] = np.arange(n) % folds
    return fold


def _leave_stop_signals_to_the_trainer(_worker_id: int) -> None:
    """Loader workers ignore Ctrl-C, SIGTERM and SIGHUP: sent to the whole process group (what
    `timeout`, systemd and schedulers do), they would kill the workers mid-batch and the run
    would end in a traceback without saving. The trainer stops after the batch, saves last.pt
    and shuts the workers down itself."""
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
    close_inherited_locks()  # the run's lock ends with the trainer, not with its last worker


def _loads(path: Path) -> bool:
    try:
        load_checkpoint(path)
    except CheckpointError:
        return False
    return True


def _any_rank(flag: bool, world: Distributed, device: torch.device) -> bool:
    """Whether ``flag`` holds on any rank. Under torchrun every rank must take part in the same
    collectives, so a skipped step or a stop request (which reaches the ranks at different
    batches) must be decided together, or the others wait forever."""
    if not world.enabled:
        return flag
    value = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def evaluate(model: torch.nn.Module, loader: DataLoader, device: torch.device,
             classes: tuple[str, ...]) -> dict[str, Any]:
    """Accuracy, loss and the rest of ``classification_metrics`` of ``model`` over ``loader``."""
    preds = predict_loader(model, loader, device)
    return classification_metrics(preds.logits, preds.labels, classes)


class Trainer:
    """One training run. ``run()`` trains to the end, a stop request, or an error."""

    def __init__(
        self,
        config: TrainConfig,
        on_event: Callable[[Event], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        self.config = config.resolved()
        self.on_event = on_event or (lambda event: None)
        self.should_stop = should_stop or (lambda: False)
        self.dist = Distributed.from_env()
        self.run_dir = Path(self.config.out)
        self.folder = RunFolder(self.run_dir)
        # set up by run(): the device, data, model, method, optimiser and the run's progress
        self.config_dict: dict[str, Any] = dataclasses.asdict(self.config)
        self.device = torch.device("cpu")
        self.meta: ModelMeta | None = None
        self.model: GSMCNet | None = None
        self.ddp_model: torch.nn.Module | None = None
        self.method: CrossEntropy | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
        self.train_loader: DataLoader | None = None
        self.val_loader: DataLoader | None = None
        self.global_step = 0
        self.best_val_acc = -1.0
        self.last_row: dict[str, Any] | None = None
        self.partial: EpochProgress | None = None  # where a stopped epoch ended (resume)
        self.data_fingerprint: str | None = None  # of the splits read (kept in last.pt)

    # --- setup -------------------------------------------------------------------------------

    def _log(self, message: str) -> None:
        self.on_event(LogEvent(message))

    def _setup_device(self) -> torch.device:
        cfg = self.config
        if not self.dist.enabled:
            return resolve_device(cfg.device)
        device = resolve_device(cfg.device)
        if device.type == "cuda":
            torch.cuda.set_device(self.dist.local_rank)
            device = torch.device("cuda", self.dist.local_rank)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return device

    def _read_data(self) -> tuple[Split, Split, list[int]]:
        cfg = self.config
        if cfg.resume and cfg.num_classes is None and self.folder.last.is_file():
            # the classes the run trains, whatever the dataset's default is now (image folders
            # without contempt read as 7 classes since 2026-12-01; earlier runs trained 8)
            cfg = dataclasses.replace(cfg, num_classes=len(self._last_checkpoint().meta.classes))
        train, clean = training_split(cfg)
        if cfg.folds > 1:  # cross-validation: this run leaves one fold out (it scores it after)
            keep = fold_of(len(train.samples), cfg.folds, cfg.seed) != cfg.fold
            in_folds = [s for s, k in zip(train.samples, keep, strict=True) if k]
            train = dataclasses.replace(train, samples=in_folds)
            clean = [c for c, k in zip(clean, keep, strict=True) if k]
        val = read_split(cfg.dataset, cfg.data_root, "val", cfg.num_classes,
                         cfg.val_fraction, cfg.seed, cfg.holdout).subset(cfg.limit_eval, cfg.seed)
        if cfg.noisy_validation:  # selection without a clean oracle: the same kind of noise
            # the noise file's labels where it names validation faces, else the noise rate's
            named = cfg.noise_file and noise_file_names_any(Path(cfg.noise_file), val)
            file = cfg.noise_file if named else None
            if cfg.noise_file and file is None and cfg.noise_rate == 0 and cfg.noise_kind != "annotator":
                raise TrainingError(f"noisy validation: {cfg.noise_file} names none of the validation "
                                    "faces and no noise rate is set, so validation would stay clean; "
                                    "give a noise rate, or a noise file that names validation faces")
            val = val.with_labels(given_labels(val, cfg.noise_kind, cfg.noise_rate,
                                               cfg.noise_seed + 1, file))
        return train, val, clean

    def _loader(self, split: Split, training: bool) -> DataLoader | MemoryLoader:
        cfg = self.config
        meta = self.meta
        if cfg.preload:
            start = time.perf_counter()
            # a stop asked for while decoding: under torchrun all ranks stop together, at a batch
            data = preload_split(split, meta, strict=cfg.strict,
                                 should_stop=None if self.dist.enabled else self.should_stop)
            if data is None:
                raise _StoppedLoading
            self._log(f"{split.name}: {len(data.labels)} images decoded into memory in "
                      f"{time.perf_counter() - start:.0f} s")
            if training:
                return MemoryLoader(data, meta, cfg.batch_size, self.method.batch_augment,
                                    cfg.seed, self.dist.rank, self.dist.world_size)
            return MemoryLoader(data, meta, cfg.batch_size)
        self._probe(split)
        transform = self.method.train_transform(meta) if training else eval_transform(meta)
        dataset = ExpressionDataset(split, transform, strict=cfg.strict,
                                    seed=cfg.seed if training else None)
        sampler = None
        if training:
            order = (DistributedSampler(dataset, shuffle=True, seed=cfg.seed) if self.dist.enabled
                     else RandomSampler(dataset, generator=torch.Generator()))
            sampler = EpochSampler(order, len(dataset), cfg.seed)
        return DataLoader(
            dataset,
            batch_size=cfg.batch_size,
            sampler=sampler,
            shuffle=False,
            num_workers=cfg.workers,
            collate_fn=collate_skipping,
            pin_memory=self.device.type == "cuda",
            drop_last=training and len(split.samples) > cfg.batch_size * self.dist.world_size,
            persistent_workers=cfg.workers > 0,
            worker_init_fn=_leave_stop_signals_to_the_trainer,
        )

    def _probe(self, split: Split, tries: int = 64) -> None:
        """Refuse at once a split whose images cannot be read (a wrong folder, files missing),
        instead of after an epoch; a few unreadable images are skipped and reported later."""
        picks = random.Random(self.config.seed).sample(range(len(split.samples)),
                                                       min(tries, len(split.samples)))
        reasons = []
        for i in picks:
            try:
                load_image(split.samples[i])
                return
            except DataError as exc:
                if self.config.strict:
                    raise
                reasons.append(str(exc))
        raise TrainingError(f"none of {len(picks)} {split.name} images tried could be read, so "
                            f"nothing was trained (first: {'; '.join(reasons[:3])}); check the "
                            "data folder")

    def _report_unreadable(self, unreadable: list[Unreadable], total: int) -> None:
        """Say how many training images were skipped and which, and list them in the run folder."""
        if not unreadable or not self.dist.is_main:
            return
        path = self.folder.unreadable

        def write(f) -> None:
            writer = csv.writer(f)
            writer.writerow(["image", "reason"])
            writer.writerows((u.key, u.reason) for u in unreadable)

        write_atomic(path, write)
        first = ", ".join(u.key for u in unreadable[:3])
        self._log(f"{len(unreadable)} of {total} training images could not be read and are "
                  f"skipped (first: {first}); all listed in {path}")

    def _build_model(self) -> GSMCNet:
        cfg = self.config
        model = self.meta.build_model()
        if cfg.init and not cfg.resume:  # a resumed run's weights come from last.pt
            init = load_checkpoint(cfg.init, kind=None)
            if init.meta.arch != cfg.arch:
                raise TrainingError(f"{cfg.init}: initialisation is a {init.meta.arch}, but this "
                                    f"run trains a {cfg.arch}")
            backbone = {k: v.float() for k, v in init.state_dict.items() if k.startswith("backbone.")}
            missing, _ = model.load_state_dict(backbone, strict=False)
            if any(k.startswith("backbone.") for k in missing):
                raise TrainingError(f"{cfg.init}: backbone weights incomplete ({len(missing)} missing)")
            self._log(f"initialised the backbone from {cfg.init}")
        return model

    def _optimizer(self, model: GSMCNet):
        cfg = self.config
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        if cfg.scheduler == "step":
            scheduler = torch.optim.lr_scheduler.StepLR(optimizer, cfg.lr_step, cfg.lr_gamma)
        elif cfg.scheduler == "exp":
            scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, cfg.lr_gamma)
        else:  # cosine to 0 over the run, in closed form: a resume with more epochs stretches it
            epochs = cfg.epochs
            scheduler = torch.optim.lr_scheduler.LambdaLR(
                optimizer, lambda e: 0.5 * (1 + math.cos(math.pi * min(e, epochs) / epochs)))
        return optimizer, scheduler

    # --- validation and export ------------------------------------------------------------------

    def _validate(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """Validation metrics of every model the method offers, and the weights to export: the
        student's, or the teacher's when it scores higher (``selected``)."""
        results = {name: evaluate(module, self.val_loader, self.device, self.meta.classes)
                   for name, module in self.method.candidates(self.model).items()}
        if results["student"]["n"] == 0:
            raise TrainingError("none of the validation images could be read, so no model can be "
                                "selected; nothing was saved. Check the data folder")
        metrics: dict[str, Any] = {}
        for name, m in results.items():
            suffix = "" if name == "student" else f"_{name}"
            metrics.update({f"val_acc{suffix}": m["accuracy"], f"val_loss{suffix}": m["loss"]})
        selected = max(results, key=lambda name: (results[name]["accuracy"], name == "student"))
        metrics["selected"] = selected
        # the exported model's figures by class, for the app's table (not in metrics.csv)
        metrics["val_per_class"] = results[selected]["per_class"]
        metrics["val_confusion"] = results[selected]["confusion_matrix"]
        return metrics, self.method.candidates(self.model)[selected].state_dict()

    def _validate_and_save(self, row: dict[str, Any], epoch: int) -> bool:
        """Rank 0's end of an epoch: validation into ``row``, then best.pt (when it is the best
        so far), last.pt and metrics.csv. Returns whether it is the best."""
        val_metrics, weights = self._validate()
        row.update(val_metrics)
        is_best = row["val_acc"] > self.best_val_acc or (
            "val_acc_teacher" in row and row["val_acc_teacher"] > self.best_val_acc)
        best_of_epoch = max(row["val_acc"], row.get("val_acc_teacher", -1.0))
        self.last_row = {k: row[k] for k in METRIC_COLUMNS if k in row}
        if is_best:
            self.best_val_acc = best_of_epoch
            save_checkpoint(self._checkpoint(weights, row, epoch + 1, False), self.folder.best)
        save_checkpoint(self._checkpoint(weights, row, epoch + 1, True), self.folder.last)
        self.folder.append_metrics(row)
        return is_best

    def _sync_buffers(self) -> None:
        """Give every rank rank 0's BatchNorm statistics (student and teacher).

        DDP broadcasts buffers before each forward, but the last forward of an epoch updates
        them locally, and the teacher averages its own rank's statistics.
        """
        if not self.dist.enabled:
            return
        for module in self.method.candidates(self.model).values():
            for buffer in module.buffers():
                dist.broadcast(buffer, src=0)

    # --- checkpoints ---------------------------------------------------------------------------

    def _checkpoint(self, weights, metrics: dict, epochs_done: int, with_state: bool,
                    partial: EpochProgress | None = None) -> Checkpoint:
        state = None
        if with_state:
            state = {
                "partial": None if partial is None else dataclasses.asdict(partial),
                "partial_inputs": [] if partial is None else self.method.epoch_state(),
                "epoch": epochs_done,
                "global_step": self.global_step,
                "best_val_acc": self.best_val_acc,
                "student": self.model.state_dict(),
                "teacher": self.method.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "rng": rng_state(),
                "last_row": self.last_row,  # the last finished epoch's metrics.csv row
                "data": self.data_fingerprint,  # the faces and labels trained and validated on
            }
        return Checkpoint(meta=self.meta, state_dict=weights, train_config=self.config_dict,
                          metrics=metrics, training_state=state)

    def _last_checkpoint(self) -> Checkpoint:
        """The run's last.pt; a damaged one is a TrainingError that says what is left."""
        try:
            return load_checkpoint(self.folder.last)
        except CheckpointError as exc:  # cut short by a full disk, damaged on disk
            best = self.folder.best
            raise TrainingError(
                f"{exc}. The run cannot be resumed from it; "
                + (f"its {best.name} is intact: use it, or continue training from its weights in "
                   f"a new run in another folder (--init {best})" if _loads(best) else
                   "start a new run in another folder")) from exc

    def _restore(self, path: Path) -> int:
        ckpt = self._last_checkpoint()
        state = ckpt.training_state
        needed = ("student", "optimizer", "scheduler", "epoch", "global_step", "best_val_acc", "rng")
        if not isinstance(state, dict) or any(k not in state for k in needed):
            raise TrainingError(f"{path}: holds no complete training state to resume from "
                                "(damaged, or a model file rather than a run's last.pt)")
        self.model.load_state_dict(state["student"])
        try:
            self.method.load_state_dict(state["teacher"])
        except ValueError as exc:
            raise TrainingError(f"{path}: {exc}; it cannot be resumed as {self.config.method}") from exc
        self.optimizer.load_state_dict(state["optimizer"])
        scheduler_state = dict(state["scheduler"])
        cosine = isinstance(self.scheduler, torch.optim.lr_scheduler.LambdaLR)
        if cosine:  # runs saved before the cosine became closed-form hold CosineAnnealingLR's state
            scheduler_state.setdefault("lr_lambdas", [None] * len(self.optimizer.param_groups))
        self.scheduler.load_state_dict(scheduler_state)
        if cosine:  # where this run's (perhaps longer) cosine stands, not where the old one did
            s = self.scheduler
            for group, base, factor in zip(self.optimizer.param_groups, s.base_lrs, s.lr_lambdas,
                                           strict=True):
                group["lr"] = base * factor(s.last_epoch)
        old_lr = ckpt.train_config.get("lr")
        if old_lr and self.config.lr != old_lr:  # a new --lr: scale the schedule where it stands
            factor = self.config.lr / old_lr
            for group in self.optimizer.param_groups:
                group["lr"] *= factor
            self.scheduler.base_lrs = [lr * factor for lr in self.scheduler.base_lrs]
            self._log(f"learning rate {old_lr:g} -> {self.config.lr:g} from here on")
        self.global_step = state["global_step"]  # at the start of a stopped epoch: see partial
        self.best_val_acc = state["best_val_acc"]
        if self.best_val_acc >= 0 and not self.folder.best.is_file():  # (none before a validation)
            self._log(f"warning: {self.folder.best} is missing, so the best model so far (validation "
                      f"accuracy {self.best_val_acc:.4f}) is lost; best.pt is written again from the "
                      "next epoch on")
            self.best_val_acc = -1.0
        self.partial = resumed_progress(state.get("partial"), self.dist)
        if self.partial is not None:  # a stop in the middle of an epoch: go on at its next batch
            self.method.load_epoch_state([x.to(self.device) for x in state.get("partial_inputs", [])])
        elif state.get("partial"):
            self._log(f"{path} stopped in an epoch trained by {state['partial'].get('world_size')} "
                      f"processes, resumed by {self.dist.world_size}: that epoch starts again from its "
                      "first batch, so the batches trained before the stop are trained twice (resume "
                      "with the same number of processes to go on where it stopped)")
        self.last_row = state.get("last_row")
        set_rng_state(state["rng"])
        saved = state.get("data")  # (runs saved before it was kept: not checked)
        if saved is not None and saved != self.data_fingerprint:
            raise TrainingError(f"{self.config.data_root} does not hold the faces and labels this run "
                                f"trained on (another copy, or labels changed since): resume with the "
                                "dataset it was trained on, or start a new run; nothing was changed")
        return state["epoch"]

    def _check_own_recipe(self) -> None:
        """A resumed run continues its own recipe (its config.yaml), however its config was
        built (the CLI and the app build it with ``config_for_resume``; a YAML file or a caller
        of ``train`` may not)."""
        if not self.folder.config_file.is_file():
            return
        own = config_for_resume(self.run_dir, {}).resolved()
        free = (*RESUMABLE_SETTINGS, "out", "resume")
        differ = [f"{f.name} {getattr(own, f.name)!r} -> {getattr(self.config, f.name)!r}"
                  for f in dataclasses.fields(own)
                  if f.name not in free and getattr(own, f.name) != getattr(self.config, f.name)]
        if differ:
            raise TrainingError(
                f"Resuming continues the run in {self.run_dir} with its own settings, and these "
                f"differ from it: {', '.join(differ)}. A resumed run may change only "
                f"{', '.join(RESUMABLE_SETTINGS)}; start a new run (another output folder) for "
                "other settings")

    def _reconcile_metrics(self, epochs_done: int, last_row: dict[str, Any] | None) -> None:
        """On resume, metrics.csv holds exactly one row per epoch in last.pt: a kill between
        saving last.pt and writing the row loses no row (last.pt carries it), and rows of an
        epoch that was never saved are dropped (it is trained again)."""
        rows, problems = self.folder.read_history()
        if problems:  # rewritten below without the damaged rows: the file as it was is kept
            copy = self.folder.keep_damaged_metrics()
            self._log(f"warning: {self.folder.metrics_file} is damaged ({'; '.join(problems[:3])}"
                      f"{'; …' if len(problems) > 3 else ''}): those rows are left out of the "
                      f"curves and the file; it is kept as it was in {copy.name}")
        rows = [r for r in rows if int(r["epoch"]) <= epochs_done]
        if last_row is not None and int(last_row["epoch"]) == epochs_done and (
                not rows or int(rows[-1]["epoch"]) < epochs_done):
            rows.append(last_row)
            self._log(f"metrics.csv lacked epoch {epochs_done}'s row"
                      f"{'' if problems else ' (a kill after saving last.pt)'}; restored it from last.pt")
        self.folder.write_history(rows)

    def _check_run_dir(self) -> None:
        """Before anything is loaded: a new run never writes into another run's folder (its
        best.pt or metrics.csv would be overwritten or mixed in, even when last.pt is gone), and
        temporary files left by a save that a kill cut short are removed."""
        if not self.config.resume and self.folder.run_files():
            raise TrainingError(self.folder.problem_for_new_run())
        if self.dist.is_main:
            for name in self.folder.remove_stale_temporaries():
                self._log(f"removed {name}, left by a save that was cut short")

    def _prepare_run_dir(self, train: Split, clean: list[int]) -> None:
        cfg = self.config
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # the run's recipe; `resume` is what was done with it, not part of it (a config.yaml used
        # as a template for a new run must not resume)
        recipe = {k: v for k, v in self.config_dict.items() if k != "resume"}
        self.folder.write_config(yaml.safe_dump(recipe, sort_keys=False))
        if cfg.label_noise:
            write_label_table(self.folder.train_labels, train, clean, train.labels())

    # --- the run -------------------------------------------------------------------------------

    def run(self) -> TrainResult:
        try:
            self._refuse_a_run_dir_inside_the_data()
            if not self.dist.is_main:  # only rank 0 writes the folder
                return self._run()
            with RunLock(self.run_dir):
                return self._run()
        except RunFolderBusy as exc:
            raise TrainingError(f"{exc}; nothing was changed") from None
        finally:
            self._end_loader_workers()

    def _refuse_a_run_dir_inside_the_data(self) -> None:
        """Before the run folder is made: not a file, not inside the dataset (in an image-folder
        dataset it would be read as a class, and the dataset's files are never written among)."""
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise TrainingError(self.folder.problem_for_new_run())
        root = Path(self.config.data_root)
        if root.is_dir() and any(same_file(root, parent) for parent in (self.run_dir, *self.run_dir.parents)):
            raise TrainingError(f"the run folder {self.run_dir} is inside the dataset {root}: choose "
                                "a folder outside it")

    def _end_loader_workers(self) -> None:
        """The persistent loader workers end with the run, also one ended by an exception whose
        traceback keeps this trainer alive: they ignore SIGTERM (``_leave_stop_signals_to_the_
        trainer``), so the interpreter's exit, which terminates leftover children with it and
        then waits for them, waited forever."""
        for loader in (self.train_loader, self.val_loader):
            iterator = getattr(loader, "_iterator", None)  # torch's DataLoader: no public close
            if iterator is not None:
                iterator._shutdown_workers()
                loader._iterator = None

    def _run(self) -> TrainResult:
        cfg = self.config
        self._check_run_dir()
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        self.device = self._setup_device()
        if cfg.threads and self.device.type == "cpu":
            torch.set_num_threads(cfg.threads)
        train, val, clean = self._read_data()
        self.data_fingerprint = f"{train.fingerprint()} {val.fingerprint()}"
        soft_targets = train.soft_targets() if cfg.soft_labels else None
        if cfg.soft_labels and soft_targets is None:
            raise TrainingError(f"soft labels need annotator votes for every training image; "
                                f"{cfg.dataset} has none (FERPlus has them)")
        self.meta = ModelMeta(
            arch=cfg.arch, classes=train.classes, input_size=cfg.input_size,
            output_stride=cfg.output_stride, color=cfg.color,
            face_crop=FaceCrop(margin=cfg.face_margin if cfg.face_margin is not None
                               else DATASET_FACE_MARGIN.get(cfg.dataset, FaceCrop().margin)),
        )
        for note in dict.fromkeys([*train.notes, *val.notes]):
            self._log(note)
        flipped = sum(a != b for a, b in zip(clean, train.labels(), strict=True))
        bf16 = use_bf16(cfg.precision, self.device)
        self._log(f"{cfg.dataset}: {len(train.samples)} training samples ({flipped} noisy labels), "
                  f"{len(val.samples)} validation samples, {len(train.classes)} classes; "
                  f"method {cfg.method}, device {self.device}"
                  f"{f', {self.dist.world_size} processes' if self.dist.enabled else ''}, "
                  f"{'bfloat16 mixed precision' if bf16 else 'float32'}"
                  f"{', soft labels (annotator votes)' if cfg.soft_labels else ''}")
        if cfg.method in ("gsmc", "eac") and not mirror_exact(cfg.input_size, cfg.output_stride):
            below, above = mirror_exact_sizes_near(cfg.input_size, cfg.output_stride)
            self._log(f"warning: at input size {cfg.input_size} (output stride "
                      f"{cfg.output_stride}) the mirror of the CAMs is shifted by part of a cell, "
                      f"so the flip consistency compares misaligned maps; {below} or {above} "
                      "make it exact")
        self.model = self._build_model().to(self.device)
        self.method = make_method(cfg, self.model, self.meta)
        for path in teacher_paths(cfg.teachers):
            self._log(f"distilling from {path} (weight {cfg.lambda_teachers:g})")
        self.ddp_model = (DistributedDataParallel(self.model) if self.dist.enabled else self.model)
        self.optimizer, self.scheduler = self._optimizer(self.model)
        self.global_step = 0
        self.best_val_acc = -1.0
        try:
            self.train_loader = self._loader(train, training=True)
            self.val_loader = self._loader(val, training=False)
        except _StoppedLoading:
            self._log("stopped while the data was loaded; no checkpoint or metrics written")
            last, best = self.folder.last, self.folder.best  # a resumed run's, as they were
            return TrainResult(run_dir=self.run_dir, last=last if last.exists() else None,
                               best=best if best.exists() else None, stopped=True,
                               epochs_completed=0, best_val_accuracy=-1.0, stopped_loading=True)
        start_epoch = 0
        if cfg.resume:
            last = self.folder.last
            if not last.exists():
                raise TrainingError(f"{last} not found; nothing to resume")
            self._check_own_recipe()
            start_epoch = self._restore(last)
            if start_epoch > cfg.epochs:
                raise TrainingError(f"{self.run_dir} has trained {start_epoch} epochs, more than "
                                    f"the {cfg.epochs} asked for; nothing was changed. Give "
                                    f"--epochs {start_epoch} or more to continue it")
            self._log(f"resumed from {last} after epoch {start_epoch}")
        if self.dist.is_main:
            self._prepare_run_dir(train, clean)
            if cfg.resume:
                self._reconcile_metrics(start_epoch, self.last_row)
        history: list[dict[str, Any]] = []
        stopped = between_epochs = False
        epoch = start_epoch
        progress = EpochProgress()
        try:
            for epoch in range(start_epoch, cfg.epochs):
                # a stop asked for while the last epoch was validated and saved: last.pt holds it
                if epoch > start_epoch and _any_rank(self.should_stop(), self.dist, self.device):
                    stopped = between_epochs = True
                    break
                progress, self.partial = self.partial or EpochProgress(self.dist.world_size), None
                try:
                    train_metrics = train_one_epoch(
                        self.ddp_model, self.method, self.optimizer, self.train_loader, self.device,
                        epoch, cfg.epochs, self.dist, self.on_event, self.should_stop,
                        bf16, soft_targets, progress)
                except TrainingError as exc:  # a divergence: say what is kept and what to try
                    last = self.folder.last
                    kept = (f"the last good checkpoint is kept in {last}" if last.exists()
                            else "no epoch had finished, so nothing was saved")
                    raise TrainingError(f"{exc}; {kept}. Try a lower learning rate.") from exc
                if train_metrics is None:
                    stopped = True
                    break
                self.global_step += train_metrics.pop("steps")
                unreadable = train_metrics.pop("unreadable")
                if epoch == start_epoch:
                    self._report_unreadable(unreadable, len(train.samples))
                self.scheduler.step()
                row = {"epoch": epoch + 1, **train_metrics}
                teacher = self.method.candidates(self.model).get("teacher")
                if teacher is not None and self.dist.is_main:  # what the refresh below changes
                    row["val_acc_teacher_avg_bn"] = evaluate(
                        teacher, self.val_loader, self.device, self.meta.classes)["accuracy"]
                self.method.end_epoch()
                self._sync_buffers()
                is_best = False
                failure: Exception | None = None
                if self.dist.is_main:
                    try:
                        is_best = self._validate_and_save(row, epoch)
                    except Exception as exc:  # the other ranks must hear of it, or they wait forever
                        failure = exc
                if _any_rank(failure is not None, self.dist, self.device):  # also the epoch's barrier
                    if failure is not None:
                        raise failure
                    raise TrainingError(f"rank 0 failed while validating or saving epoch {epoch + 1} "
                                        "(its message says why); this rank stopped with it")
                history.append(row)
                self.on_event(EpochEvent(epoch + 1, cfg.epochs, row, is_best))
            else:
                epoch = cfg.epochs
            if stopped and between_epochs:
                self._log(f"stopped after epoch {epoch}; {self.folder.last} holds it")
            elif stopped:  # what was learnt, and where in the epoch: resuming goes on from there
                partial = progress.totals(self.dist, self.device)
                if self.dist.is_main:
                    save_checkpoint(self._checkpoint(self.model.state_dict(), {"stopped_in_epoch": epoch + 1},
                                                     epoch, True, partial), self.folder.last)
                    self._log(f"stopped in epoch {epoch + 1} after batch {partial.batch} of "
                              f"{len(self.train_loader)}; saved {self.folder.last}")
            if self.dist.enabled:  # lets a torchrun user check that the ranks agree
                self._log(f"rank {self.dist.rank}/{self.dist.world_size}: final weights digest "
                          f"{weights_digest(self.model)}")
        finally:
            if self.dist.enabled and dist.is_initialized():
                dist.destroy_process_group()
        best = self.folder.best
        return TrainResult(
            run_dir=self.run_dir,
            last=self.folder.last if self.dist.is_main else None,
            best=best if best.exists() and self.dist.is_main else None,
            stopped=stopped,
            stopped_mid_epoch=stopped and not between_epochs,
            epochs_completed=epoch,
            best_val_accuracy=self.best_val_acc,
            history=history,
        )


class _StoppedLoading(Exception):
    """A stop was asked for while the data was decoded into memory."""


def train(config: TrainConfig, on_event: Callable[[Event], None] | None = None,
          should_stop: Callable[[], bool] | None = None) -> TrainResult:
    """Run a training run to its end (or a stop request)."""
    return Trainer(config, on_event, should_stop).run()
