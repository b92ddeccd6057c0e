"""What every command's output file must be, checked before any work: writable (see
``gsmc_core.outputs``) and not a file a training run wrote in its folder."""

from pathlib import Path

from gsmc_core.outputs import require_writable_file
from gsmc_core.training.run_folder import RunFolder


def require_writable_output(path: str | Path, option: str, folders_made: bool = False) -> None:
    require_writable_file(path, option, folders_made)
    RunFolder(Path(path).parent).refuse_writing_over(Path(path), option)
