"""What a training run reports while it runs (frozen dataclass events for ``on_event``) and
what it returns."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class BatchEvent:
    epoch: int  # 1-based
    epochs: int
    batch: int  # 1-based
    batches: int
    losses: dict[str, float]
    lr: float
    images_per_s: float
    eta_s: float


@dataclass(frozen=True)
class EpochEvent:
    epoch: int
    epochs: int
    metrics: dict[str, Any]
    is_best: bool


@dataclass(frozen=True)
class LogEvent:
    message: str


Event = BatchEvent | EpochEvent | LogEvent


@dataclass
class TrainResult:
    run_dir: Path
    last: Path | None
    best: Path | None
    stopped: bool
    epochs_completed: int
    best_val_accuracy: float
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped_mid_epoch: bool = False  # a stop before the epoch after ``epochs_completed`` ended
    stopped_loading: bool = False  # stopped while the data was loaded: no checkpoint or metrics written
