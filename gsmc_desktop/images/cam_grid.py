"""A grid of CAM tiles, one per class, captioned with the class and its probability."""

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from PySide6.QtCore import Qt
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import QGridLayout, QVBoxLayout, QWidget

from gsmc_desktop.widgets.frame_view import rgb_to_qimage
from gsmc_desktop.widgets.plain_text import PlainLabel


class CamGrid(QWidget):
    """Tiles laid out ``columns`` per row, like the per-class CAM figures of CAM papers."""

    def __init__(self, columns: int = 4, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.columns = columns
        self._grid = QGridLayout(self)
        self._grid.setSpacing(6)
        self._cells: list[QWidget] = []
        self.captions: list[str] = []

    def tile_count(self) -> int:
        return len(self._cells)

    def set_tiles(self, tiles: Sequence[npt.NDArray[np.uint8]], captions: Sequence[str],
                  highlight: int | None = None) -> None:
        """Show ``tiles`` (RGB) with ``captions``; ``highlight`` bolds one (the predicted class)."""
        for cell in self._cells:
            self._grid.removeWidget(cell)
            cell.deleteLater()
        self._cells = []
        self.captions = list(captions)
        for i, (tile, caption) in enumerate(zip(tiles, captions, strict=True)):
            cell = QWidget()
            box = QVBoxLayout(cell)
            box.setContentsMargins(0, 0, 0, 0)
            box.setSpacing(2)
            picture = PlainLabel()
            picture.setPixmap(QPixmap.fromImage(rgb_to_qimage(tile)))
            picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
            text = PlainLabel(caption)
            if i == highlight:
                font = text.font()
                font.setBold(True)
                text.setFont(font)
            text.setAlignment(Qt.AlignmentFlag.AlignCenter)
            box.addWidget(picture)
            box.addWidget(text)
            self._grid.addWidget(cell, i // self.columns, i % self.columns)
            self._cells.append(cell)
