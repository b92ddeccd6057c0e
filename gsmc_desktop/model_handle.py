"""The model the app uses: a loaded checkpoint plus the device it runs on."""

import html
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gsmc_core.checkpoint import Checkpoint, load_checkpoint
from gsmc_core.devices import resolve_device
from gsmc_core.frames.predictor import Predictor
from gsmc_core.resources import DEFAULT_CHECKPOINT
from gsmc_core.training.run_folder import CHECKPOINTS


@dataclass(frozen=True)
class ModelHandle:
    """A validated checkpoint, a device, and whether each face is averaged with its mirror image
    (``mirror``: flip test-time augmentation, twice the network time). Each worker builds its own
    ``Predictor`` from it, in its own thread, so no two threads share one model."""

    checkpoint: Checkpoint
    device: torch.device
    mirror: bool = False

    @property
    def path(self) -> Path:
        return self.checkpoint.path or Path("?")

    @property
    def name(self) -> str:
        """The file name, with its run folder for a run's generic last.pt/best.pt
        ("ferplus_default/best.pt"), so two runs' models are told apart."""
        if self.path.name in CHECKPOINTS and self.path.parent.name:  # a run's: name the run
            return f"{self.path.parent.name}/{self.path.name}"
        return self.path.name

    @property
    def classes(self) -> tuple[str, ...]:
        return self.checkpoint.meta.classes

    def new_predictor(self) -> Predictor:
        """A Predictor of its own (on the CPU: the cached ONNX export in ONNX Runtime, one thread)."""
        predictor = Predictor.for_checkpoint(self.checkpoint, self.device)
        predictor.tta = self.mirror
        return predictor

    def with_device(self, device: str) -> "ModelHandle":
        return ModelHandle(self.checkpoint, resolve_device(device), self.mirror)


def load_model(path: str | os.PathLike, device: str = "auto", mirror: bool = False) -> ModelHandle:
    """Load and validate a model checkpoint; raises CheckpointError / DeviceUnavailableError
    with a message naming the file or device."""
    return ModelHandle(load_checkpoint(path), resolve_device(device), mirror)


def default_checkpoint() -> Path | None:
    """The shipped default model, or None while it is not there."""
    return DEFAULT_CHECKPOINT if DEFAULT_CHECKPOINT.is_file() else None


def _fmt(value: Any, limit: int = 200) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    text = str(value)
    return text if len(text) <= limit else f"{text[:limit]}…"


def _pct(value: Any) -> str:
    return f"{value:.1%}" if isinstance(value, float) else "unknown"


def _calibration(metrics: dict) -> str:
    steps = []
    if isinstance(metrics.get("classifier_refit"), dict):
        steps.append(f"classifier re-fit, power {_fmt(metrics['classifier_refit'].get('power'))}")
    if "logit_adjustment_tau" in metrics:
        steps.append(f"logit adjustment tau {_fmt(metrics['logit_adjustment_tau'])}")
    return "; ".join(steps) or "unknown steps"


def model_card(handle: ModelHandle) -> str:
    """A short HTML summary of the checkpoint's metadata, training config and metrics."""
    ckpt = handle.checkpoint
    meta = ckpt.meta
    rows = [
        ("File", str(handle.path)),
        ("Architecture", f"{meta.arch}, output stride {meta.output_stride}"),
        ("Input", f"{meta.input_size}×{meta.input_size} px, {meta.color}"),
        ("Face crop", f"margin {meta.face_crop.margin:g}, square {meta.face_crop.square}, "
                      f"aligned {meta.face_crop.align}"),
        ("Classes", ", ".join(meta.classes)),
        ("Created", ckpt.created or "unknown"),
        ("Package version", ckpt.package_version or "unknown"),
        ("Device", str(handle.device)),
    ]
    # a checkpoint's training record is informative only: anything but a mapping is left out
    cfg = ckpt.train_config if isinstance(ckpt.train_config, dict) else {}
    if cfg:
        keys = ("method", "dataset", "epochs", "batch_size", "lr", "noise_rate", "augment", "init",
                "teachers")
        rows.append(("Training", ", ".join(f"{k} {_fmt(cfg[k])}" for k in keys if cfg.get(k) is not None)))
    m = ckpt.metrics if isinstance(ckpt.metrics, dict) else {}
    accuracy = max((m.get(k) for k in ("val_acc", "val_acc_teacher") if isinstance(m.get(k), float)),
                   default=None)
    if isinstance(m.get("val_acc_calibrated"), float):
        rows.append(("Validation", f"accuracy {m['val_acc_calibrated']:.1%}, mean class accuracy "
                                   f"{_pct(m.get('val_mca_calibrated'))} after calibration "
                                   f"({_calibration(m)})"))
    if accuracy is not None:
        teacher_run = isinstance(m.get("val_acc_teacher"), float)  # student or teacher was chosen
        chosen = f", the {m['selected']}" if teacher_run and m.get("selected") else ""
        rows.append(("Validation in training",
                     f"accuracy {accuracy:.1%} after epoch {m.get('epoch', '?')}{chosen}"))
    else:
        rows.append(("Validation", "not recorded"))
    body = "".join(f"<tr><td><b>{k}</b></td><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<table cellspacing='4'>{body}</table>"
