"""Where shipped files live: ``gsmc_core/assets`` (the default model, the face-detector models,
a sample photo and video), package data of the wheel found through ``importlib.resources``, in
a source checkout, an installed wheel and a frozen (PyInstaller) build alike."""

import importlib.resources
import sys
from pathlib import Path


def assets_root() -> Path:
    """The ``assets`` folder of the installed ``gsmc_core`` package.

    A PyInstaller build unpacks its data under ``sys._MEIPASS`` (build.spec puts the folder at
    ``gsmc_core/assets`` there); otherwise the package's own files (a wheel is installed
    unzipped, so they are plain files on disk).
    """
    frozen_root = getattr(sys, "_MEIPASS", None)
    if frozen_root:
        return Path(frozen_root) / "gsmc_core" / "assets"
    return Path(str(importlib.resources.files("gsmc_core") / "assets"))


def asset_path(*parts: str) -> Path:
    """Path of a file under ``gsmc_core/assets``."""
    return assets_root().joinpath(*parts)


DEFAULT_CHECKPOINT = asset_path("models", "gsmc_default.pt")
