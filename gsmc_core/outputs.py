"""Where the tools write: never over one of their own inputs, and only whole files.

Every command (and the app's save dialogs) checks its outputs against its inputs before any work
(``refuse_overwriting_inputs``), and writes each output under a temporary name in the target's
folder, renaming it over the target only after a complete, checked write (``atomic.write_atomic``
for files written in one go, ``partial_path`` + ``commit`` for files written as they go).
"""

import errno
import os
from collections.abc import Iterable
from pathlib import Path

import cv2

from gsmc_core.atomic import write_atomic
from gsmc_core.errors import GsmcError


class OutputError(GsmcError, OSError):
    """An output that would destroy an input, or that could not be written whole."""

    def __str__(self) -> str:  # the message alone, without OSError's "[Errno 17]" prefix
        return self.strerror or super().__str__()


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name the same file or folder: the same inode where both exist (hard
    links, symlinks, relative spellings), else the same absolute path."""
    a, b = Path(a), Path(b)
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def require_writable_file(path: str | Path, option: str, folders_made: bool = False) -> None:
    """Before any work: ``path`` can be created or replaced (an existing file is not touched);
    ``folders_made``: the writer creates missing folders above it."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(errno.EISDIR, f"{option} {path}: is a folder; give a file name")
    folder = path.parent
    while folders_made and not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise OutputError(errno.ENOENT, f"{option} {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise OutputError(errno.EACCES, f"{option} {path}: not writable; choose another place")


def refuse_overwriting_inputs(outputs: dict[str, str | Path | None], inputs: Iterable[str | Path]) -> None:
    """Raise OutputError naming the option when an output file is one of the inputs."""
    inputs = [Path(p) for p in inputs]
    for option, out in outputs.items():
        if not out:
            continue
        for source in inputs:
            if same_file(out, source):
                raise OutputError(errno.EEXIST, f"{option} {out} is an input ({source}): writing "
                                  "it would destroy it. Choose another file")


def refuse_folder_of_inputs(option: str, folder: str | Path, inputs: Iterable[str | Path]) -> None:
    """Raise OutputError when ``folder`` holds any of the inputs (written files could replace
    them), also through a link: annotated copies of photos go to a folder of their own."""
    for source in inputs:
        if any(same_file(parent, folder) for parent in (Path(source).parent, Path(source).resolve().parent)):
            raise OutputError(errno.EEXIST, f"{option} {folder} holds the input {source}; files "
                              "written there could replace the originals. Choose another folder")


def partial_path(target: str | Path) -> Path:
    """A temporary name beside ``target`` with the same extension (the video writer picks its
    container by it): ``.clip.mp4`` -> ``.clip.partial.mp4``."""
    target = Path(target)
    return target.with_name(f".{target.stem}.partial{target.suffix}")


def commit(partial: Path, target: str | Path) -> None:
    """Put a completely written ``partial`` in place of ``target``."""
    os.replace(partial, target)


def free_space_problem(path: str | Path) -> str:
    """Why a write may have failed, for messages: the free space of the folder."""
    try:
        stat = os.statvfs(Path(path).parent)
    except OSError:
        return ""
    free = stat.f_bavail * stat.f_frsize
    return " (the disk is full)" if free < 1 << 20 else ""


def write_image(path: str | Path, bgr) -> Path:
    """Encode ``bgr`` by the extension of ``path`` and write it atomically; OutputError names the
    file when the extension is unknown or the write fails."""
    path = Path(path)
    try:
        ok, encoded = cv2.imencode(path.suffix or ".png", bgr)
    except cv2.error:
        ok = False
    if not ok:
        raise OutputError(errno.EINVAL, f"{path}: cannot encode an image with extension "
                          f"{path.suffix or '(none)'}; use .png or .jpg")
    try:
        return write_atomic(path, lambda f: f.write(encoded.tobytes()), binary=True)
    except OSError as exc:
        raise OutputError(exc.errno, f"{path}: could not be written ({exc.strerror or exc})"
                          f"{free_space_problem(path)}; nothing was replaced") from exc
