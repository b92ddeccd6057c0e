"""The heatmap's colour bar: what the colours of an attention map mean, for the scale in use."""

import numpy as np
from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QImage, QPainter
from PySide6.QtWidgets import QComboBox, QWidget

from gsmc_core.frames.render import colorize_heatmap
from gsmc_desktop.widgets.plain_text import plain_tooltip

SCALE_CHOICES = (
    ("map", "Each map to its own range",
     "Every class map is stretched from its lowest to its highest value: shows where the "
     "evidence for that class lies, but a class at 5 % glows as red as the winner"),
    ("face", "Comparable across classes",
     "Every class map of a face is divided by the strongest value of any of its class maps "
     "(negative evidence is blue): a weak class stays dark, so colours compare across classes"),
)
ENDS = {"map": ("map min", "map max"), "face": ("0", "face's strongest class")}


def scale_combo() -> QComboBox:
    combo = QComboBox()
    for key, text, tip in SCALE_CHOICES:
        combo.addItem(text, key)
        combo.setItemData(combo.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
    combo.setToolTip("How heatmap colours are scaled")
    return combo


class ColorBar(QWidget):
    """A horizontal JET gradient labelled with what its two ends mean under ``scale``."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        ramp = colorize_heatmap(np.tile(np.linspace(0, 1, 256, dtype=np.float32), (1, 1)))
        self._ramp = QImage(np.ascontiguousarray(ramp).data, 256, 1, 256 * 3,
                            QImage.Format.Format_RGB888).copy()
        self.scale = "map"
        self.setMinimumWidth(150)
        self.setFixedHeight(30)

    def set_scale(self, scale: str) -> None:
        self.scale = scale
        low, high = ENDS[scale]
        self.setToolTip(plain_tooltip(f"Heatmap colours: blue = {low}, red = {high}"))
        self.update()

    def ends(self) -> tuple[str, str]:
        return ENDS[self.scale]

    def sizeHint(self) -> QSize:
        return QSize(220, 30)

    def paintEvent(self, _event) -> None:
        painter = QPainter(self)
        bar = QRectF(0, 0, self.width(), 12)
        painter.drawImage(bar, self._ramp)
        low, high = self.ends()
        text = QRectF(0, 13, self.width(), self.height() - 13)
        painter.drawText(text, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop, low)
        painter.drawText(text, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignTop, high)
        painter.end()
