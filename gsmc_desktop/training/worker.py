"""The Training tab's worker: the core trainer in its own thread, reporting through signals."""

import threading
import time

from PySide6.QtCore import Signal, Slot

from gsmc_core.checkpoint import load_checkpoint
from gsmc_core.devices import resolve_device
from gsmc_core.frames.quantize import int8_graph, quantize_int8
from gsmc_core.training.config import TrainConfig
from gsmc_core.training.data.preload import calibration_faces
from gsmc_core.training.data.readers import read_split
from gsmc_core.training.data.samples import DataError
from gsmc_core.training.evaluate import evaluate_checkpoint
from gsmc_core.training.events import BatchEvent, EpochEvent, Event, LogEvent
from gsmc_core.training.loop import train
from gsmc_desktop.threads import Worker

BATCH_EVENT_INTERVAL_S = 0.1  # at most ~10 batch updates a second reach the GUI


class _Closing(Exception):
    """Raised between batches of an evaluation when the window closes."""


class TrainingWorker(Worker):
    """Runs ``gsmc_core.training.loop.train`` with ``on_event``/``should_stop`` wired to signals.

    Signals: ``batch`` (BatchEvent), ``epoch`` (EpochEvent), ``log`` (text), ``finished``
    (TrainResult, also after a stop request), ``evaluated``; ``errored`` (the exception, and
    "training" or "evaluation").
    """

    batch = Signal(object)
    epoch = Signal(object)
    log = Signal(str)
    finished = Signal(object)
    evaluated = Signal(str, object)  # checkpoint path, metrics of ``evaluate_checkpoint``
    prepared = Signal(str, str)  # checkpoint path, what was done ("" when nothing was needed)
    checked = Signal(object, object)  # TrainConfig, why its training labels cannot be used (or None)

    def __init__(self) -> None:
        super().__init__()  # request_stop: after the batch in progress; then last.pt is saved
        self._last_batch = 0.0
        self._closing = threading.Event()

    def close_soon(self) -> None:
        """The window is closing (from any thread): a run stops after its batch, an evaluation
        after its batch, without a result."""
        self._closing.set()
        self.request_stop()

    def _unless_closing(self, _done: int, _total: int) -> None:
        if self._closing.is_set():
            raise _Closing

    def _on_event(self, event: Event) -> None:
        if isinstance(event, BatchEvent):
            now = time.monotonic()
            # fast GPU batches would flood the GUI's event queue; the epoch's last batch always goes
            if now - self._last_batch < BATCH_EVENT_INTERVAL_S and event.batch != event.batches:
                return
            self._last_batch = now
            self.batch.emit(event)
        elif isinstance(event, EpochEvent):
            self.epoch.emit(event)
        elif isinstance(event, LogEvent):
            self.log.emit(event.message)

    @Slot(object)
    def run(self, config: TrainConfig) -> None:
        self._stop.clear()
        self._last_batch = 0.0
        try:
            result = train(config, on_event=self._on_event, should_stop=self._stop.is_set)
        except Exception as exc:  # keep the app alive; the tab says what broke
            self.fail(exc, "training")
        else:
            self.finished.emit(result)

    @Slot(object)
    def check(self, config: TrainConfig) -> None:
        """Read the run's training labels before it starts (FER2013's pixel rows take seconds:
        not on the GUI thread), so a wrong folder or format is said beside the form's field."""
        try:
            read_split(config.dataset, config.data_root, "train")
        except (DataError, OSError, ValueError) as exc:  # (ValueError: not text)
            self.checked.emit(config, exc)
        else:
            self.checked.emit(config, None)

    @Slot(str, str, str)
    def evaluate(self, checkpoint: str, dataset: str, data_root: str) -> None:
        """Score a run's checkpoint on the dataset's test split (in this thread)."""
        try:
            ckpt = load_checkpoint(checkpoint)
            split = read_split(dataset, data_root, "test", len(ckpt.meta.classes))
            metrics = evaluate_checkpoint(ckpt, split, resolve_device("auto"), on_batch=self._unless_closing)
        except _Closing:
            return
        except Exception as exc:  # keep the app alive; the tab says what broke
            self.fail(exc, "evaluation")
        else:
            self.evaluated.emit(checkpoint, metrics)

    @Slot(str)
    def prepare(self, checkpoint: str) -> None:
        """Before a trained model goes to the Live tab: make its int8 graph (calibrated on
        validation faces of the dataset it trained on) unless it has one, so the CPU runs it
        fast; ``prepared`` follows either way (on failure after ``errored``, task
        "quantization": the model then runs in fp32)."""
        note = ""
        try:
            ckpt = load_checkpoint(checkpoint)
            if int8_graph(ckpt) is None:
                cfg = ckpt.train_config
                calibration = calibration_faces(ckpt, cfg["dataset"], cfg["data_root"])
                path = quantize_int8(ckpt, calibration)
                note = f"int8 version for the CPU: {path} ({sum(len(b) for b in calibration)} " \
                       "validation faces calibrated it)"
        except Exception as exc:  # the model still works in fp32: said, then used
            self.fail(exc, "quantization")
        self.prepared.emit(checkpoint, note)

