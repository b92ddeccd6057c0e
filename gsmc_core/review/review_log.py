"""A label review's decisions, written as they are made to an append-only CSV sidecar.

Each decision is one line, flushed and fsynced before the call returns, so a kill (even
``kill -9``) loses nothing that was decided; reopening replays the file to the same state. The
dataset's own label files are never touched: ``relabel`` writes a cleaned copy from the state.

Lines: ``time, who, action, key, label, score`` with action ``set`` (the face is ``label``),
``keep`` (the given label is right), ``unusable`` (not a face, or not usable) or ``undo`` (the
last decision not yet undone is withdrawn).

The faces' keys are names within one dataset (FER2013's are row numbers), so ``dataset.json``
beside the log records which dataset (format and folder) the decisions were made on, and a log
is not opened for another one: a cleaned copy's rows or files would take other faces' decisions.
"""

import csv
import datetime
import getpass
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from gsmc_core.errors import UsageError

COLUMNS = ("time", "who", "action", "key", "label", "score")
ACTIONS = ("set", "keep", "unusable", "undo")
UNUSABLE = "unusable"
DATASET_FILE = "dataset.json"  # beside the log: the dataset its decisions were made on


@dataclass(frozen=True)
class Decision:
    key: str
    action: str  # set, keep or unusable
    label: str  # the class for "set"; empty otherwise
    score: str = ""
    who: str = ""
    time: str = ""


class ReviewLog:
    """The decisions of one review, kept in ``path`` (created on first use)."""

    def __init__(self, path: str | os.PathLike, who: str | None = None,
                 dataset: tuple[str, str | os.PathLike] | None = None) -> None:
        """``dataset`` (format, folder): the dataset under review; a log that records another
        one is refused (UsageError), and one that records none is given this one."""
        self.path = Path(path)
        self.who = who or _user()
        root = None if dataset is None else Path(dataset[1]).resolve()
        if root is not None and root.is_file():  # FER2013 given as its csv: the folder holding it
            root = root.parent
        self.dataset = None if dataset is None else {"dataset": dataset[0], "data_root": str(root)}
        self._check_dataset()
        self._history: list[Decision] = []  # decisions in order, undone ones removed
        # line numbers of lines cut short by a kill mid-write (or, before 2026-12-01, run together
        # with the next decision): skipped
        self.cut_lines: list[int] = []
        if self.path.exists():
            self._replay()

    @property
    def dataset_file(self) -> Path:
        return self.path.with_name(DATASET_FILE)

    def _check_dataset(self) -> None:
        if self.dataset is None or not self.dataset_file.is_file():
            return
        try:
            recorded = json.loads(self.dataset_file.read_text(encoding="utf-8"))
            made_on = (recorded["dataset"], recorded["data_root"])
        except (ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"{self.dataset_file}: not the record of a reviewed dataset ({exc}); "
                             "delete it to review this dataset with these decisions") from exc
        if made_on != (self.dataset["dataset"], self.dataset["data_root"]):
            raise UsageError(
                f"{self.path} holds the decisions of a review of {made_on[0]} in {made_on[1]}, not "
                f"of {self.dataset['dataset']} in {self.dataset['data_root']}: another dataset (a "
                f"cleaned copy too) needs its own review. Score {made_on[1]} to go on with that one, "
                f"or move {self.path.parent} aside to start a new review (if the dataset was only "
                f"moved, put its new folder in {self.dataset_file})")

    def _record_dataset(self) -> None:
        if self.dataset is not None and not self.dataset_file.is_file():
            self.dataset_file.write_text(json.dumps(self.dataset, indent=2) + "\n", encoding="utf-8")

    def _replay(self) -> None:
        # line by line: a line cut by a kill inside a quoted key would otherwise open a quote
        # that swallows every later line (the cut may also split a character: replaced, dropped)
        lines = re.split(r"\r?\n", self.path.read_bytes().decode("utf-8", errors="replace"))
        header = next(csv.reader(lines[:1]), [])
        if header and tuple(header) != COLUMNS:
            raise UsageError(f"{self.path}: not a review log (columns {COLUMNS} expected)")
        for line_no, line in enumerate(lines[1:], start=2):
            row = next(csv.reader([line]), [])
            if not row:
                continue
            if len(row) != len(COLUMNS):  # cut by a kill mid-write (older versions appended the
                self.cut_lines.append(line_no)  # next decision to the cut line: longer)
                continue
            time, who, action, key, label, score = row
            if action not in ACTIONS:
                raise UsageError(f"{self.path}:{line_no}: unknown action {action[:20]!r}")
            if action == "undo":
                if self._history:
                    self._history.pop()
            else:
                self._history.append(Decision(key, action, label, score, who, time))

    def _append(self, action: str, key: str, label: str = "", score: float | str = "") -> None:
        if "\n" in key or "\r" in key:  # one decision is one line of the log
            raise UsageError(f"{key[:60]!r}: a name with a line break cannot be reviewed; rename the file")
        new = not self.path.exists() or self.path.stat().st_size == 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._record_dataset()
        time = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        cut = not new and _ends_mid_line(self.path)
        with open(self.path, "a", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(COLUMNS)
            elif cut:  # a line cut by a kill: ended here, so this decision is not merged into it
                f.write("\r\n")
            writer.writerow([time, self.who, action, key, label,
                             f"{score:.6g}" if isinstance(score, float) else score])
            f.flush()
            os.fsync(f.fileno())
        if action == "undo":
            self._history.pop()
        else:
            self._history.append(Decision(key, action, label, str(score), self.who, time))

    def set_label(self, key: str, label: str, score: float | str = "") -> None:
        self._append("set", key, label, score)

    def keep(self, key: str, score: float | str = "") -> None:
        self._append("keep", key, "", score)

    def unusable(self, key: str, score: float | str = "") -> None:
        self._append("unusable", key, "", score)

    def undo(self) -> Decision | None:
        """Withdraw the last decision; returns it (None when there is nothing to undo)."""
        if not self._history:
            return None
        last = self._history[-1]
        self._append("undo", last.key)
        return last

    def decisions(self) -> dict[str, Decision]:
        """The standing decision for each reviewed key (the latest one wins)."""
        return {d.key: d for d in self._history}


def _ends_mid_line(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) != b"\n"


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in the environment or the password database
        return "unknown"
