"""Live training curves: each loss term per batch, and train/validation accuracy per epoch."""

import numpy as np
import numpy.typing as npt
import pyqtgraph as pg
from PySide6.QtWidgets import QHBoxLayout, QWidget

from gsmc_core.train_events import BatchEvent, EpochEvent
from gsmc_desktop.widgets.palette import class_color

LOSS_LABELS = {"loss": "total", "ce": "cross-entropy", "kl": "self-distillation KL", "ac": "flip attention"}
ACCURACY_LABELS = {"train_acc": "train", "val_acc": "validation", "val_acc_teacher": "validation (teacher)"}


class _Series:
    """Growing x/y arrays behind one curve (doubled when full), drawn with ``setData``."""

    def __init__(self, curve: pg.PlotDataItem) -> None:
        self.curve = curve
        self.x = np.zeros(64)
        self.y = np.zeros(64)
        self.n = 0

    def append(self, x: float, y: float) -> None:
        if self.n == len(self.x):
            self.x = np.resize(self.x, 2 * self.n)
            self.y = np.resize(self.y, 2 * self.n)
        self.x[self.n], self.y[self.n] = x, y
        self.n += 1
        self.curve.setData(self.x[: self.n], self.y[: self.n])


class TrainingCurves(QWidget):
    """Two plots, x in epochs: loss terms (running epoch means, per batch) and accuracies."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.loss_plot = pg.PlotWidget(title="Loss terms (running mean over the epoch)")
        self.accuracy_plot = pg.PlotWidget(title="Accuracy")
        for plot in (self.loss_plot, self.accuracy_plot):
            plot.setLabel("bottom", "epoch")
            plot.showGrid(x=True, y=True, alpha=0.2)
            plot.addLegend(offset=(-5, 5), labelTextSize="8pt")
            plot.setMenuEnabled(False)
        self.accuracy_plot.setYRange(0, 1, padding=0.02)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.loss_plot)
        layout.addWidget(self.accuracy_plot)
        self._losses: dict[str, _Series] = {}
        self._accuracies: dict[str, _Series] = {}

    def clear(self) -> None:
        for series in [*self._losses.values(), *self._accuracies.values()]:
            series.curve.getViewBox().removeItem(series.curve)
        for plot in (self.loss_plot, self.accuracy_plot):
            plot.getPlotItem().legend.clear()
        self._losses.clear()
        self._accuracies.clear()

    def _series(self, plot: pg.PlotWidget, store: dict[str, _Series], key: str, label: str,
                symbol: str | None) -> _Series:
        if key not in store:
            color = class_color(len(store))
            curve = plot.plot(pen=pg.mkPen(color, width=2), name=label, symbol=symbol,
                              symbolBrush=color, symbolPen=None, symbolSize=7)
            store[key] = _Series(curve)
        return store[key]

    def add_batch(self, event: BatchEvent) -> None:
        x = event.epoch - 1 + event.batch / event.batches
        for key, value in event.losses.items():
            self._series(self.loss_plot, self._losses, key, LOSS_LABELS.get(key, key), None).append(x, value)

    def add_epoch(self, event: EpochEvent) -> None:
        for key, label in ACCURACY_LABELS.items():
            value = event.metrics.get(key)
            if isinstance(value, int | float):
                self._series(self.accuracy_plot, self._accuracies, key, label, "o").append(event.epoch, value)

    def loss_series(self, key: str) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        s = self._losses[key]
        return s.x[: s.n].copy(), s.y[: s.n].copy()

    def accuracy_series(self, key: str) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        s = self._accuracies[key]
        return s.x[: s.n].copy(), s.y[: s.n].copy()

    def loss_keys(self) -> list[str]:
        return list(self._losses)
