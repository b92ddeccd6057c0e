"""A widget showing one image scaled to fit, with an optional highlighted box and a message."""

import numpy as np
import numpy.typing as npt
from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QImage, QMouseEvent, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget


def rgb_to_qimage(rgb: npt.NDArray[np.uint8]) -> QImage:
    """An H x W x 3 RGB array as a QImage that owns a copy of the pixels."""
    rgb = np.ascontiguousarray(rgb)
    h, w = rgb.shape[:2]
    return QImage(rgb.data, w, h, rgb.strides[0], QImage.Format.Format_RGB888).copy()


class FrameView(QWidget):
    """Shows an RGB image scaled to fit (aspect kept), a highlight box in image pixels, and a
    centred message when there is no image. ``clicked`` gives image pixel coordinates."""

    clicked = Signal(float, float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._image: QImage | None = None
        self._highlight: tuple[int, int, int, int] | None = None
        self._message = ""
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(240, 180)

    def sizeHint(self) -> QSize:
        return QSize(640, 480)

    def set_image(self, rgb: npt.NDArray[np.uint8] | None) -> None:
        self._image = None if rgb is None else rgb_to_qimage(rgb)
        self.update()

    def image(self) -> QImage | None:
        return self._image

    def set_highlight(self, box: tuple[int, int, int, int] | None) -> None:
        """Outline ``box`` (x, y, w, h in image pixels), e.g. the selected face."""
        self._highlight = box
        self.update()

    def set_message(self, text: str) -> None:
        """Text shown centred over the view (over a dimmed image if there is one)."""
        self._message = text
        self.update()

    def message(self) -> str:
        return self._message

    def _target(self) -> QRectF:
        """Where the image is drawn: scaled to fit, centred."""
        if self._image is None:
            return QRectF()
        iw, ih = self._image.width(), self._image.height()
        scale = min(self.width() / iw, self.height() / ih)
        w, h = iw * scale, ih * scale
        return QRectF((self.width() - w) / 2, (self.height() - h) / 2, w, h)

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(32, 32, 32))
        target = self._target()
        if self._image is not None:
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
            painter.drawImage(target, self._image)
            if self._highlight is not None:
                scale = target.width() / self._image.width()
                x, y, w, h = self._highlight
                painter.setPen(QPen(QColor(255, 215, 0), 2, Qt.PenStyle.DashLine))
                painter.drawRect(QRectF(target.x() + x * scale, target.y() + y * scale,
                                        w * scale, h * scale).adjusted(-3, -3, 3, 3))
        if self._message:
            if self._image is not None:
                painter.fillRect(self.rect(), QColor(0, 0, 0, 150))
            painter.setPen(QColor(235, 235, 235))
            font = painter.font()
            font.setPointSizeF(font.pointSizeF() * 1.15)
            painter.setFont(font)
            painter.drawText(self.rect().adjusted(24, 24, -24, -24),
                             Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self._message)
        painter.end()

    def mousePressEvent(self, event: QMouseEvent) -> None:
        target = self._target()
        if self._image is None or not target.contains(event.position()):
            return
        scale = self._image.width() / target.width()
        p: QPointF = event.position() - target.topLeft()
        self.clicked.emit(p.x() * scale, p.y() * scale)
