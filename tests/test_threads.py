"""A worker thread that does not end in time is kept, not destroyed while it runs (which makes
Qt abort the whole app), and it is said in the log."""

import gc
import threading

from PySide6.QtCore import QObject, Signal, Slot

from gsmc_desktop import threads
from gsmc_desktop.threads import running_threads, start_worker, stop_thread


class _Busy(QObject):
    go = Signal()

    def __init__(self, release: threading.Event) -> None:
        super().__init__()
        self.release = release
        self.started = threading.Event()
        self.go.connect(self.work)

    @Slot()
    def work(self) -> None:
        self.started.set()
        self.release.wait(10)  # a slot that does not look at any stop flag (a camera scan)


def test_a_thread_that_does_not_end_in_time_is_kept_and_logged(qtbot, caplog):
    release = threading.Event()
    worker = _Busy(release)
    thread = start_worker(worker, "busy-test")
    worker.go.emit()
    assert worker.started.wait(5)
    assert stop_thread(thread, timeout_ms=100) is False
    assert "worker thread busy-test did not end within 0.1 s" in caplog.text
    del thread
    gc.collect()  # the tab let go of it: without the keep, Qt aborts here
    assert running_threads() == ["busy-test"]
    release.set()
    qtbot.waitUntil(lambda: running_threads() == [], timeout=5_000)
    threads._left_running.clear()
