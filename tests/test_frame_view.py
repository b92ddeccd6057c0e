"""FrameView: zoom about the cursor, pan by dragging, fit and 1:1, clicks mapped to image pixels."""

import numpy as np
import pytest
from desktop_support import desktop_test
from PySide6.QtCore import QPoint, QPointF, Qt

from gsmc_desktop.widgets.frame_view import FrameView


@pytest.fixture(autouse=True)
def isolated(qapp, tmp_path):
    with desktop_test(qapp, tmp_path / "settings"):
        yield


@pytest.fixture
def view(qtbot):
    view = FrameView()
    qtbot.addWidget(view)
    view.resize(400, 300)
    view.set_image(np.zeros((300, 400, 3), np.uint8))  # fits exactly: scale 1
    return view


def test_clicks_map_to_image_pixels_through_zoom_and_pan(qtbot, view):
    clicks = []
    view.clicked.connect(lambda x, y: clicks.append((x, y)))
    qtbot.mouseClick(view, Qt.MouseButton.LeftButton, pos=QPoint(100, 50))
    assert clicks[-1] == pytest.approx((100, 50), abs=0.6)
    view.set_zoom(2.0, anchor=QPointF(100, 50))  # the point under the cursor stays put
    assert view.to_image(QPointF(100, 50)).x() == pytest.approx(100, abs=0.6)
    qtbot.mouseClick(view, Qt.MouseButton.LeftButton, pos=QPoint(120, 50))
    assert clicks[-1] == pytest.approx((110, 50), abs=0.6)  # 20 screen px = 10 image px at 2x
    before = view.to_image(QPointF(200, 150))
    qtbot.mousePress(view, Qt.MouseButton.LeftButton, pos=QPoint(200, 150))
    qtbot.mouseMove(view, QPoint(240, 150))
    qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, pos=QPoint(240, 150))
    assert len(clicks) == 2  # a drag is not a click
    assert view.to_image(QPointF(200, 150)).x() == pytest.approx(before.x() - 20, abs=1)
    view.actual_size()
    assert view.zoom == pytest.approx(1.0)  # this image already shows at 1:1 when fitted
    view.resize(240, 180)  # the smallest it gets: fitted at 0.6
    view.actual_size()
    assert view.zoom == pytest.approx(400 / view.width())
    qtbot.mouseDClick(view, Qt.MouseButton.LeftButton, pos=QPoint(10, 10))
    assert view.zoom == 1.0
    # a new frame of the same size keeps the zoom; another size fits again
    view.set_zoom(3.0)
    view.set_image(np.zeros((300, 400, 3), np.uint8))
    assert view.zoom == 3.0
    view.set_image(np.zeros((100, 100, 3), np.uint8))
    assert view.zoom == 1.0
