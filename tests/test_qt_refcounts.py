"""PySide6 6.12.0 on CPython 3.11 drops one reference to ``None`` (and ``True``/``False``) on
every Qt call that returns nothing; the live view then aborts within a minute with
"Fatal Python error: none_dealloc". This test runs a few hundred real calls of the kinds the
app makes and fails when those counts fall. From Python 3.12 they are immortal objects."""

import sys

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(
    sys.version_info >= (3, 12), reason="None, True and False are immortal on Python >= 3.12"
)

CALLS = 300


@pytest.fixture
def qt_calls(qtbot):
    from PySide6.QtGui import QPixmap
    from PySide6.QtWidgets import QApplication, QLabel

    from gsmc_desktop.widgets.frame_view import FrameView, rgb_to_qimage
    from gsmc_desktop.widgets.plots import ProbabilityChart, ProbabilityTimeline

    label, view = QLabel(), FrameView()
    chart, timeline = ProbabilityChart(), ProbabilityTimeline()
    for w in (label, view, chart, timeline):
        qtbot.addWidget(w)
    classes = ("neutral", "happiness", "surprise")
    chart.set_classes(classes)
    timeline.set_classes(classes)
    rgb = np.zeros((48, 64, 3), np.uint8)
    image = rgb_to_qimage(rgb)
    probs = np.array([0.2, 0.5, 0.3], np.float32)
    clock = iter(range(10**6))
    return {
        "QLabel.setText": lambda: label.setText("happiness 97 %"),
        "QPixmap.fromImage": lambda: QPixmap.fromImage(image),
        "QApplication.processEvents": QApplication.processEvents,
        "FrameView.set_image + repaint": lambda: (view.set_image(rgb), view.repaint()),
        "ProbabilityChart.set_probabilities": lambda: chart.set_probabilities(probs),
        "ProbabilityTimeline.append (setData)": lambda: timeline.append(next(clock) / 30, probs),
    }


@pytest.mark.parametrize("constant", [None, True, False], ids=["None", "True", "False"])
def test_qt_calls_keep_references_to_constants(qt_calls, constant):
    losses = {}
    for name, call in qt_calls.items():
        for _ in range(10):  # warm-up: caches that keep a reference fill here
            call()
        before = sys.getrefcount(constant)
        for _ in range(CALLS):
            call()
        losses[name] = before - sys.getrefcount(constant)
    # a broken binding loses at least one reference per call (300 here); allow small drift from
    # objects released during the loop
    broken = {name: lost for name, lost in losses.items() if lost > CALLS // 10}
    assert not broken, (
        f"{constant!r} lost references across {CALLS} Qt calls each: {broken}; this PySide6 "
        "build corrupts reference counts (PySide6 6.12.0 on Python 3.11): install another release"
    )
