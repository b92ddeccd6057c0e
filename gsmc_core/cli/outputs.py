"""What every command's output file must be, checked before any work: writable (see
``gsmc_core.outputs``) and not a file a training run wrote in its folder."""

import errno
import zipfile
from pathlib import Path

from gsmc_core.errors import UsageError
from gsmc_core.outputs import OutputError, require_writable_file
from gsmc_core.training.run_folder import RunFolder


def require_writable_output(path: str | Path, option: str, folders_made: bool = False) -> None:
    require_writable_file(path, option, folders_made)
    RunFolder(Path(path).parent).refuse_writing_over(Path(path), option)


def require_onnx_output(path: str | Path, option: str) -> None:
    """An ONNX graph is written under a .onnx name: under .pt it would pass for a checkpoint
    that every command then calls damaged."""
    if Path(path).suffix.lower() != ".onnx":
        raise UsageError(f"{option} {path}: this command writes an ONNX graph; give a name ending "
                         f"in .onnx (e.g. {Path(path).with_suffix('.onnx')})")


def refuse_replacing_weights(path: str | Path, option: str, overwrite: bool) -> None:
    """OutputError when ``path`` already holds PyTorch weights (a trained model is hours of
    work; an init or calibrated checkpoint written over it would lose it), unless ``overwrite``."""
    path = Path(path)
    if overwrite or not path.is_file() or not _holds_torch_weights(path):
        return
    raise OutputError(errno.EEXIST, f"{option} {path}: already holds PyTorch weights, which this "
                      "command would replace. Choose another name, or add --overwrite to replace it")


def _holds_torch_weights(path: Path) -> bool:
    """Whether ``path`` is a file ``torch.save`` wrote (its zip layout, or the legacy pickle)."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                return any(name.endswith("/data.pkl") or name == "data.pkl" for name in z.namelist())
        with open(path, "rb") as f:
            return f.read(2) in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")
    except (OSError, zipfile.BadZipFile):
        return False
