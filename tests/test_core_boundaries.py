import subprocess
import sys

import pytest
import torch

from gsmc_core.cli import main
from gsmc_core.devices import DeviceUnavailableError, resolve_device


def test_gsmc_core_imports_no_qt():
    code = (
        "import pkgutil, importlib, sys, gsmc_core\n"
        "for m in pkgutil.walk_packages(gsmc_core.__path__, 'gsmc_core.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph', 'shiboken6')]\n"
        "print(len(list(pkgutil.walk_packages(gsmc_core.__path__))), bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_device_selection():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceUnavailableError, match="'cuda' was requested but is not available"):
            resolve_device("cuda")
    with pytest.raises(DeviceUnavailableError, match="unknown device 'tpu'"):
        resolve_device("tpu")


def test_cli_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "import-weights" in out and "info" in out
