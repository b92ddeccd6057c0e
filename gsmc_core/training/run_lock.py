"""One writer per run folder: an OS file lock held for the whole run.

Two `gsmc train` (or a CLI run and the app) on the same folder would interleave metrics.csv and
mix one run's config with the other's weights. The lock is the operating system's (``flock`` on
POSIX, ``msvcrt.locking`` on Windows), so a crashed or killed run releases it by itself; the
file also names the process holding it, for the message the second writer gets.
"""

import os
from pathlib import Path

from gsmc_core.errors import GsmcError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
    import msvcrt

LOCK_NAME = ".gsmc-run.lock"


class RunFolderBusy(GsmcError, RuntimeError):
    """Another process is writing this run folder."""


_HELD: set[int] = set()  # the descriptors of the locks this process holds


def close_inherited_locks() -> None:
    """In a forked child (a loader worker): close the run locks' descriptors it inherited. A
    lock belongs to the open file, which a child shares, so a worker that outlived its run
    (persistent workers of a run ended by an exception) kept the folder locked."""
    for fd in list(_HELD):
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD.clear()


class RunLock:
    """``with RunLock(folder):`` holds the folder's lock or raises RunFolderBusy at once."""

    def __init__(self, folder: str | Path) -> None:
        self.path = Path(folder) / LOCK_NAME
        self._fd: int | None = None

    def __enter__(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            else:
                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise RunFolderBusy(f"{self.path.parent} is being written by {holder}; wait for it "
                                "to finish (or stop it) before training in this folder") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"process {os.getpid()}".encode())
        self._fd = fd
        _HELD.add(fd)
        return self

    def __exit__(self, *exc_info) -> None:
        if self._fd is not None:
            _HELD.discard(self._fd)
            os.close(self._fd)  # closing releases the lock
            self._fd = None
