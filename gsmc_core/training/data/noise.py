"""Label noise: symmetric injection (SCN/EAC protocol), one annotator's vote (real human noise),
and RAF-style noise files."""

import csv
from pathlib import Path

import numpy as np

from gsmc_core.atomic import write_atomic
from gsmc_core.errors import UsageError
from gsmc_core.labels import RAFDB_LABELS
from gsmc_core.training.data.readers import read_rafdb_labels
from gsmc_core.training.data.samples import DataError, Split, open_label_file


def inject_symmetric_noise(labels: list[int], num_classes: int, rate: float,
                           seed: int) -> tuple[list[int], list[int]]:
    """Replace exactly round(rate * n) labels by a uniformly chosen *different* class.

    Returns the noisy labels and the sorted indices that were flipped; the same seed gives
    the same result.
    """
    if not 0.0 <= rate <= 1.0:
        raise UsageError(f"noise rate must be in [0, 1], got {rate}")
    rng = np.random.default_rng(seed)
    n = len(labels)
    flipped = np.sort(rng.choice(n, size=round(rate * n), replace=False))
    noisy = list(labels)
    offsets = rng.integers(1, num_classes, size=len(flipped))  # 1..C-1: never the same class
    for i, off in zip(flipped, offsets, strict=True):
        noisy[i] = (labels[i] + int(off)) % num_classes
    return noisy, flipped.tolist()


NOISE_KINDS = ("symmetric", "annotator")


def annotator_labels(split: Split, seed: int) -> list[int]:
    """Each sample labelled by one of its annotators, drawn at random (seeded): a class with
    probability proportional to its raw votes. Annotators who voted unknown or not-a-face are
    not drawn. Instance-dependent noise, where faces are ambiguous (FERPlus's ten votes)."""
    missing = [s.key for s in split.samples if not s.votes or sum(s.votes) <= 0]
    if missing:
        raise DataError(f"annotator noise needs each sample's annotator votes (FERPlus has them); "
                        f"{len(missing)} {split.name} samples of {split.dataset} have none "
                        f"(first: {missing[0]})")
    votes = np.array([s.votes for s in split.samples], dtype=np.float64)
    cumulative = np.cumsum(votes / votes.sum(1, keepdims=True), axis=1)
    draws = np.random.default_rng(seed).random(len(votes))
    return np.minimum((cumulative < draws[:, None]).sum(1), votes.shape[1] - 1).tolist()


def given_labels(split: Split, kind: str, rate: float, seed: int,
                 noise_file: str | Path | None = None) -> list[int]:
    """The labels a run trains (or selects) on: the split's own, or with the noise it asks for
    (a noise file, one annotator's vote, or ``rate`` symmetric noise)."""
    if noise_file:
        return read_noise_file(Path(noise_file), split)
    if kind == "annotator":
        return annotator_labels(split, seed)
    if rate > 0:
        return inject_symmetric_noise(split.labels(), len(split.classes), rate, seed)[0]
    return split.labels()


def noise_file_names_any(path: Path, split: Split) -> bool:
    """Whether the noise file gives a label to any face of ``split``."""
    mapping = _noise_mapping(Path(path), split)
    return any(s.key in mapping for s in split.samples)


def read_noise_file(path: Path, split: Split) -> list[int]:
    """Labels for ``split`` from a RAF-style file of ``name label`` lines.

    For RAF-DB the label is RAF's 1-7 code; for other datasets it is a class name or a
    0-based index into the split's class list. Samples the file does not name keep their label;
    a file that names none of them is an error (a run would train on clean labels unawares).
    """
    path = Path(path)
    mapping = _noise_mapping(path, split)
    if not any(s.key in mapping for s in split.samples):
        named = next(iter(mapping), None)
        raise DataError(f"{path}: names none of the {len(split.samples)} {split.name} faces of this "
                        f"{split.dataset} dataset (the file names {named!r}"
                        f"{', the dataset ' + repr(split.samples[0].key) if split.samples else ''}); "
                        "a noise file gives labels by the dataset's own names")
    return [mapping.get(s.key, s.label) for s in split.samples]


def _noise_mapping(path: Path, split: Split) -> dict[str, int]:
    """{name: class index in ``split.classes``} of a noise file."""
    if split.dataset == "rafdb":
        raw = read_rafdb_labels(path)
        mapping = {k: split.classes.index(RAFDB_LABELS[v]) for k, v in raw.items()}
    else:
        mapping = {}
        with open_label_file(path) as f:
            for line_no, line in enumerate(f, start=1):
                parts = line.split()
                if not parts:
                    continue
                if len(parts) != 2:
                    raise DataError(f"{path}:{line_no}: expected 'name label', got {line.strip()!r}")
                name, label = parts
                if label.isdigit() and int(label) < len(split.classes):
                    mapping[name] = int(label)
                elif label in split.classes:
                    mapping[name] = split.classes.index(label)
                else:
                    raise DataError(f"{path}:{line_no}: unknown label {label!r}")
    return mapping


def write_label_table(path: Path, split: Split, clean: list[int], noisy: list[int]) -> None:
    """The labels a run trained on, beside the clean ones, one row per sample (atomically)."""
    def write(f) -> None:
        w = csv.writer(f)
        w.writerow(["index", "key", "clean_label", "noisy_label", "flipped"])
        for i, (s, c, y) in enumerate(zip(split.samples, clean, noisy, strict=True)):
            w.writerow([i, s.key, split.classes[c], split.classes[y], int(c != y)])

    write_atomic(path, write)
