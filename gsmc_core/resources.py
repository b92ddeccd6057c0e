"""Where shipped files live: the top-level ``assets/`` folder of the source tree (the default
model, the face-detector models, a sample photo and video, the model card and the user guide).

A wheel carries the folder as ``gsmc_core/assets`` (setup.py's build step copies it there) and a
PyInstaller build unpacks it at ``gsmc_core/assets`` under ``sys._MEIPASS`` (build.spec); a
source checkout (an editable install, ``make run``) reads ``assets/`` itself. This module is the
one place that knows which.
"""

import importlib.resources
import sys
from pathlib import Path

SOURCE_ASSETS = Path(__file__).resolve().parents[1] / "assets"


def assets_root() -> Path:
    """The shipped files' folder: frozen build, installed wheel, or source checkout."""
    frozen_root = getattr(sys, "_MEIPASS", None)
    if frozen_root:
        return Path(frozen_root) / "gsmc_core" / "assets"
    installed = Path(str(importlib.resources.files("gsmc_core") / "assets"))  # a wheel is unzipped
    return installed if installed.is_dir() else SOURCE_ASSETS


def asset_path(*parts: str) -> Path:
    """Path of a shipped file, e.g. ``asset_path("models", "gsmc_default.pt")``."""
    return assets_root().joinpath(*parts)


DEFAULT_CHECKPOINT = asset_path("models", "gsmc_default.pt")
