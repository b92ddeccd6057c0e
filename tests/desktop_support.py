"""Helpers for the desktop (pytest-qt) tests: isolated settings and a generated video clip."""

import contextlib
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import torch
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication

from gsmc_desktop.app import APPLICATION, ORGANIZATION
from gsmc_desktop.threads import running_threads


def isolate_settings(app: QApplication, folder: Path) -> None:
    """Point QSettings at an INI file under ``folder`` so tests never touch the user's."""
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(folder))
    QSettings().clear()


@contextlib.contextmanager
def desktop_test(app: QApplication, folder: Path) -> Iterator[None]:
    """Isolated settings, one torch thread, and a check that no worker thread is left running.

    One thread: on a CPU another job keeps busy, two OpenMP threads spin against it and the
    tiny training runs ~5x slower (docs/performance.md has the same finding for inference).
    """
    isolate_settings(app, folder)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
    assert running_threads() == []


def write_clip(rgb: np.ndarray, path: Path, frames: int, fps: float = 10.0) -> Path:
    """A 640x480 MP4 of the head and shoulders of ``rgb`` (the astronaut portrait) drifting a few
    pixels per frame: a face the short-range detector finds in every frame (score ~0.95)."""
    head = cv2.cvtColor(cv2.resize(rgb[0:320, 80:400], (480, 480)), cv2.COLOR_RGB2BGR)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (640, 480))
    assert writer.isOpened(), f"cannot write {path}"
    for k in range(frames):
        canvas = np.full((480, 640, 3), 40, np.uint8)
        x = 40 + 4 * (k % 20)
        canvas[:, x : x + 480] = head
        writer.write(canvas)
    writer.release()
    return path
