"""pyqtgraph plots: the selected face's probabilities as bars, and their rolling timeline."""

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pyqtgraph as pg
from PySide6.QtWidgets import QWidget

from gsmc_desktop.widgets.palette import class_color
from gsmc_desktop.widgets.plain_text import escaped

pg.setConfigOptions(antialias=True, background="w", foreground="k")


class ProbabilityChart(pg.PlotWidget):
    """Horizontal bars, one per class (first class on top), with the percentage beside each."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMenuEnabled(False)
        self.setMouseEnabled(False, False)
        self.hideButtons()
        self.setXRange(0, 1.18, padding=0)
        self.getPlotItem().getAxis("bottom").setTicks([[(v, f"{v:.0%}") for v in (0, 0.5, 1.0)]])
        self.getPlotItem().invertY(True)
        self.setTitle("Selected face")
        self._bars: pg.BarGraphItem | None = None
        self._texts: list[pg.TextItem] = []
        self.classes: tuple[str, ...] = ()
        self.values: npt.NDArray[np.float32] = np.zeros(0, np.float32)

    def set_classes(self, classes: Sequence[str]) -> None:
        self.classes = tuple(classes)
        self.clear()
        self._texts = []
        n = len(self.classes)
        self.getPlotItem().getAxis("left").setTicks([list(enumerate(self.classes))])
        self.setYRange(-0.6, max(n, 1) - 0.4, padding=0)
        self._bars = None
        if n == 0:  # no model: an empty chart (pyqtgraph's bars need at least one)
            self.values = np.zeros(0, np.float32)
            return
        self._bars = pg.BarGraphItem(
            x0=np.zeros(n), y=np.arange(n), width=np.zeros(n), height=0.7,
            brushes=[pg.mkBrush(*class_color(i)) for i in range(n)], pens=[None] * n,
        )
        self.addItem(self._bars)
        for i in range(n):
            text = pg.TextItem("", color=(40, 40, 40), anchor=(0, 0.5))
            text.setPos(0.01, i)
            self.addItem(text)
            self._texts.append(text)
        self.set_probabilities(None)

    def set_probabilities(self, probabilities: npt.NDArray[np.floating] | None) -> None:
        """Show one face's probabilities; None clears the bars (no face selected)."""
        n = len(self.classes)
        values = np.zeros(n, np.float32) if probabilities is None else np.asarray(probabilities, np.float32)
        self.values = values
        if self._bars is None:
            return
        self._bars.setOpts(width=values)
        for text, v in zip(self._texts, values, strict=True):
            text.setText("" if probabilities is None else f"{v:.0%}")
            text.setPos(float(v) + 0.01, text.pos().y())


class ProbabilityTimeline(pg.PlotWidget):
    """Each class's probability over the last ``window_s`` seconds, one curve per class.

    Samples live in preallocated arrays and curves are updated with ``setData``; when the
    arrays are full the oldest half is dropped in one copy.
    """

    def __init__(self, window_s: float = 10.0, capacity: int = 120_000,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.window_s = window_s
        self.capacity = capacity
        self.setMenuEnabled(False)
        self.setMouseEnabled(False, False)
        self.hideButtons()
        self.setYRange(0, 1.04, padding=0)  # a little headroom so the 1.0 tick is labelled
        self.setLabel("bottom", "time (s)")
        self.setTitle("Over time")
        self.showGrid(x=True, y=True, alpha=0.2)
        self._curves: list[pg.PlotDataItem] = []
        self._t = np.zeros(capacity, np.float64)
        self._p = np.zeros((capacity, 0), np.float32)
        self.count = 0

    def set_classes(self, classes: Sequence[str]) -> None:
        for curve in self._curves:
            self.removeItem(curve)
        # the legend is a line below the plot (the Live tab's): inside, it would hide curves
        self._curves = [
            self.plot(pen=pg.mkPen(class_color(i), width=2), name=escaped(name))
            for i, name in enumerate(classes)
        ]
        self._p = np.zeros((self.capacity, len(classes)), np.float32)
        self.clear_data()

    def clear_data(self) -> None:
        self.count = 0
        for curve in self._curves:
            curve.setData([], [])

    def keep_before(self, t: float) -> None:
        """Drop the samples at ``t`` seconds and later (the video was moved back to ``t``: what
        came before is still what those frames read; what came after is no longer the past)."""
        self.count = int(np.searchsorted(self._t[: self.count], t, side="left"))
        if self.count == 0:
            self.clear_data()

    def append(self, t: float, probabilities: npt.NDArray[np.floating], redraw: bool = True) -> None:
        """Add one sample at time ``t`` (seconds); redraw now unless ``redraw`` is False (a
        live view redraws a few times a second, not at every frame: see ``redraw``)."""
        if self.count == self.capacity:
            half = self.capacity // 2
            self._t[:half] = self._t[half:]
            self._p[:half] = self._p[half:]
            self.count = half
        self._t[self.count] = t
        self._p[self.count] = probabilities
        self.count += 1
        if redraw:
            self.redraw()

    def redraw(self) -> None:
        """Show the last ``window_s`` seconds of the samples kept (all of them when it is
        infinite: the whole video so far)."""
        if self.count == 0:
            return
        times = self._t[: self.count]
        t = times[-1]
        start = int(np.searchsorted(times, t - self.window_s))
        for i, curve in enumerate(self._curves):
            curve.setData(times[start:], self._p[start : self.count, i])
        if math.isinf(self.window_s):
            self.setXRange(times[0], max(t, times[0] + 1e-3), padding=0.01)
            return
        # fill from the left until the window is full, then scroll
        left = max(times[0], t - self.window_s)
        self.setXRange(left, left + self.window_s, padding=0)

    def series(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float32]]:
        """All samples kept: times and an N x C array of probabilities."""
        return self._t[: self.count].copy(), self._p[: self.count].copy()
