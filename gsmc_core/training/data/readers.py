"""Readers for RAF-DB, FERPlus, FER2013, AffectNet and image folders.

Each returns a ``Split`` labelled in the canonical class list (``labels.class_list``). Splits are
"train", "val" and "test"; where a dataset has no validation split (RAF-DB, AffectNet) a fixed,
seeded, stratified fraction of train is held out, so checkpoints are never selected on test.
"""

import csv
import hashlib
import random
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gsmc_core.labels import (
    AFFECTNET_LABELS,
    FER2013_LABELS,
    FERPLUS_VOTE_COLUMNS,
    RAFDB_LABELS,
    class_list,
)
from gsmc_core.training.data.samples import DataError, Sample, Split, open_label_file

if TYPE_CHECKING:
    from gsmc_core.checkpoint import Checkpoint

DATASETS = ("ferplus", "rafdb", "fer2013", "affectnet", "folder")
SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
FOLDER_ALIASES = {
    "happy": "happiness", "sad": "sadness", "angry": "anger", "surprised": "surprise",
    "disgusted": "disgust", "fearful": "fear", "neutral": "neutral", "contempt": "contempt",
}


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise DataError(f"{path}: {what} not found; check the dataset folder")
    return path


def _finish(dataset: str, split: str, classes: tuple[str, ...], samples: list[Sample],
            source: Path, notes: tuple[str, ...] = ()) -> Split:
    if not samples:
        raise DataError(f"{source}: the {split} split of {dataset} has no usable samples")
    present = {s.label for s in samples}
    empty = [name for i, name in enumerate(classes) if i not in present]
    if empty and split == "train":
        notes += (f"{source}: no training faces of {', '.join(empty)}: the model will not learn "
                  f"{'this class' if len(empty) == 1 else 'these classes'}",)
    return Split(dataset, split, classes, samples, notes, source)


HOLDOUTS = ("hash", "shuffle")


def _holdout(samples: list[Sample], split: str, fraction: float, seed: int,
             name: Callable[[str], str] = str, method: str = "hash") -> list[Sample]:
    """Deterministic stratified train/val division of a dataset that has no val split: in each
    class the ``round(fraction * n)`` faces whose seeded hash of ``name(key)`` is lowest, so a
    relabelled face moves at most the faces at the cut of the two classes it leaves and joins.
    ``method`` "shuffle" is the division of runs made before 2026-12-01 (a seeded shuffle of each
    class in turn, where one relabel reshuffled every later class), kept so their held-out
    faces are still theirs."""
    by_class: dict[int, list[Sample]] = defaultdict(list)
    for s in samples:
        by_class[s.label].append(s)

    def rank(s: Sample) -> tuple[bytes, str]:
        digest = hashlib.blake2b(f"{seed}/{name(s.key)}".encode(), digest_size=8).digest()
        return digest, s.key

    rng = random.Random(seed)
    val_keys = set()
    for label in sorted(by_class):
        if method == "shuffle":
            group = sorted(by_class[label], key=lambda s: s.key)
            rng.shuffle(group)
        else:
            group = sorted(by_class[label], key=rank)
        val_keys.update(s.key for s in group[: round(fraction * len(group))])
    keep_val = split == "val"
    return [s for s in samples if (s.key in val_keys) == keep_val]


# --- FERPlus ---------------------------------------------------------------------------------

FERPLUS_FOLDERS = {"train": "FER2013Train", "val": "FER2013Valid", "test": "FER2013Test"}


def ferplus_majority(votes: list[float]) -> int | None:
    """Microsoft's majority rule on the 10 vote counts: the winning column, or None (dropped).

    Counts of one vote are zeroed (outliers); the arg-max wins if it holds more than half of the
    remaining votes. Callers drop "unknown" and "not-a-face" winners.
    """
    votes = [0.0 if v <= 1.0 else v for v in votes]
    top = max(votes)
    if top > 0.5 * sum(votes):
        return int(np.argmax(votes))
    return None


def ferplus_soft(votes: list[float], classes: tuple[str, ...]) -> tuple[float, ...]:
    """The vote shares of ``classes`` (outlier single votes zeroed as in the majority rule;
    unknown and not-a-face left out): the soft target of Barsoum et al.'s cross-entropy scheme."""
    counts = [0.0 if v <= 1.0 else v for v in votes]
    by_name = dict(zip(FERPLUS_VOTE_COLUMNS, counts, strict=True))
    kept = [by_name[name] for name in classes]
    total = sum(kept)
    return tuple(v / total for v in kept)


def read_ferplus(root: Path, split: str, num_classes: int = 8) -> Split:
    classes = class_list(num_classes)
    folder = _require(root / FERPLUS_FOLDERS[split], "FERPlus folder")
    label_file = _require(folder / "label.csv", "FERPlus label file")
    samples = []
    no_majority = other_class = 0
    with open_label_file(label_file) as f:
        for line_no, row in enumerate(csv.reader(f), start=1):
            if not row:
                continue
            if len(row) != 12:
                raise DataError(f"{label_file}:{line_no}: expected 12 columns "
                                f"(name, box, 10 vote counts), got {len(row)}")
            try:
                votes = [float(v) for v in row[2:]]
            except ValueError as exc:
                raise DataError(f"{label_file}:{line_no}: vote counts must be numbers ({exc})") from exc
            winner = ferplus_majority(votes)
            if winner is None:
                no_majority += 1
                continue
            name = FERPLUS_VOTE_COLUMNS[winner]
            if name not in classes:  # unknown, not-a-face, or contempt with 7 classes
                other_class += 1
                continue
            by_name = dict(zip(FERPLUS_VOTE_COLUMNS, votes, strict=True))
            samples.append(Sample(row[0], classes.index(name), folder / row[0],
                                  soft=ferplus_soft(votes, classes),
                                  votes=tuple(by_name[c] for c in classes)))
    notes = (f"{label_file}: {no_majority} faces without a majority vote and {other_class} voted "
             f"unknown/not-a-face{'/contempt' if 'contempt' not in classes else ''} left out "
             "(Microsoft's majority rule)",)
    return _finish("ferplus", split, classes, samples, label_file, notes)


# --- RAF-DB ----------------------------------------------------------------------------------

def read_rafdb_labels(label_file: Path) -> dict[str, int]:
    """``name label`` lines (list_patition_label.txt and the noise files) as {name: RAF label}."""
    labels = {}
    with open_label_file(_require(label_file, "RAF-DB label file")) as f:
        for line_no, line in enumerate(f, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or not parts[1].isdigit() or int(parts[1]) not in RAFDB_LABELS:
                raise DataError(f"{label_file}:{line_no}: expected 'name label' with a label "
                                f"1-7, got {line.strip()!r}")
            labels[parts[0]] = int(parts[1])
    return labels


def read_rafdb(root: Path, split: str, num_classes: int = 7, val_fraction: float = 0.1,
               seed: int = 0, holdout: str = "hash") -> Split:
    if num_classes != 7:
        raise DataError("RAF-DB basic has 7 classes; train it with 7 classes")
    classes = class_list(7)
    label_file = root / "EmoLabel" / "list_patition_label.txt"
    image_dir = _require(root / "Image" / "aligned", "RAF-DB image folder")
    prefix = "test_" if split == "test" else "train_"
    samples = []
    for name, raf_label in read_rafdb_labels(label_file).items():
        if name.startswith(prefix):
            stem = Path(name).stem
            samples.append(Sample(name, classes.index(RAFDB_LABELS[raf_label]),
                                  image_dir / f"{stem}_aligned.jpg"))
    if split != "test":
        samples = _holdout(samples, split, val_fraction, seed, method=holdout)
    return _finish("rafdb", split, classes, samples, label_file)


# --- FER2013 ---------------------------------------------------------------------------------

FER2013_USAGE = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}


def read_fer2013(root: Path, split: str, num_classes: int = 7) -> Split:
    if num_classes != 7:
        raise DataError("FER2013 has 7 classes; train it with 7 classes")
    classes = class_list(7)
    csv_file = root / "fer2013.csv" if root.is_dir() else root
    _require(csv_file, "fer2013.csv")
    samples = []
    with open_label_file(csv_file) as f:
        reader = csv.DictReader(f)
        missing = {"emotion", "pixels", "Usage"} - set(reader.fieldnames or [])
        if missing:
            raise DataError(f"{csv_file}:1: missing columns {sorted(missing)}")
        for row in reader:
            line_no = reader.line_num  # the file's line (blank lines skipped): the face's key
            if None in row.values():
                raise DataError(f"{csv_file}:{line_no}: the row is short (emotion, pixels and "
                                "Usage are needed)")
            if row["Usage"] != FER2013_USAGE[split]:
                continue
            try:
                emotion = int(row["emotion"])
                values = np.array(row["pixels"].split(), dtype=np.int64)
                side = int(round(len(values) ** 0.5))
                if emotion not in FER2013_LABELS or side * side != len(values) or side == 0:
                    raise ValueError("emotion must be 0-6 and pixels a square image")
                if values.min() < 0 or values.max() > 255:
                    raise ValueError("pixel values must be 0-255")
                pixels = values.astype(np.uint8)
            except (ValueError, OverflowError) as exc:
                raise DataError(f"{csv_file}:{line_no}: bad row ({str(exc)[:120]})") from exc
            samples.append(Sample(f"row{line_no}", classes.index(FER2013_LABELS[emotion]),
                                  pixels=pixels.reshape(side, side)))
    return _finish("fer2013", split, classes, samples, csv_file)


# --- AffectNet -------------------------------------------------------------------------------

def read_affectnet(root: Path, split: str, num_classes: int = 8, val_fraction: float = 0.1,
                   seed: int = 0, holdout: str = "hash") -> Split:
    classes = class_list(num_classes)
    csv_file = _require(root / ("validation.csv" if split == "test" else "training.csv"),
                        "AffectNet csv")
    image_root = root / "Manually_Annotated_Images"
    if not image_root.is_dir():
        image_root = root
    samples = []
    with open_label_file(csv_file) as f:
        reader = csv.DictReader(f)
        need = {"subDirectory_filePath", "face_x", "face_y", "face_width", "face_height",
                "expression"}
        missing = need - set(reader.fieldnames or [])
        if missing:
            raise DataError(f"{csv_file}:1: missing columns {sorted(missing)}")
        for row in reader:
            line_no = reader.line_num
            try:
                expression = int(row["expression"])
                box = tuple(int(float(row[k])) for k in ("face_x", "face_y", "face_width",
                                                           "face_height"))
                if box[0] < 0 or box[1] < 0 or box[2] < 1 or box[3] < 1:
                    raise ValueError(f"face box {box} must have x, y >= 0 and a positive size")
            except (ValueError, TypeError, OverflowError) as exc:  # "inf", a short row, "x"
                raise DataError(f"{csv_file}:{line_no}: bad row ({str(exc)[:120]})") from exc
            name = AFFECTNET_LABELS.get(expression)  # 8-10: none / uncertain / no-face
            if name is None or name not in classes:
                continue
            rel = row["subDirectory_filePath"]
            samples.append(Sample(rel, classes.index(name), image_root / rel, box=box))
    if split != "test":
        samples = _holdout(samples, split, val_fraction, seed, method=holdout)
    return _finish("affectnet", split, classes, samples, csv_file)


# --- image folders ---------------------------------------------------------------------------

FOLDER_SPLITS = {"train": ("train",), "val": ("val", "valid", "validation"), "test": ("test",)}


def read_folder(root: Path, split: str, num_classes: int = 8, val_fraction: float = 0.1,
                seed: int = 0, holdout: str = "hash") -> Split:
    classes = class_list(num_classes)
    _require(root, "image folder root")
    split_dir = next((root / d for d in FOLDER_SPLITS[split] if (root / d).is_dir()), None)
    held_out = split_dir is None and split == "val"
    if held_out:
        split_dir = root / "train"
    if split_dir is None or not split_dir.is_dir():
        raise DataError(f"{root}: no '{FOLDER_SPLITS[split][0]}' folder "
                        f"(expected root/<split>/<class>/*.jpg)")
    samples = []
    for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        name = FOLDER_ALIASES.get(class_dir.name.lower(), class_dir.name.lower())
        if name not in classes:
            raise DataError(f"{class_dir}: unknown expression class {class_dir.name!r}; "
                            f"use one of {', '.join(classes)}")
        for image in sorted(class_dir.iterdir()):
            if image.suffix.lower() in IMAGE_SUFFIXES:
                samples.append(Sample(f"{class_dir.name}/{image.name}", classes.index(name), image))
    def file_name(key: str) -> str:  # a face relabelled into another class folder keeps its place
        return key.split("/", 1)[1]

    if split == "train" and not any((root / d).is_dir() for d in FOLDER_SPLITS["val"]):
        samples = _holdout(samples, "train", val_fraction, seed, file_name, holdout)
    elif held_out:
        samples = _holdout(samples, "val", val_fraction, seed, file_name, holdout)
    return _finish("folder", split, classes, samples, split_dir)


def _folder_class_count(root: Path) -> int:
    """8 classes where a class folder holds contempt, else 7 (FER2013's seven, as in Kaggle's
    image-folder copy), so no class is trained without a face."""
    for name in (d for names in FOLDER_SPLITS.values() for d in names):
        if (root / name).is_dir() and any(
                p.is_dir() and FOLDER_ALIASES.get(p.name.lower(), p.name.lower()) == "contempt"
                for p in (root / name).iterdir()):
            return 8
    return 7


def read_split(dataset: str, root: str | Path, split: str, num_classes: int | None = None,
               val_fraction: float = 0.1, seed: int = 0, holdout: str = "hash") -> Split:
    """Read one split of a dataset; ``num_classes`` None picks the dataset's natural count;
    ``val_fraction``, ``seed`` and ``holdout`` (``HOLDOUTS``) choose the faces held out where the
    dataset has no val split."""
    if holdout not in HOLDOUTS:
        raise DataError(f"unknown holdout {holdout!r}; choose one of {', '.join(HOLDOUTS)}")
    root = Path(root)
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if not root.exists():
        raise DataError(f"{root}: data root not found")
    if num_classes:
        n = num_classes
    elif dataset == "folder":
        n = _folder_class_count(root)
    else:
        n = 7 if dataset in ("rafdb", "fer2013") else 8
    if dataset == "ferplus":
        return read_ferplus(root, split, n)
    if dataset == "fer2013":
        return read_fer2013(root, split, n)
    if dataset == "rafdb":
        return read_rafdb(root, split, n, val_fraction, seed, holdout)
    if dataset == "affectnet":
        return read_affectnet(root, split, n, val_fraction, seed, holdout)
    return read_folder(root, split, n, val_fraction, seed, holdout)


def checkpoint_split(ckpt: "Checkpoint", dataset: str, data_root: str, split: str) -> Split:
    """The split to score ``ckpt`` on. A dataset without its own validation split holds one out
    of its training data by seed and fraction: when the checkpoint was trained on this dataset,
    its run's own settings decide, so "val" is the faces the run held out (as `audit` does)."""
    cfg = ckpt.train_config or {}
    same_run_data = cfg.get("dataset") == dataset
    return read_split(dataset, data_root, split, len(ckpt.meta.classes),
                      cfg.get("val_fraction", 0.1) if same_run_data else 0.1,
                      cfg.get("seed", 0) if same_run_data else 0,
                      cfg.get("holdout", "shuffle") if same_run_data else "hash")
