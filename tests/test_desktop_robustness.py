"""The app never crashes for good (issue 25): text from files is never HTML, a checkpoint's odd
training record or a damaged settings file cannot stop a start, a model the app died showing is
not opened again by itself, and bad command-line values are refused before anything runs."""

import dataclasses
import sys
import threading

import pytest
from desktop_support import desktop_test
from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QTextDocument
from PySide6.QtWidgets import QLabel

import gsmc_desktop.app as app_module
from gsmc_core.checkpoint import load_checkpoint, save_checkpoint
from gsmc_core.frames.sources import SourceError, _open_camera
from gsmc_desktop.__main__ import parse_args
from gsmc_desktop.app import install_exception_hook
from gsmc_desktop.main_window import OPENING_KEY, MainWindow
from gsmc_desktop.model_handle import load_model, model_card

HTML_CLASS = "<img src='missing.png'>anger"


@pytest.fixture(autouse=True)
def isolated(qapp, tmp_path):
    with desktop_test(qapp, tmp_path / "settings"):
        yield


@pytest.fixture
def html_checkpoint(random_checkpoint, tmp_path):
    ckpt = load_checkpoint(random_checkpoint)
    classes = (*ckpt.meta.classes[:4], HTML_CLASS, *ckpt.meta.classes[5:])
    ckpt.meta = dataclasses.replace(ckpt.meta, classes=classes)
    return save_checkpoint(ckpt, tmp_path / "html.pt")


def test_class_names_from_a_checkpoint_are_shown_as_text_never_as_html(qtbot, html_checkpoint):
    window = MainWindow(checkpoint=html_checkpoint, camera_lister=lambda: [])
    qtbot.addWidget(window)
    window.show()
    qtbot.wait(50)
    assert window.model is not None and HTML_CLASS in window.model.checkpoint.meta.classes
    shown = [label for label in window.findChildren(QLabel) if "<img" in label.text()]
    assert all(label.textFormat() == Qt.TextFormat.PlainText for label in shown)
    assert "&lt;img src=&#x27;missing.png&#x27;&gt;anger" in window.live.legend.text()
    assert "<img" not in window.live.legend.text()
    # the legend is rich text (coloured squares) with the names escaped, so it renders them
    assert window.live.legend.textFormat() == Qt.TextFormat.RichText
    rendered = QTextDocument()
    rendered.setHtml(window.live.legend.text())
    assert HTML_CLASS in rendered.toPlainText() and "<span" not in rendered.toPlainText()
    window.close()


def test_about_tolerates_a_training_record_that_is_not_a_mapping(random_checkpoint, tmp_path):
    ckpt = load_checkpoint(random_checkpoint)
    for odd in (["a", "list"], "a string"):
        ckpt.train_config, ckpt.metrics = odd, odd
        path = save_checkpoint(ckpt, tmp_path / "odd.pt")
        card = model_card(load_model(path, "cpu"))
        assert "resnet18" in card and "Validation" in card


@pytest.mark.parametrize(("key", "value", "dropped"), [
    ("window/geometry", "garbage", True), ("live/opacity", "99999999999999999999", True),
    ("live/min_score", "nan", True), ("model/checkpoint", "x" * 5000, True),
    ("window/tab", "-7", True), ("files/recent", 12, True), ("model/device", "y" * 5000, True),
    ("live/source", "9" * 400, False),  # a name too long for any file: ignored, not fatal
    ("review/data_root", "9" * 400, False), ("review/checkpoint", 12, False),
])
def test_a_damaged_setting_is_dropped_and_the_app_starts(qtbot, random_checkpoint, key, value, dropped):
    QSettings().setValue(key, value)
    QSettings().sync()
    window = MainWindow(camera_lister=lambda: [])
    qtbot.addWidget(window)
    window.show()
    assert window.live.opacity_slider.value() <= 100 and 0 <= window.tabs.currentIndex() < 3
    assert window.isVisible() and window.model is not None  # the shipped model
    assert QSettings().contains(key) != dropped or QSettings().value(key) != value
    window.close()


def test_a_model_the_app_died_showing_is_not_opened_again(qtbot, random_checkpoint):
    QSettings().setValue("model/checkpoint", str(random_checkpoint))
    QSettings().setValue(OPENING_KEY, str(random_checkpoint))  # left set by a start that aborted
    window = MainWindow(camera_lister=lambda: [])
    qtbot.addWidget(window)
    assert window.model is None or window.model.checkpoint.path != random_checkpoint
    assert "was not opened again" in window.startup_problem
    window.close()
    window = MainWindow(camera_lister=lambda: [])  # a start that survives clears the marker
    qtbot.addWidget(window)
    qtbot.waitUntil(lambda: not QSettings().contains(OPENING_KEY), timeout=10_000)
    window.close()


@pytest.mark.parametrize("argv", [["--camera", "-1"], ["--camera", "x"], ["--camera", "100"],
                                  ["--soak", "d", "--soak-seconds", "0.001"],
                                  ["--soak", "d", "--soak-seconds", "nan"],
                                  ["--soak", "d", "--soak-seconds", "inf"],
                                  ["--soak", "d", "--soak-seconds", "1e-300"]])
def test_bad_command_line_values_are_refused_before_anything_runs(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)
    assert exit_info.value.code == 2 and "must be" in capsys.readouterr().err


def test_a_negative_camera_index_is_refused_not_opened():
    with pytest.raises(SourceError, match="camera numbers are 0 to 99"):
        _open_camera(-1)
    assert parse_args(["--reset-settings"]).reset_settings


@pytest.mark.parametrize("problem", ["folder_is_a_file", "log_is_a_folder"])
def test_an_unwritable_log_file_does_not_stop_the_app(qapp, tmp_path, monkeypatch, capsys, problem):
    place = tmp_path / "logs"
    if problem == "folder_is_a_file":
        place.write_text("x")
    else:
        (place / app_module.LOG_NAME).mkdir(parents=True)
    monkeypatch.setattr(app_module, "log_dir", lambda: place)
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # restored after the test
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    assert install_exception_hook(qapp) is None
    assert "running without one" in capsys.readouterr().err


def test_missing_x11_libraries_are_named_with_the_apt_line(monkeypatch):
    import ctypes.util

    from gsmc_desktop import platform_check

    monkeypatch.setattr(platform_check.sys, "platform", "linux")
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    present = {"xcb-cursor"}
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: name if name in present else None)
    advice = platform_check.xcb_advice()
    assert "sudo apt install libxcb-icccm4 libxcb-keysyms1" in advice and "libxcb-cursor0" not in advice
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")  # no X11 needed
    assert platform_check.xcb_advice() is None


def test_worker_errors_are_logged_with_their_traceback_and_shown_plainly(qtbot, caplog):
    import logging

    from gsmc_core.training.data.samples import DataError
    from gsmc_desktop.threads import Worker, describe

    worker = Worker()
    got = []
    worker.errored.connect(lambda exc, task: got.append((exc, task)))
    try:
        {}["missing"]
    except KeyError as exc:
        bug = exc
    problem = DataError("labels.csv:3: unknown label 'joy'")
    with caplog.at_level(logging.WARNING, logger="gsmc_desktop"):
        worker.fail(bug, "images")
        worker.fail(problem, "training")
    assert got == [(bug, "images"), (problem, "training")]
    logged_bug, logged_problem = [r for r in caplog.records if r.name == "gsmc_desktop"]
    assert logged_bug.levelno == logging.ERROR and logged_bug.exc_info[1] is bug  # the traceback
    assert logged_problem.levelno == logging.WARNING and not logged_problem.exc_info
    assert "unknown label 'joy'" in logged_problem.getMessage()
    assert describe(bug) == "KeyError: 'missing' (details in the log)"
    assert describe(problem) == "labels.csv:3: unknown label 'joy'"
    assert describe(OSError(28, "No space left on device")) == "[Errno 28] No space left on device"
