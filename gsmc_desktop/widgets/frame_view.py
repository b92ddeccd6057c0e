"""A widget showing one image scaled to fit, zoomable and pannable, with an optional highlighted
box and a message."""

import numpy as np
import numpy.typing as npt
from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QImage, QKeyEvent, QMouseEvent, QPainter, QPaintEvent, QPen, QWheelEvent
from PySide6.QtWidgets import QSizePolicy, QWidget


def rgb_to_qimage(rgb: npt.NDArray[np.uint8]) -> QImage:
    """An H x W x 3 RGB array as a QImage that owns a copy of the pixels."""
    rgb = np.ascontiguousarray(rgb)
    h, w = rgb.shape[:2]
    return QImage(rgb.data, w, h, rgb.strides[0], QImage.Format.Format_RGB888).copy()


MAX_ZOOM = 32.0
DRAG_PIXELS = 4  # a press that moves less is a click


class FrameView(QWidget):
    """Shows an RGB image scaled to fit (aspect kept), a highlight box in image pixels, and a
    centred message when there is no image. ``clicked`` gives image pixel coordinates.

    The mouse wheel zooms about the cursor, dragging pans, a double click (or the F key) fits
    the image again and the 1 key shows it at 1:1 (one image pixel per screen pixel). The zoom
    and position stay while new frames of the same size arrive."""

    clicked = Signal(float, float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._image: QImage | None = None
        self._highlight: tuple[int, int, int, int] | None = None
        self._message = ""
        self.zoom = 1.0  # relative to fitting the view
        self._center: QPointF | None = None  # image point at the view's centre (None: middle)
        self._press: QPointF | None = None
        self._dragged = False
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(240, 180)
        self.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        self.setToolTip("Wheel: zoom · drag: pan · double-click or F: fit · 1: one image pixel per "
                        "screen pixel · click a face to select it")

    def sizeHint(self) -> QSize:
        return QSize(640, 480)

    def set_image(self, rgb: npt.NDArray[np.uint8] | None) -> None:
        old = self._image
        self._image = None if rgb is None else rgb_to_qimage(rgb)
        if old is None or self._image is None or old.size() != self._image.size():
            self.fit()  # another picture: start from the whole of it
        self.update()

    # --- zoom and pan -----------------------------------------------------------------------------

    def fit(self) -> None:
        """Show the whole image."""
        self.zoom = 1.0
        self._center = None
        self.update()

    def _fit_scale(self) -> float:
        return min(self.width() / self._image.width(), self.height() / self._image.height())

    def actual_size(self) -> None:
        """One image pixel per screen pixel."""
        if self._image is not None:
            self.set_zoom(1.0 / self._fit_scale())

    def set_zoom(self, zoom: float, anchor: QPointF | None = None) -> None:
        """Zoom (1 = fit) keeping the image point under ``anchor`` (widget coordinates; default
        the centre) where it is."""
        if self._image is None:
            return
        zoom = min(max(zoom, 1.0), MAX_ZOOM)
        anchor = anchor if anchor is not None else QPointF(self.width() / 2, self.height() / 2)
        before = self.to_image(anchor)
        self.zoom = zoom
        if zoom == 1.0:
            self._center = None
        else:
            scale = self._fit_scale() * zoom
            middle = QPointF(self.width() / 2, self.height() / 2)
            self._set_center(before - (anchor - middle) / scale)
        self.update()

    def _set_center(self, point: QPointF) -> None:
        iw, ih = self._image.width(), self._image.height()
        self._center = QPointF(min(max(point.x(), 0.0), iw), min(max(point.y(), 0.0), ih))

    def to_image(self, point: QPointF) -> QPointF:
        """Widget coordinates to image pixel coordinates."""
        target = self._target()
        scale = self._image.width() / target.width()
        return (point - target.topLeft()) * scale

    def wheelEvent(self, event: QWheelEvent) -> None:
        if self._image is None:
            return
        steps = event.angleDelta().y() / 120
        self.set_zoom(self.zoom * 1.25 ** steps, event.position())
        event.accept()

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        self.fit()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_F:
            self.fit()
        elif event.key() == Qt.Key.Key_1:
            self.actual_size()
        else:
            super().keyPressEvent(event)

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
        """Where the image is drawn: scaled to fit times the zoom, its ``_center`` point at the
        middle of the view (the image's own middle when fitted)."""
        if self._image is None:
            return QRectF()
        iw, ih = self._image.width(), self._image.height()
        scale = self._fit_scale() * self.zoom
        center = self._center if self._center is not None else QPointF(iw / 2, ih / 2)
        return QRectF(self.width() / 2 - center.x() * scale, self.height() / 2 - center.y() * scale,
                      iw * scale, ih * scale)

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
        self._press = event.position()
        self._dragged = False

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if self._press is None or self._image is None:
            return
        delta = event.position() - self._press
        if not self._dragged and abs(delta.x()) + abs(delta.y()) < DRAG_PIXELS:
            return
        self._dragged = True
        if self.zoom > 1.0:  # pan: the image follows the mouse
            scale = self._fit_scale() * self.zoom
            center = self._center or QPointF(self._image.width() / 2, self._image.height() / 2)
            self._set_center(center - delta / scale)
            self._press = event.position()
            self.update()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        pressed, self._press = self._press, None
        if pressed is None or self._dragged or self._image is None:
            return
        if self._target().contains(pressed):
            p = self.to_image(pressed)
            self.clicked.emit(p.x(), p.y())
