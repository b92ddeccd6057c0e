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
from PySide6.QtCore import QObject, QTimer, Signal, Slot
from PySide6.QtWidgets import QApplication, QMessageBox, QWidget

from gsmc_core import __version__
from gsmc_core.native_stderr import NATIVE_STDERR_LOCK
from gsmc_desktop.widgets.messages import plain_box

ORGANIZATION = "GSMC"
APPLICATION = "GSMC"
LOG_NAME = "gsmc-desktop.log"
LOG_MAX_BYTES = 1_000_000
LOG_BACKUPS = 3  # gsmc-desktop.log.1 .. .3
LOG_CHECK_MS = 30_000  # how often the log's size is checked for native messages

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
    """A rotating log file that also receives what the process writes to its native stderr.

    Hard crashes never reach a Python exception hook: a segfault or an abort is reported by
    ``faulthandler`` (enabled here on the log file), and a "Fatal Python error" (a C extension
    corrupting reference counts, say) is written by the interpreter to file descriptor 2 with
    faulthandler switched off. So with ``route_stderr`` descriptor 2 is pointed at the log file
    too (native libraries' messages, Qt warnings and fatal errors land there), while Python's
    own ``sys.stderr`` keeps writing to the original terminal. Both follow each rotation, and
    ``close`` puts everything back.
    """

    def __init__(self, path: Path, route_stderr: bool = False) -> None:
        super().__init__(path, maxBytes=LOG_MAX_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8")
        self._saved_stderr: tuple[int, object] | None = None
        if route_stderr:
            try:
                os.fstat(2)
                terminal = os.dup(2)
            except OSError:  # no stderr at all (a windowed app): nothing to keep
                terminal = -1
            self._saved_stderr = (terminal, sys.stderr)
            if terminal >= 0:
                sys.stderr = open(terminal, "w", buffering=1, encoding="utf-8", errors="backslashreplace",
                                  closefd=False)
        self._follow()

    def _follow(self) -> None:
        """Point faulthandler (and descriptor 2) at the current log file."""
        if self.stream is None:  # a failed rollover left no file open
            self.stream = self._open()
        self.stream.flush()
        faulthandler.enable(self.stream, all_threads=True)
        if self._saved_stderr is not None:
            with NATIVE_STDERR_LOCK:
                os.dup2(self.stream.fileno(), 2)

    def doRollover(self) -> None:
        # nothing may hold the file while it is renamed (Windows refuses), and faulthandler must
        # never be left writing to a closed descriptor
        faulthandler.disable()
        if self._saved_stderr is not None:
            with NATIVE_STDERR_LOCK, open(os.devnull, "w") as devnull:
                os.dup2(devnull.fileno(), 2)
        try:
            super().doRollover()
        finally:
            self._follow()

    def rotate_if_large(self) -> None:
        """Rotate when native messages written to descriptor 2 (which no log record sees) have
        filled the file: the app calls this on a timer."""
        if self.stream is not None and os.fstat(self.stream.fileno()).st_size >= self.maxBytes:
            self.acquire()
            try:
                self.doRollover()
            finally:
                self.release()

    def close(self) -> None:
        if faulthandler.is_enabled():
            faulthandler.disable()
        if self._saved_stderr is not None:
            terminal, stream = self._saved_stderr
            self._saved_stderr = None
            if terminal >= 0:
                sys.stderr.flush()
                with NATIVE_STDERR_LOCK:
                    os.dup2(terminal, 2)
                os.close(terminal)
            else:  # there was no stderr: leave descriptor 2 on nothing rather than the log
                with NATIVE_STDERR_LOCK, open(os.devnull, "w") as devnull:
                    os.dup2(devnull.fileno(), 2)
            sys.stderr = stream
        super().close()


class ErrorReporter(QObject):
    """Shows uncaught exceptions in a dialog. ``report`` may be emitted from any thread: the
    connection queues it to the GUI thread, where the dialog is safe to open."""

    report = Signal(str, str)

    def __init__(self, log_file: Path | None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.log_file = log_file
        self.report.connect(self._show)

    @Slot(str, str)
    def _show(self, summary: str, details: str) -> None:
        parent = QApplication.activeWindow()
        box = plain_box(parent if isinstance(parent, QWidget) else None, QMessageBox.Icon.Critical,
                        "GSMC: unexpected error",
                        f"{summary}\n\nThe program keeps running. "
                        + (f"Details were written to {self.log_file}." if self.log_file
                           else "No log file could be written."))
        box.setDetailedText(details)
        box.exec()


def _open_log(folder: Path) -> tuple[CrashLogHandler | None, str]:
    """The crash log in ``folder``, or None and why when it cannot be written (a read-only
    folder, a folder where the file should be, a file where the folder should be)."""
    log_file = folder / LOG_NAME
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return CrashLogHandler(log_file, route_stderr=True), ""
    except OSError as exc:
        return None, f"{log_file}: {exc.strerror or exc}"


def install_exception_hook(app: QApplication) -> Path | None:
    """Log uncaught exceptions (GUI thread, Qt worker threads, Python threads) and hard crashes
    (faulthandler) to the user's rotating log file and show exceptions in a dialog; returns the
    log file's path, or None when it cannot be written (the app then runs without it and says
    so on stderr)."""
    handler, problem = _open_log(log_dir())
    log_file = Path(handler.baseFilename) if handler is not None else None
    if handler is not None:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        for name in ("gsmc_desktop", "gsmc_core"):  # the core's warnings (e.g. ONNX fallbacks) too
            logging.getLogger(name).addHandler(handler)
            logging.getLogger(name).setLevel(logging.INFO)
    reporter = ErrorReporter(log_file, app)
    if handler is not None:
        rotation = QTimer(reporter)
        rotation.timeout.connect(handler.rotate_if_large)
        rotation.start(LOG_CHECK_MS)

    def hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if issubclass(exc_type, KeyboardInterrupt):
            sys.__excepthook__(exc_type, exc, tb)
            return
        details = "".join(traceback.format_exception(exc_type, exc, tb))
        log.error("uncaught exception\n%s", details)
        if sys.stderr is not None:  # a windowed frozen app has no stderr
            sys.stderr.write(details)
        reporter.report.emit(f"{exc_type.__name__}: {exc}", details)

    sys.excepthook = hook
    threading.excepthook = lambda a: hook(a.exc_type, a.exc_value, a.exc_traceback)
    log.info("GSMC desktop %s started", __version__)
    if log_file is None:
        print(f"gsmc-desktop: warning: cannot write the log file ({problem}); running without "
              "one, errors are shown and printed here only", file=sys.stderr)
    else:
        print(f"gsmc-desktop: log, native messages and crash reports: {log_file}", file=sys.stderr)
    return log_file
