"""Worker threads: the workers' base class, and a QObject moved to its own QThread, registered
so shutdown can be checked."""

import logging
import threading
import weakref

from PySide6.QtCore import QObject, QThread, Signal

from gsmc_core.errors import GsmcError

log = logging.getLogger("gsmc_desktop")

_threads: "weakref.WeakSet[QThread]" = weakref.WeakSet()
_left_running: list[QThread] = []  # threads that did not end in time: never destroyed running


def expected(exc: BaseException) -> bool:
    """A problem the user can fix (bad input, a file, a device), not a bug."""
    return isinstance(exc, GsmcError | OSError)


def describe(exc: BaseException) -> str:
    """What a person reads: the message alone for a problem they can fix; for anything else the
    exception's type too, and where its traceback is."""
    return str(exc) if expected(exc) else f"{type(exc).__name__}: {exc} (details in the log)"


class Worker(QObject):
    """Base of the app's workers: a stop event that ``request_stop`` sets from any thread, and
    one way out for errors, ``fail``: it logs the error (a bug with its traceback, a problem the
    user can fix as a warning) and emits ``errored(exception, task)``; the tab decides how to
    show it (``describe``)."""

    errored = Signal(object, str)

    def __init__(self) -> None:
        super().__init__()
        self._stop = threading.Event()

    def request_stop(self) -> None:
        """Stop the task in progress at its next check (from any thread)."""
        self._stop.set()

    def fail(self, exc: BaseException, task: str) -> None:
        if expected(exc):
            log.warning("%s: %s", task, exc)
        else:
            log.error("%s failed", task, exc_info=exc)
        self.errored.emit(exc, task)


def start_worker(worker: QObject, name: str) -> QThread:
    """Move ``worker`` to a new, started QThread named ``name``; its slots run there.

    The worker must have no parent (Qt cannot move an object whose parent stays behind).
    """
    thread = QThread()
    thread.setObjectName(name)
    worker.moveToThread(thread)
    thread.start()
    _threads.add(thread)
    return thread


def stop_thread(thread: QThread, timeout_ms: int = 30_000) -> bool:
    """Ask the thread's event loop to end and wait for it; True once it has finished.

    A worker busy in a long slot must have been asked to stop first (its own stop flag):
    ``quit`` only takes effect when control returns to the event loop.
    """
    thread.quit()
    if thread.wait(timeout_ms):
        return True
    # destroying a QThread that still runs aborts the process (Qt): keep it to the end, said
    log.warning("worker thread %s did not end within %g s; left to finish on its own",
                thread.objectName(), timeout_ms / 1000)
    _left_running.append(thread)
    return False


def running_threads() -> list[str]:
    """Names of the worker threads still running (tests assert this is empty)."""
    return [t.objectName() for t in list(_threads) if t.isRunning()]
