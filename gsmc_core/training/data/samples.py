"""Samples, splits and the torch Dataset every reader feeds."""

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import torch
from torch.utils.data import Dataset, Sampler

from gsmc_core.errors import GsmcError
from gsmc_core.frames.sources import SourceError, read_image


class DataError(GsmcError, ValueError):
    """A dataset problem the user can fix: names the file (and line) and what is wrong."""


@contextmanager
def open_label_file(path: Path) -> Iterator:
    """A dataset's label file opened as UTF-8 text for ``csv`` (a byte-order mark, as Excel
    writes, is skipped; CRLF lines are read as lines); text in another encoding is a DataError
    naming the file, not a traceback."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            yield f
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.object[exc.start:exc.start + 1]!r}: "
                        f"{exc.reason}); save it as UTF-8 and try again") from exc


@dataclass(frozen=True)
class Sample:
    """One image and its label (an index into the split's class list).

    ``key`` identifies the sample in label and noise files (usually the image file name).
    The image is a file (``path``) or, for FER2013's csv, pixels held in memory; ``box`` is an
    optional face box (x, y, w, h) to crop, as AffectNet gives. ``soft`` is the annotators' vote
    share per class where the dataset has one (FERPlus), for training on soft targets; ``votes``
    the annotators' raw vote counts per class (FERPlus), from which one annotator's label can be
    drawn (``noise.annotator_labels``).
    """

    key: str
    label: int
    path: Path | None = None
    pixels: npt.NDArray[np.uint8] | None = field(default=None, compare=False, repr=False)
    box: tuple[int, int, int, int] | None = None
    soft: tuple[float, ...] | None = field(default=None, compare=False, repr=False)
    votes: tuple[float, ...] | None = field(default=None, compare=False, repr=False)


@dataclass
class Split:
    """The samples of one split of a dataset, labelled in ``classes``."""

    dataset: str
    name: str
    classes: tuple[str, ...]
    samples: list[Sample]
    notes: tuple[str, ...] = ()  # what the reader left out, and why (said when training)
    source: Path | None = None  # the label file (or image folder) the reader read

    def labels(self) -> list[int]:
        return [s.label for s in self.samples]

    def fingerprint(self) -> str:
        """A digest of the faces (their keys) and labels: equal for the same data wherever the
        dataset lies, so a resumed run can tell it is given the data it trained on."""
        h = hashlib.sha256(f"{self.name} {len(self.samples)}\n".encode())
        for sample in self.samples:
            h.update(f"{sample.key}\t{sample.label}\n".encode())
        return h.hexdigest()

    def soft_targets(self) -> torch.Tensor | None:
        """The vote shares as an N x C tensor, or None unless every sample has them."""
        if not self.samples or any(s.soft is None for s in self.samples):
            return None
        return torch.tensor([s.soft for s in self.samples], dtype=torch.float32)

    def with_labels(self, labels: list[int]) -> "Split":
        """The same samples with new (e.g. noisy) labels; vote shares, which would contradict
        them, are dropped where a label changes."""
        samples = [
            Sample(s.key, int(y), s.path, s.pixels, s.box, s.soft if int(y) == s.label else None,
                   s.votes)
            for s, y in zip(self.samples, labels, strict=True)
        ]
        return replace(self, samples=samples)

    def subset(self, n: int | None, seed: int = 0) -> "Split":
        """A fixed random ``n`` samples, in dataset order (all when n is None): ``--limit-*``."""
        if n is None or n >= len(self.samples):
            return self
        keep = sorted(np.random.default_rng(seed).choice(len(self.samples), n, replace=False))
        return replace(self, samples=[self.samples[i] for i in keep])


def load_image(sample: Sample) -> npt.NDArray[np.uint8]:
    """Decode a sample as RGB uint8; raises DataError naming the file if it cannot."""
    if sample.pixels is not None:
        image = sample.pixels
    else:
        if not sample.path.is_file():
            raise DataError(f"{sample.path}: image file not found")
        try:
            image = cv2.cvtColor(read_image(sample.path), cv2.COLOR_BGR2RGB)
        except (OSError, SourceError) as exc:
            raise DataError(str(exc)) from exc
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if sample.box is not None:
        x, y, w, h = sample.box
        crop = image[max(y, 0) : y + h, max(x, 0) : x + w]
        if crop.size:
            image = crop
    return np.ascontiguousarray(image)


def augmentation_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of one sample's random augmentation in one epoch."""
    return ((seed * 1_000_003 + epoch) * 10_000_019 + index) % 2**63


@dataclass(frozen=True)
class Unreadable:
    """What ``ExpressionDataset`` yields for an image it cannot decode."""

    key: str
    reason: str


class ExpressionDataset(Dataset):
    """Decodes samples and applies a transform; undecodable images yield ``Unreadable`` (or
    raise with ``strict``).

    ``__getitem__`` returns ``(tensor, label, index)``; the index lets the trainer and the
    audit tie results back to samples. Use ``collate_skipping`` as the loader's collate_fn.

    With ``seed`` (training), items are asked for as ``epoch * len + index`` (``EpochSampler``)
    and each sample's random augmentation is drawn from ``augmentation_seed(seed, epoch,
    index)``: the same in every run whatever the number of loader workers, so a resumed run
    sees exactly the augmentations an uninterrupted one would (loader workers keep random
    state of their own, which no checkpoint holds).
    """

    def __init__(self, split: Split, transform: Callable, strict: bool = False,
                 seed: int | None = None) -> None:
        self.split = split
        self.transform = transform
        self.strict = strict
        self.seed = seed

    def __len__(self) -> int:
        return len(self.split.samples)

    def __getitem__(self, item: int):
        epoch, index = divmod(item, len(self.split.samples))
        sample = self.split.samples[index]
        try:
            image = load_image(sample)
        except DataError as exc:
            if self.strict:
                raise
            return Unreadable(sample.key, str(exc))
        if self.seed is None:
            return self.transform(image), sample.label, index
        with torch.random.fork_rng(devices=[]):  # leave the process's own random state alone
            torch.manual_seed(augmentation_seed(self.seed, epoch, index))
            return self.transform(image), sample.label, index


class EpochSampler(Sampler[int]):
    """Yields ``epoch * n + i`` for each index ``i`` of ``inner``, so the dataset knows the
    epoch even in persistent loader workers. ``set_epoch`` reshuffles: a DistributedSampler
    by its own ``set_epoch``, a RandomSampler by reseeding its generator from ``seed``."""

    def __init__(self, inner: Sampler[int], n: int, seed: int) -> None:
        self.inner = inner
        self.n = n
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.inner, "set_epoch"):
            self.inner.set_epoch(epoch)
        else:
            self.inner.generator.manual_seed(self.seed * 100_003 + epoch)

    def __iter__(self) -> Iterator[int]:
        return (self.epoch * self.n + i for i in self.inner)

    def __len__(self) -> int:
        return len(self.inner)


@dataclass
class Batch:
    images: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor
    skipped: int
    failed: tuple[Unreadable, ...] = ()  # the skipped images, with the reason


def collate_skipping(items: list) -> Batch:
    """Stack the decodable items and list the ones that failed to decode."""
    failed = tuple(it for it in items if isinstance(it, Unreadable))
    good = [it for it in items if not isinstance(it, Unreadable)]
    if not good:
        return Batch(torch.empty(0), torch.empty(0, dtype=torch.long),
                     torch.empty(0, dtype=torch.long), len(items), failed)
    return Batch(
        images=torch.stack([it[0] for it in good]),
        labels=torch.tensor([it[1] for it in good], dtype=torch.long),
        indices=torch.tensor([it[2] for it in good], dtype=torch.long),
        skipped=len(failed),
        failed=failed,
    )
