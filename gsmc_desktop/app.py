"""Application setup: names (for QSettings and folders), the log file and the exception hook."""

import faulthandler
import logging
import logging.handlers
import os
import sys
import threading
import traceback
from pathlib import Path
from types import TracebackType

import platformdirs
from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtWidgets import QApplication, QMessageBox, QWidget

from gsmc_core import __version__

ORGANIZATION = "GSMC"
APPLICATION = "GSMC"
LOG_NAME = "gsmc-desktop.log"
LOG_MAX_BYTES = 1_000_000
LOG_BACKUPS = 3  # gsmc-desktop.log.1 .. .3

log = logging.getLogger("gsmc_desktop")


def _drop_opencv_qt_paths() -> None:
    """Undo what importing cv2 does to Qt's environment on Linux.

    opencv-python's Linux wheels (not the -headless ones) point QT_QPA_PLATFORM_PLUGIN_PATH and
    QT_QPA_FONTDIR at their own Qt 5 plugins when cv2 is imported; PySide6 then fails to start
    on a desktop with "Could not load the Qt platform plugin xcb". The variables are dropped
    only when they point inside the cv2 package.
    """
    for key in ("QT_QPA_PLATFORM_PLUGIN_PATH", "QT_QPA_FONTDIR"):
        if f"{os.sep}cv2{os.sep}" in os.environ.get(key, ""):
            del os.environ[key]


def create_application(argv: list[str]) -> QApplication:
    """The QApplication with the names QSettings and QStandardPaths derive their paths from."""
    _drop_opencv_qt_paths()
    app = QApplication.instance() or QApplication(argv)
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    app.setApplicationVersion(__version__)
    return app


def log_dir() -> Path:
    """The user's log folder: ~/.local/state/GSMC/log on Linux, ~/Library/Logs/GSMC on macOS,
    %LOCALAPPDATA%\\GSMC\\Logs on Windows (platformdirs' user_log_dir)."""
    return Path(platformdirs.user_log_dir(APPLICATION, appauthor=False))


class CrashLogHandler(logging.handlers.RotatingFileHandler):
    """A rotating log file that also receives ``faulthandler``'s tracebacks of every thread
    when the process dies hard (a segfault, an abort, "Fatal Python error"), which no Python
    exception hook sees. After each rotation faulthandler follows the new file."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, maxBytes=LOG_MAX_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8")
        faulthandler.enable(self.stream, all_threads=True)

    def doRollover(self) -> None:
        super().doRollover()
        faulthandler.enable(self.stream, all_threads=True)

    def close(self) -> None:
        if faulthandler.is_enabled():
            faulthandler.disable()
        super().close()


class ErrorReporter(QObject):
    """Shows uncaught exceptions in a dialog. ``report`` may be emitted from any thread: the
    connection queues it to the GUI thread, where the dialog is safe to open."""

    report = Signal(str, str)

    def __init__(self, log_file: Path, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.log_file = log_file
        self.report.connect(self._show)

    @Slot(str, str)
    def _show(self, summary: str, details: str) -> None:
        parent = QApplication.activeWindow()
        box = QMessageBox(QMessageBox.Icon.Critical, "GSMC: unexpected error",
                          f"{summary}\n\nThe program keeps running. Details were written to "
                          f"{self.log_file}.", QMessageBox.StandardButton.Ok,
                          parent if isinstance(parent, QWidget) else None)
        box.setDetailedText(details)
        box.exec()


def install_exception_hook(app: QApplication) -> Path:
    """Log uncaught exceptions (GUI thread, Qt worker threads, Python threads) and hard crashes
    (faulthandler) to the user's rotating log file and show exceptions in a dialog; returns the
    log file's path."""
    folder = log_dir()
    folder.mkdir(parents=True, exist_ok=True)
    log_file = folder / LOG_NAME
    handler = CrashLogHandler(log_file)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    reporter = ErrorReporter(log_file, app)

    def hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if issubclass(exc_type, KeyboardInterrupt):
            sys.__excepthook__(exc_type, exc, tb)
            return
        details = "".join(traceback.format_exception(exc_type, exc, tb))
        log.error("uncaught exception\n%s", details)
        if sys.__stderr__ is not None:  # a windowed frozen app has no stderr
            sys.__stderr__.write(details)
        reporter.report.emit(f"{exc_type.__name__}: {exc}", details)

    sys.excepthook = hook
    threading.excepthook = lambda a: hook(a.exc_type, a.exc_value, a.exc_traceback)
    log.info("GSMC desktop %s started", __version__)
    return log_file
