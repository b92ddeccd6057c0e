"""Worker threads: a QObject moved to its own QThread, registered so shutdown can be checked."""

import weakref

from PySide6.QtCore import QObject, QThread

_threads: "weakref.WeakSet[QThread]" = weakref.WeakSet()


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
    return thread.wait(timeout_ms)


def running_threads() -> list[str]:
    """Names of the worker threads still running (tests assert this is empty)."""
    return [t.objectName() for t in list(_threads) if t.isRunning()]
