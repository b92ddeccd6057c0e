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


def _imports_of(path) -> set[str]:
    """The gsmc_core modules a source file imports (at the top or inside functions)."""
    import ast

    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("gsmc_core.")}


def test_the_subpackages_depend_one_way():
    """The model and shared helpers at the root need none of the subpackages; the frame path
    needs neither the trainer nor label review; the trainer does not need label review."""
    from pathlib import Path

    import gsmc_core

    root = Path(gsmc_core.__file__).parent
    forbidden = {
        "": ("gsmc_core.training", "gsmc_core.review", "gsmc_core.frames", "gsmc_core.cli"),
        "frames": ("gsmc_core.training", "gsmc_core.review", "gsmc_core.cli"),
        "training": ("gsmc_core.review", "gsmc_core.cli"),
        "review": ("gsmc_core.cli",),
    }
    checked = 0
    for folder, banned in forbidden.items():
        files = sorted((root / folder).rglob("*.py")) if folder else sorted(root.glob("*.py"))
        for path in files:
            if folder == "" and path.name == "__init__.py":
                continue  # the lazy public API names classes from the subpackages
            wrong = [m for m in _imports_of(path) if m.startswith(banned)]
            assert not wrong, f"{path.relative_to(root)} imports {wrong}"
            checked += 1
    assert checked > 40
