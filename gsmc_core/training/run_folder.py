"""A training run's folder, the one place that knows its layout:

    config.yaml        the run's settings (TrainConfig), written when it starts
    metrics.csv        one row per finished epoch (METRIC_COLUMNS), rewritten whole, atomically
    last.pt            the latest epoch, with everything a resume needs
    best.pt            the epoch chosen on validation
    train_labels.csv   with label noise: each training face's clean and given label
    unreadable.csv     the faces that could not be read, if any
    .gsmc-run.lock     held by the process writing the folder (run_lock.py)

The trainer, the Training tab, its curves, the CLI, cross-validation and the study scripts all
go through ``RunFolder``.
"""

import csv
import errno
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gsmc_core.atomic import write_atomic, write_text_atomic
from gsmc_core.outputs import OutputError, same_file

RUN_FILES = ("last.pt", "best.pt", "metrics.csv")  # what makes a folder another run's
CHECKPOINTS = ("last.pt", "best.pt")
METRIC_COLUMNS = ("epoch", "loss", "ce", "kl", "ac", "kd", "train_acc", "val_acc", "val_loss",
                  "val_acc_teacher", "val_loss_teacher", "val_acc_teacher_avg_bn", "selected", "lr",
                  "seconds", "images_per_s", "skipped")


@dataclass(frozen=True)
class RunFolder:
    path: Path

    def __init__(self, path: str | os.PathLike) -> None:
        object.__setattr__(self, "path", Path(path))

    @property
    def config_file(self) -> Path:
        return self.path / "config.yaml"

    @property
    def metrics_file(self) -> Path:
        return self.path / "metrics.csv"

    @property
    def last(self) -> Path:
        return self.path / "last.pt"

    @property
    def best(self) -> Path:
        return self.path / "best.pt"

    @property
    def train_labels(self) -> Path:
        return self.path / "train_labels.csv"

    @property
    def unreadable(self) -> Path:
        return self.path / "unreadable.csv"

    def run_files(self) -> list[str]:
        """The files of a run already in the folder (a new run must not write among them)."""
        return [name for name in RUN_FILES if (self.path / name).exists()]

    def written_files(self) -> list[Path]:
        """The files a run has written here (what no other command's output may replace)."""
        return [p for p in (self.last, self.best, self.metrics_file, self.config_file,
                            self.train_labels, self.unreadable) if p.exists()]

    def refuse_writing_over(self, path: Path, option: str) -> None:
        """OutputError when another command's output ``path`` is one of the files this run
        wrote (``calibrate --out runs/a/best.pt`` replaced the run's own best.pt)."""
        if self.run_files() and any(same_file(path, written) for written in self.written_files()):
            raise OutputError(errno.EEXIST, f"{option} {path}: is the {path.name} of the training run "
                              f"in {self.path}; writing it would replace what the run wrote. Choose "
                              f"another name (e.g. {self.path / (path.stem + '_new' + path.suffix)})")

    def can_resume(self) -> bool:
        """Whether a run's last.pt is here (its recipe is in it, config.yaml or not)."""
        return self.last.is_file()

    def problem_for_new_run(self) -> str | None:
        """Why a new run cannot start here (None when it can): a file in the folder's place,
        another run's files in it, or no permission to create or write it."""
        if self.path.exists() and not self.path.is_dir():
            return f"{self.path} is a file, not a folder: choose a folder for the run."
        found = self.run_files()
        if found:
            return (f"{self.path} already holds a run ({', '.join(found)}); nothing was overwritten. "
                    "Resume it (it needs last.pt), or choose another folder.")
        existing = self.path
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            return f"Cannot write in {existing}: choose a folder you can write to."
        return None

    def history(self) -> list[dict[str, str]]:
        """metrics.csv's rows, one per finished epoch (empty when there is none yet); rows a
        damaged file holds that are not an epoch's are left out (``read_history`` names them)."""
        return self.read_history()[0]

    def read_history(self) -> tuple[list[dict[str, str]], list[str]]:
        """metrics.csv's whole rows and, for a damaged file (edited, or damaged on disk: the
        trainer writes it atomically), what was wrong with the others ("line 3: ...")."""
        if not self.metrics_file.is_file():
            return [], []
        data = self.metrics_file.read_bytes()
        problems = []
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            text = data.decode("utf-8", errors="replace")
            problems.append(f"byte {exc.start}: not text (replaced)")
        lines = text.splitlines()
        header = _fields(lines[0]) if lines else []
        if not header or "epoch" not in header:
            return [], [*problems, "line 1: not metrics.csv's header (no epoch column)"]
        rows = []
        for line_no, line in enumerate(lines[1:], start=2):
            values = _fields(line)
            if values is None:
                problems.append(f"line {line_no}: not CSV text")
                continue
            if not values:
                continue
            if len(values) != len(header):
                problems.append(f"line {line_no}: {len(values)} columns, {len(header)} expected")
                continue
            row = dict(zip(header, values, strict=True))
            if not row["epoch"].isdecimal() or not row["epoch"].isascii() or int(row["epoch"]) < 1:
                problems.append(f"line {line_no}: epoch {row['epoch'][:20]!r} is not an epoch number")
                continue
            rows.append(row)
        return rows, problems

    def keep_damaged_metrics(self) -> Path:
        """Copy metrics.csv as it is to a new ``metrics.csv.damaged`` name (before a repair
        rewrites it); the copy's path."""
        k = 1
        while (copy := self.path / f"{self.metrics_file.name}.damaged{'' if k == 1 else f'.{k}'}").exists():
            k += 1
        copy.write_bytes(self.metrics_file.read_bytes())
        return copy

    def write_history(self, rows: list[dict[str, Any]]) -> None:
        def write(f) -> None:
            writer = csv.DictWriter(f, fieldnames=METRIC_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)

        write_atomic(self.metrics_file, write)

    def append_metrics(self, row: dict[str, Any]) -> None:
        """Add an epoch's row (the file is rewritten whole and atomically)."""
        self.write_history([*self.history(), row])

    def write_config(self, text: str) -> None:
        write_text_atomic(self.config_file, text)

    def remove_stale_temporaries(self) -> list[str]:
        """Delete the temporary files of checkpoint saves a kill cut short; their names."""
        removed = []
        if self.path.is_dir():
            for stale in self.path.glob(".*.pt.*.tmp"):
                stale.unlink(missing_ok=True)
                removed.append(stale.name)
        return removed


def _fields(line: str) -> list[str] | None:
    """One CSV line's fields; None for a line the csv module refuses (a NUL byte, a field
    beyond its size limit: what a disk fault leaves)."""
    try:
        return next(csv.reader([line]), [])
    except csv.Error:
        return None
