"""Live training curves: each loss term per batch, and train/validation accuracy per epoch."""

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import QBoxLayout, QWidget

from gsmc_core.training.events import BatchEvent, EpochEvent
from gsmc_desktop.widgets.palette import class_color
from gsmc_desktop.widgets.plain_text import escaped

LOSS_LABELS = {"loss": "total", "ce": "cross-entropy", "kl": "self-distillation KL", "ac": "flip attention"}
ACCURACY_LABELS = {"train_acc": "train", "val_acc": "validation", "val_acc_teacher": "validation (teacher)"}
SIDE_BY_SIDE_MIN_WIDTH = 640  # narrower: the two plots are stacked (side by side they overlapped)


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
    """Two plots, x in epochs: loss terms (running epoch means, per batch) and accuracies; side by
    side, or one above the other when the tab is narrow."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.loss_plot = pg.PlotWidget()
        self.accuracy_plot = pg.PlotWidget()
        # stacked, the titles would take the plots' height: the left axes name them instead
        # (title, axis label when stacked, legend columns when stacked: a row or two along the
        # top hides less of the curves than a column)
        self._titles = {self.loss_plot: ("Loss terms (running mean over the epoch)", "loss (epoch mean)", 2),
                        self.accuracy_plot: ("Accuracy", "accuracy", 3)}
        for plot in (self.loss_plot, self.accuracy_plot):
            plot.setLabel("bottom", "epoch")
            for axis in ("bottom", "left"):  # "epoch (x0.001)" read as nonsense
                plot.getAxis(axis).enableAutoSIPrefix(False)
            plot.getPlotItem().getViewBox().setLimits(xMin=0)  # no negative epochs
            plot.showGrid(x=True, y=True, alpha=0.2)
            # a light box behind the legend, so the curves under it do not hide its text
            legend = plot.addLegend(offset=(-5, 5), labelTextSize="8pt", brush=pg.mkBrush(255, 255, 255, 210))
            legend.setVisible(False)  # an empty box until the first curve
            plot.setMenuEnabled(False)
        self.accuracy_plot.setYRange(0, 1, padding=0.02)
        self._layout = QBoxLayout(QBoxLayout.Direction.LeftToRight, self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        for plot in (self.loss_plot, self.accuracy_plot):
            plot.setMinimumSize(160, 120)
            self._layout.addWidget(plot)
        self._losses: dict[str, _Series] = {}
        self._accuracies: dict[str, _Series] = {}
        self.comparisons: dict[str, pg.PlotDataItem] = {}

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 (Qt's name)
        wide = event.size().width() >= SIDE_BY_SIDE_MIN_WIDTH
        self._layout.setDirection(QBoxLayout.Direction.LeftToRight if wide
                                  else QBoxLayout.Direction.TopToBottom)
        for plot, (title, axis_label, columns) in self._titles.items():
            plot.setTitle(title if wide else None)
            plot.setLabel("left", None if wide else axis_label)
            plot.getPlotItem().legend.setColumnCount(1 if wide else columns)
        super().resizeEvent(event)

    def clear(self) -> None:
        for plot, curves in ((self.loss_plot, [s.curve for s in self._losses.values()]),
                             (self.accuracy_plot, [s.curve for s in self._accuracies.values()]
                              + list(self.comparisons.values()))):  # the last run's overlays too
            for curve in curves:
                plot.removeItem(curve)
        for plot in (self.loss_plot, self.accuracy_plot):
            plot.getPlotItem().legend.clear()
            plot.getPlotItem().legend.setVisible(False)
        self._losses.clear()
        self._accuracies.clear()
        self.comparisons.clear()

    def _series(self, plot: pg.PlotWidget, store: dict[str, _Series], key: str, label: str,
                symbol: str | None) -> _Series:
        if key not in store:
            color = class_color(len(store))
            curve = plot.plot(pen=pg.mkPen(color, width=2), name=label, symbol=symbol,
                              symbolBrush=color, symbolPen=None, symbolSize=7)
            plot.getPlotItem().legend.setVisible(True)
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

    def load_history(self, rows: list[dict[str, str]]) -> int:
        """Draw the epochs of a run folder's metrics (``RunFolder.read_history``: a resumed
        run's past): epoch-mean losses and accuracies. Returns the number of epochs drawn."""
        for row in rows:
            epoch = int(row["epoch"])
            values = {k: float(v) for k, v in row.items() if k != "selected" and _is_number(v)}
            for key, label in LOSS_LABELS.items():
                if key in values:  # the epoch's mean across the epoch (a lone point draws nothing)
                    series = self._series(self.loss_plot, self._losses, key, label, None)
                    series.append(epoch - 1, values[key])
                    series.append(epoch, values[key])
            self.add_epoch(EpochEvent(epoch, epoch, values, False))
        return len(rows)

    def add_comparison(self, folder: Path, rows: list[dict[str, str]]) -> None:
        """Overlay the validation accuracy of the run in ``folder`` (dashed, named by it) from
        its metrics' ``rows``."""
        rows = [r for r in rows if _is_number(r.get("val_acc"))]
        epochs = [int(r["epoch"]) for r in rows]
        best = [max(float(r["val_acc"]), float(r["val_acc_teacher"]) if _is_number(r.get("val_acc_teacher"))
                    else 0.0) for r in rows]
        color = class_color(len(self._accuracies) + len(self.comparisons) + 3)
        self.comparisons[str(folder)] = self.accuracy_plot.plot(
            epochs, best, pen=pg.mkPen(color, width=2, style=Qt.PenStyle.DashLine),
            name=escaped(f"{folder.name} (validation)"), symbol="t", symbolBrush=color, symbolPen=None)
        self.accuracy_plot.getPlotItem().legend.setVisible(True)

    def loss_series(self, key: str) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        s = self._losses[key]
        return s.x[: s.n].copy(), s.y[: s.n].copy()

    def accuracy_series(self, key: str) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        s = self._accuracies[key]
        return s.x[: s.n].copy(), s.y[: s.n].copy()

    def loss_keys(self) -> list[str]:
        return list(self._losses)


def _is_number(text: str | None) -> bool:
    try:
        float(text)
    except (TypeError, ValueError):
        return False
    return True
