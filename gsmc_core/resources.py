"""Where shipped files live, from a source checkout and from a frozen (PyInstaller) build."""

import sys
from pathlib import Path


def asset_path(*parts: str) -> Path:
    """Path of a file under ``assets/``.

    A PyInstaller build unpacks its data under ``sys._MEIPASS`` (build.spec puts ``assets/``
    there); otherwise ``assets/`` sits beside the ``gsmc_core`` package in the checkout.
    """
    frozen_root = getattr(sys, "_MEIPASS", None)
    root = Path(frozen_root) if frozen_root else Path(__file__).resolve().parents[1]
    return root.joinpath("assets", *parts)


DEFAULT_CHECKPOINT = asset_path("models", "gsmc_default.pt")
