"""Atomic file writes: a temporary file in the target's folder, flushed to disk, then renamed
over the target, so a kill or a full disk leaves either the old file or the new one, never a
part of one (and no temporary file behind)."""

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: str | Path, write: Callable[[IO[Any]], None], binary: bool = False) -> Path:
    """Call ``write`` with an open temporary file, then put it in place of ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if hasattr(os, "fchmod"):  # POSIX: mkstemp makes 0600; give the usual file mode
            os.fchmod(fd, 0o666 & ~current_umask())
        # text is UTF-8 whatever the system's encoding (cp1252 on Windows cannot hold 写真.jpg)
        with os.fdopen(fd, "wb" if binary else "w", newline=None if binary else "",
                       encoding=None if binary else "utf-8") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_atomic(path, lambda f: f.write(text))
