"""A cleaned copy of a dataset from a label review's decisions, in the dataset's own format.

The original files are never modified: ``relabel`` writes a new dataset root whose label file
carries the decisions (a face set to another class, or left out as unusable) and whose images
are links to the originals (copies where links are not possible), plus ``changes.csv`` (file,
old, new, score, who, when). The new root trains like the original (`gsmc train --data-root`).

- FERPlus: ``FER2013Train/label.csv`` with the votes of a changed face made unanimous for its
  new class (an unusable one voted not-a-face, which the majority rule drops).
- RAF-DB: ``EmoLabel/list_patition_label.txt`` with RAF's codes; unusable lines left out.
- FER2013: ``fer2013.csv`` with the new emotion codes; unusable rows left out.
- AffectNet: ``training.csv`` with the new expression codes; unusable faces coded 10 (no face).
- Image folders: ``train/<class>/<file>`` links in the class decided; unusable files left out.
"""

import csv
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from gsmc_core.atomic import current_umask, write_atomic
from gsmc_core.labels import (
    AFFECTNET_LABELS,
    CANONICAL_CLASSES,
    FER2013_LABELS,
    FERPLUS_VOTE_COLUMNS,
    RAFDB_LABELS,
)
from gsmc_core.outputs import OutputError, same_file
from gsmc_core.review.review_log import UNUSABLE, Decision
from gsmc_core.training.data.readers import ferplus_majority
from gsmc_core.training.data.samples import DataError, open_label_file

RELABEL_DATASETS = ("ferplus", "rafdb", "fer2013", "affectnet", "folder")


@dataclass(frozen=True)
class RelabelResult:
    root: Path
    changed: int  # faces given another class
    removed: int  # faces left out as unusable
    kept: int  # faces whose label was confirmed
    unmatched: tuple[str, ...] = ()  # decisions to change a face this dataset does not have


def _link(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.symlink(source.resolve(), target, target_is_directory=source.is_dir())
    except FileExistsError:
        raise  # never a copy onto an existing link: it would write through it into the original
    except OSError:  # no symlinks here (Windows without the privilege): copy
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copy2(source, target)


def _new_label(decision: Decision | None) -> str | None:
    """The class a decision gives, UNUSABLE, or None (no change)."""
    if decision is None or decision.action == "keep":
        return None
    return UNUSABLE if decision.action == "unusable" else decision.label


def _code(table: dict[int, str], label: str) -> int:
    codes = {name: code for code, name in table.items()}
    if label not in codes:
        raise DataError(f"class {label!r} has no code in this dataset's labels")
    return codes[label]


def _header(reader, source: Path, columns: tuple[str, ...]) -> tuple[list[str], list[int]]:
    """The CSV's header and the positions of ``columns`` in it; DataError when it has none."""
    header = next(reader, None)
    missing = [c for c in columns if c not in (header or [])]
    if header is None or missing:
        raise DataError(f"{source}: {'empty' if header is None else 'no column ' + ', '.join(missing)}"
                        f" (a {source.name} needs the columns {', '.join(columns)})")
    return header, [header.index(c) for c in columns]


def _old_class(table: dict[int, str], value: str, where: str) -> str:
    """The class a row's code names (as the dataset's reader reads it)."""
    try:
        return table[int(value)]
    except (ValueError, KeyError):
        raise DataError(f"{where}: {value[:20]!r} is not one of the codes {min(table)}-{max(table)} "
                        "of this format") from None


def _write_csv(path: Path, rows: list[list[str]]) -> None:
    write_atomic(path, lambda f: csv.writer(f).writerows(rows))


def _ferplus(root: Path, out: Path, decisions: dict[str, Decision]) -> list[tuple[str, str, str]]:
    changes = []
    train = root / "FER2013Train"
    rows, line_of = [], {}
    with open_label_file(train / "label.csv") as f:
        for line_no, row in enumerate(csv.reader(f), start=1):
            if not row:
                continue
            if row[0] in line_of:  # one link per image: a second row could not be linked
                raise DataError(f"{train / 'label.csv'}:{line_no}: {row[0]} is listed again (first "
                                f"on line {line_of[row[0]]}); remove one of the two rows")
            line_of[row[0]] = line_no
            new = _new_label(decisions.get(row[0]))
            if new is not None:
                try:
                    votes = [float(v) for v in row[2:]]
                except ValueError:
                    votes = []
                if len(votes) != len(FERPLUS_VOTE_COLUMNS):
                    raise DataError(f"{train / 'label.csv'}:{line_no}: expected a file name, a box and "
                                    f"{len(FERPLUS_VOTE_COLUMNS)} vote counts")
                total = sum(votes) or 10.0
                column = FERPLUS_VOTE_COLUMNS.index("not-a-face" if new == UNUSABLE else new)
                majority = ferplus_majority(votes)
                old = "no majority" if majority is None else FERPLUS_VOTE_COLUMNS[majority]
                row = [row[0], row[1], *(f"{total:g}" if i == column else "0" for i in range(len(votes)))]
                changes.append((row[0], old, new))
            rows.append(row)
    (out / "FER2013Train").mkdir(parents=True, exist_ok=True)
    _write_csv(out / "FER2013Train" / "label.csv", rows)
    for row in rows:
        _link(train / row[0], out / "FER2013Train" / row[0])
    for other in ("FER2013Valid", "FER2013Test"):
        if (root / other).exists():
            _link(root / other, out / other)
    return changes


def _rafdb(root: Path, out: Path, decisions: dict[str, Decision]) -> list[tuple[str, str, str]]:
    changes, lines = [], []
    with open_label_file(root / "EmoLabel" / "list_patition_label.txt") as f:
        text = f.read()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 2:
            continue
        new = _new_label(decisions.get(parts[0]))
        if new is not None:
            where = f"{root / 'EmoLabel' / 'list_patition_label.txt'}: {parts[0]}"
            changes.append((parts[0], _old_class(RAFDB_LABELS, parts[1], where), new))
            if new == UNUSABLE:
                continue
            parts[1] = str(_code(RAFDB_LABELS, new))
        lines.append(" ".join(parts))
    (out / "EmoLabel").mkdir(parents=True, exist_ok=True)
    write_atomic(out / "EmoLabel" / "list_patition_label.txt", lambda f: f.write("\n".join(lines) + "\n"))
    _link(root / "Image", out / "Image")
    return changes


def _fer2013(root: Path, out: Path, decisions: dict[str, Decision]) -> list[tuple[str, str, str]]:
    source = root / "fer2013.csv" if root.is_dir() else root
    changes, rows = [], []
    with open_label_file(source) as f:
        reader = csv.reader(f)
        header, (column,) = _header(reader, source, ("emotion",))
        rows.append(header)
        for row in reader:
            line_no = reader.line_num  # as the reader counts: blank lines are lines, not faces
            if not row:
                rows.append(row)
                continue
            if len(row) < len(header):
                raise DataError(f"{source}:{line_no}: the row is short ({len(row)} of the header's "
                                f"{len(header)} columns)")
            new = _new_label(decisions.get(f"row{line_no}"))
            if new is not None:
                old = _old_class(FER2013_LABELS, row[column], f"{source}:{line_no}")
                changes.append((f"row{line_no}", old, new))
                if new == UNUSABLE:
                    continue
                row[column] = str(_code(FER2013_LABELS, new))
            rows.append(row)
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(out / "fer2013.csv", rows)
    return changes


def _affectnet(root: Path, out: Path, decisions: dict[str, Decision]) -> list[tuple[str, str, str]]:
    changes, rows = [], []
    with open_label_file(root / "training.csv") as f:
        reader = csv.reader(f)
        source = root / "training.csv"
        header, (path_column, column) = _header(reader, source, ("subDirectory_filePath", "expression"))
        rows.append(header)
        for row in reader:
            if len(row) < len(header):  # a blank or cut line: the reader skips or refuses it
                if not row:
                    continue
                raise DataError(f"{source}:{reader.line_num}: the row is short ({len(row)} of the "
                                f"header's {len(header)} columns)")
            new = _new_label(decisions.get(row[path_column]))
            if new is not None:
                table = {**AFFECTNET_LABELS, 8: "none", 9: "uncertain", 10: "no face"}
                old = _old_class(table, row[column], f"{source}:{reader.line_num}")
                changes.append((row[path_column], old, new))
                row[column] = "10" if new == UNUSABLE else str(_code(AFFECTNET_LABELS, new))
            rows.append(row)
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(out / "training.csv", rows)
    for other in root.iterdir():
        if other.name != "training.csv":
            _link(other, out / other.name)
    return changes


def _free_name(folder: Path, image: Path, old_class: str) -> Path:
    """``folder/<image name>``, or where a face of that name is already there (images numbered
    within each class), ``folder/<old class>_<image name>`` (then ``_2``, ``_3``...)."""
    target = folder / image.name
    number = 1
    while os.path.lexists(target):
        number += 1
        suffix = "" if number == 2 else f"_{number - 1}"
        target = folder / f"{old_class}_{image.stem}{suffix}{image.suffix}"
    return target


def _folder(root: Path, out: Path, decisions: dict[str, Decision]) -> list[tuple[str, str, str]]:
    changes, moved = [], []
    train = root / "train"
    for class_dir in sorted(p for p in train.iterdir() if p.is_dir()):
        for image in sorted(p for p in class_dir.iterdir() if p.is_file()):
            key = f"{class_dir.name}/{image.name}"
            new = _new_label(decisions.get(key))
            if new is not None:
                changes.append((key, class_dir.name, new))
                if new != UNUSABLE:
                    moved.append((image, class_dir.name, new))
                continue
            _link(image, out / "train" / class_dir.name / image.name)
    # the faces that keep their class keep their names; a moved face whose name is taken in
    # its new class is renamed
    for image, old_class, new in moved:
        _link(image, _free_name(out / "train" / new, image, old_class))
    for other in root.iterdir():
        if other.name != "train":
            _link(other, out / other.name)
    return changes


def _check_classes(dataset: str, decisions: dict[str, Decision], decided_in: str | Path) -> None:
    """Every class the decisions give is one the dataset's format can hold."""
    tables = {"rafdb": RAFDB_LABELS, "fer2013": FER2013_LABELS, "affectnet": AFFECTNET_LABELS}
    classes = list(tables[dataset].values()) if dataset in tables else list(CANONICAL_CLASSES)
    for key, decision in decisions.items():
        if decision.action == "set" and decision.label not in classes:
            raise DataError(f"{decided_in}: the decision for {key} gives the class "
                            f"{decision.label[:40]!r}, which is not one of this {dataset} dataset's: "
                            f"{', '.join(classes)}; nothing was written")


WRITERS = {"ferplus": _ferplus, "rafdb": _rafdb, "fer2013": _fer2013, "affectnet": _affectnet,
           "folder": _folder}


LAYOUTS = {  # what each format's training labels are, relative to the dataset folder
    "ferplus": "FER2013Train/label.csv",
    "rafdb": "EmoLabel/list_patition_label.txt",
    "fer2013": "fer2013.csv",
    "affectnet": "training.csv",
    "folder": "train",
}


def _check_layout(dataset: str, root: Path) -> None:
    """DataError naming what the format needs when ``root`` does not hold it (a wrong --dataset
    or --data-root said only "[Errno 2] No such file or directory: 'ferplus/train'")."""
    if dataset == "fer2013" and root.is_file():
        return
    needed = root / LAYOUTS[dataset]
    if not needed.exists():
        raise DataError(f"{root}: not a {dataset} dataset ({needed} not found); check --dataset "
                        "and --data-root (the formats: docs/training.md, Data)")


def relabel(dataset: str, root: str | Path, decisions: dict[str, Decision], out: str | Path,
            decided_in: str | Path = "the review log") -> RelabelResult:
    """Write the cleaned copy of ``root``'s training labels to the new folder ``out``
    (``decided_in``: where the decisions come from, named when one cannot be applied)."""
    if dataset not in WRITERS:
        raise DataError(f"unknown dataset {dataset!r}; choose one of {', '.join(RELABEL_DATASETS)}")
    root, out = Path(root), Path(out)
    if out.exists() and any(out.iterdir()):
        raise OutputError(17, f"{out} is not empty; choose a new folder for the cleaned dataset")
    for parent in (out, *out.parents) if root.is_dir() else ():  # (a csv file: out is new or empty)
        if same_file(parent, root):
            raise OutputError(17, f"{out} is inside the dataset {root}; choose a folder outside it "
                              "(the original files are never modified)")
    _check_classes(dataset, decisions, decided_in)  # before anything is written
    _check_layout(dataset, root)
    # built beside ``out`` and renamed into place: a line that cannot be applied, a kill or a
    # full disk leaves no half-made dataset
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        changes = WRITERS[dataset](root, partial, decisions)
        changed = {key for key, _, _ in changes}
        unmatched = tuple(k for k, d in decisions.items() if d.action != "keep" and k not in changed)
        if unmatched and not changes:
            raise DataError(f"{decided_in}: none of its {len(unmatched)} changes names a face of "
                            f"{root} (the first: {unmatched[0][:80]}); were the decisions made on "
                            "another dataset? Nothing was written")
        rows = [["file", "old", "new", "score", "who", "when"]]
        rows += [[key, old, new, decisions[key].score, decisions[key].who, decisions[key].time]
                 for key, old, new in changes]
        _write_csv(partial / "changes.csv", rows)
        os.chmod(partial, 0o777 & ~current_umask())  # mkdtemp makes it private
        if out.exists():  # empty (checked above); Windows cannot rename over a folder
            out.rmdir()
        os.replace(partial, out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)  # links inside are removed, never followed
        raise
    removed = sum(1 for _, _, new in changes if new == UNUSABLE)
    kept = sum(1 for d in decisions.values() if d.action == "keep")
    return RelabelResult(out, len(changes) - removed, removed, kept, unmatched)
