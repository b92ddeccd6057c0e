"""Remembered settings, read defensively.

A value of the wrong type, out of its range or absurd (a hand-edited or damaged GSMC.conf:
``window/geometry=garbage``, ``live/opacity=99999999999999999999``, a 5,000-character path) is
dropped with a logged warning and the default is used, so no remembered value can stop the app
from starting. ``gsmc-desktop --reset-settings`` forgets them all.
"""

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QSettings

log = logging.getLogger(__name__)
MAX_TEXT = 1024  # no path or name the app stores is longer; a file system's own limit is 4096


def _convert(raw: Any, kind: type) -> Any:
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        if str(raw).lower() in ("true", "false", "1", "0"):
            return str(raw).lower() in ("true", "1")
        raise ValueError("not true or false")
    if kind is int:
        value = int(raw)
        if abs(value) > 2**31 - 1:
            raise OverflowError("too large")
        return value
    if kind is float:
        value = float(raw)
        if not math.isfinite(value):
            raise ValueError("not a finite number")
        return value
    if kind is str:
        if not isinstance(raw, str) or len(raw) > MAX_TEXT:
            raise ValueError("not a short text")
        return raw
    if kind is list:
        items = [raw] if isinstance(raw, str) else raw
        if not isinstance(items, list) or not all(isinstance(p, str) and len(p) <= MAX_TEXT for p in items):
            raise ValueError("not a list of short texts")
        return items
    if kind is QByteArray:
        if not isinstance(raw, QByteArray):
            raise ValueError("not saved window state")
        return raw
    raise TypeError(f"unsupported setting type {kind}")


def read_setting(key: str, default: Any, kind: type, valid: Callable[[Any], bool] | None = None) -> Any:
    """The remembered value of ``key`` as ``kind`` (bool, int, float, str, list or QByteArray),
    or ``default`` when there is none or it is unusable (then it is removed and logged)."""
    settings = QSettings()
    if not settings.contains(key):
        return default
    raw = settings.value(key)
    try:
        value = _convert(raw, kind)
        if valid is not None and not valid(value):
            raise ValueError("out of range")
    except (TypeError, ValueError, OverflowError) as exc:
        shown = repr(raw)
        log.warning("remembered setting %s = %s is unusable (%s); using %r", key,
                    shown if len(shown) <= 80 else f"{shown[:80]}…", exc, default)
        settings.remove(key)
        return default
    return value


def existing_file(text: str) -> Path | None:
    """``text`` as the path of an existing file, or None (also for names the file system
    refuses outright, such as a component longer than 255 characters)."""
    try:
        path = Path(text)
        return path if text and path.is_file() else None
    except (OSError, ValueError):
        return None


def existing_folder(text: str) -> Path | None:
    """``text`` as the path of an existing folder, or None (as ``existing_file``)."""
    try:
        path = Path(text)
        return path if text and path.is_dir() else None
    except (OSError, ValueError):
        return None


def reset_settings() -> None:
    """Forget every remembered setting (``--reset-settings``)."""
    settings = QSettings()
    settings.clear()
    settings.sync()
